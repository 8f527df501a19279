// Which failed offset commits end this member's generation (a rejoin follows, so the partition
// is given up) and which only mean the coordinator is unreachable (waited for): kafkajs' own
// error classes, wrapped the way its retrier wraps them.
import { KafkaJSBrokerNotFound, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { endsGeneration } from '../../processor/src/group-runtime.js';

const protocol = (type: string) =>
  new KafkaJSProtocolError({ type, code: 0, retriable: false, message: type } as unknown as Error);
const retried = (cause: Error) =>
  new KafkaJSNumberOfRetriesExceeded(cause, { retryCount: 5, retryTime: 2_000 } as never);

describe('endsGeneration', () => {
  it('is true for the protocol errors of a generation that is over, also after retries', () => {
    for (const type of [
      'REBALANCE_IN_PROGRESS',
      'ILLEGAL_GENERATION',
      'UNKNOWN_MEMBER_ID',
      'FENCED_INSTANCE_ID',
    ]) {
      expect(endsGeneration(protocol(type)), type).toBe(true);
      expect(endsGeneration(retried(protocol(type))), `${type} retried`).toBe(true);
    }
  });

  it('is false for an unreachable or moving coordinator', () => {
    expect(
      endsGeneration(
        retried(
          new (KafkaJSBrokerNotFound as unknown as new (m: string) => Error)(
            'Broker 2 not found in the cached metadata',
          ),
        ),
      ),
    ).toBe(false);
    expect(endsGeneration(protocol('NOT_COORDINATOR'))).toBe(false);
    expect(endsGeneration(protocol('COORDINATOR_NOT_AVAILABLE'))).toBe(false);
    expect(endsGeneration(new Error('connect ECONNREFUSED'))).toBe(false);
  });
});
