// The one rule for how many copies ktrail's topics get (common/kafka-replication.ts).
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors.js';
import { replicationFor } from '../../common/kafka-replication.js';

describe('replicationFor', () => {
  it.each([
    [1, 1, 1],
    [2, 2, 1],
    [3, 3, 2],
    [5, 3, 2],
  ])('%i broker(s): %i copies, min.insync.replicas %i', (brokers, replicationFactor, minInsyncReplicas) => {
    expect(replicationFor(brokers)).toEqual({ brokers, replicationFactor, minInsyncReplicas });
  });

  it('follows a configured count, with the same in-sync rule', () => {
    expect(replicationFor(3, 1)).toEqual({ brokers: 3, replicationFactor: 1, minInsyncReplicas: 1 });
    expect(replicationFor(5, 5)).toEqual({ brokers: 5, replicationFactor: 5, minInsyncReplicas: 2 });
  });

  it('refuses more copies than brokers, and clusters without brokers, naming the setting', () => {
    expect(() => replicationFor(1, 3)).toThrow(ConfigError);
    expect(() => replicationFor(1, 3)).toThrow('kafka.replicationFactor: 3 copies need as many brokers');
    expect(() => replicationFor(0)).toThrow('at least one must be up');
    expect(() => replicationFor(3, 0)).toThrow('kafka.replicationFactor: must be a positive integer');
  });
});
