// Which failed offset commits end this member's generation (kafkajs rebalances) and which mean
// the coordinator is unreachable or moved (the member gives its partitions up and makes kafkajs
// rejoin to find it): kafkajs' own error classes, wrapped the way its retrier wraps them.
import { KafkaJSBrokerNotFound, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { endsGeneration, GroupRuntime } from '../../processor/src/group-runtime.js';

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

/**
 * kafkajs' consumer reduced to what GroupRuntime calls: commits fail with `commitError`, and
 * the eachBatch it was given is kept to be called as kafkajs' runner would.
 */
function fakeKafka(commitError: Error) {
  let eachBatch: ((payload: unknown) => Promise<void>) | undefined;
  const consumer = {
    events: { GROUP_JOIN: 'join', REBALANCING: 'rebalancing', CRASH: 'crash' },
    on: () => {},
    subscribe: async () => {},
    run: async (o: { eachBatch: (payload: unknown) => Promise<void> }) => {
      eachBatch = o.eachBatch;
    },
    commitOffsets: async () => {
      throw commitError;
    },
  };
  const payload = {
    batch: { topic: 'events', partition: 0, messages: [] },
    heartbeat: async () => {},
    isRunning: () => true,
    isStale: () => false,
    resolveOffset: () => {},
  };
  return {
    kafka: { consumer: () => consumer, admin: () => ({}) } as never,
    nextBatch: () => (eachBatch as (p: unknown) => Promise<void>)(payload),
  };
}

describe('a group coordinator that moved', () => {
  const options = {
    groupId: 'g',
    sessionTimeoutMs: 8_000,
    heartbeatIntervalMs: 1_000,
    maxWaitTimeMs: 500,
    concurrency: 2,
  };

  /** A runtime whose commits fail with `commitError`, running, after its first batch. */
  async function running(commitError: Error) {
    const { kafka, nextBatch } = fakeKafka(commitError);
    const runtime = new GroupRuntime(kafka, options, createLogger('group-runtime-test'));
    const revoked: string[] = [];
    await runtime.run(
      ['events'],
      { joined: () => {}, revoked: (r) => revoked.push(r) },
      new Map(),
      undefined,
    );
    await nextBatch(); // the runner is running
    return { runtime, revoked, nextBatch };
  }

  it('gives the partitions up at once, and the next batch makes kafkajs rejoin', async () => {
    const { runtime, revoked, nextBatch } = await running(retried(protocol('NOT_COORDINATOR')));
    // A pipeline retrying this commit inside its batch handler would hold kafkajs' rejoin:
    // its partition is revoked, so the retry loop ends.
    await expect(runtime.commit('events', 0, 5n, null)).rejects.toThrow('group coordinator unreachable');
    expect(revoked).toEqual(['group coordinator moved']);
    await expect(runtime.commit('events', 1, 9n, null)).rejects.toThrow('group coordinator unreachable');
    expect(revoked).toHaveLength(1); // once, until the rejoin
    await expect(nextBatch()).rejects.toMatchObject({ type: 'NOT_COORDINATOR_FOR_GROUP' });
    await expect(nextBatch()).resolves.toBeUndefined(); // raised once
  });

  it('leaves a generation that is over to the rebalance kafkajs runs', async () => {
    const { runtime, revoked, nextBatch } = await running(protocol('REBALANCE_IN_PROGRESS'));
    await expect(runtime.commit('events', 0, 5n, null)).rejects.toMatchObject({
      type: 'REBALANCE_IN_PROGRESS',
    });
    expect(revoked).toEqual([]);
    await expect(nextBatch()).resolves.toBeUndefined();
  });
});
