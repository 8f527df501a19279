// Proves the Kafka part of the stack is real: Avro-encoded messages go through the real
// broker with kafkajs, per-key order holds on a multi-partition topic, and a consumer
// group resumes exactly after its last committed offset (no re-delivery, no gap).
// The Avro schema is a tiny inline one on purpose: this tests the transport, not schemas/.
import avsc from 'avsc';
import type { Consumer, Kafka, Producer } from 'kafkajs';
import { afterAll, describe, expect, inject } from 'vitest';
import { createKafka } from '../../common/kafka.js';
import { createLogger } from '../../common/log.js';
import { createTopics, deleteTopics, type KafkaEndpoint, uniqueTopic } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const { value: endpoint, missing } = endpointOrReason(inject('kafka'));

// u64 fields must keep full precision (DESIGN: avsc rejects longs above 2^53 unless a
// BigInt-backed long is registered), so the smoke message carries one.
const bigintLong = avsc.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n);
    return buf;
  },
  fromJSON: BigInt,
  toJSON: Number,
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

interface SmokeRecord {
  key: string;
  seq: number;
  tsNs: bigint;
  payload: Buffer;
}

const smokeType = avsc.Type.forSchema(
  {
    type: 'record',
    name: 'SmokeRecord',
    namespace: 'dev.ktrail.test',
    fields: [
      { name: 'key', type: 'string' },
      { name: 'seq', type: 'int' },
      { name: 'tsNs', type: 'long' },
      { name: 'payload', type: 'bytes' },
    ],
  },
  { registry: { long: bigintLong } },
);

// Above 2^53: a Number would round this.
const BASE_TS = 1_795_000_000_123_456_789n;

function encode(record: SmokeRecord): Buffer {
  return smokeType.toBuffer(record);
}

function decode(buf: Buffer | null): SmokeRecord {
  if (buf === null) throw new Error('message without a value');
  return smokeType.fromBuffer(buf) as SmokeRecord;
}

/** Resolves when `done()` holds, polling; rejects with what was seen after `ms`. */
async function waitFor(done: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Kafka smoke: Avro through the real broker with kafkajs', () => {
  const logger = createLogger('test.kafka-smoke');
  logger.level = 'warn';
  const topics: string[] = [];
  const clients: (Producer | Consumer)[] = [];
  let kafka: Kafka | undefined;

  function client(ep: KafkaEndpoint): Kafka {
    kafka ??= createKafka({ brokers: ep.brokers, clientId: 'ktrail-smoke' }, logger);
    return kafka;
  }

  afterAll(async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
    if (endpoint) await deleteTopics(endpoint, topics);
  });

  itReal(missing)(
    'keeps per-key order across a 6-partition topic and u64 values exact',
    async () => {
      const ep = endpoint as KafkaEndpoint;
      const topic = uniqueTopic('smoke-order');
      topics.push(topic);
      await createTopics(ep, [{ topic, partitions: 6 }]);

      const keys = Array.from({ length: 12 }, (_, i) => `node-${i}`);
      const perKey = 40;
      const producer = client(ep).producer();
      clients.push(producer);
      await producer.connect();
      // Interleave keys in each send; await each send so the next can't overtake it.
      for (let seq = 0; seq < perKey; seq += 10) {
        const messages = [];
        for (let s = seq; s < seq + 10; s++)
          for (const key of keys)
            messages.push({
              key,
              value: encode({ key, seq: s, tsNs: BASE_TS + BigInt(s), payload: Buffer.from([s & 0xff]) }),
            });
        await producer.send({ topic, acks: -1, messages });
      }

      const seen = new Map<string, { seqs: number[]; partitions: Set<number> }>();
      const problems: string[] = [];
      let total = 0;
      const consumer = client(ep).consumer({ groupId: uniqueTopic('smoke-order-group') });
      clients.push(consumer);
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          // Collected, not thrown: kafkajs would swallow a throw here and redeliver.
          const record = decode(message.value);
          if (message.key?.toString() !== record.key) problems.push(`key ${message.key} != ${record.key}`);
          if (record.tsNs !== BASE_TS + BigInt(record.seq))
            problems.push(`tsNs ${record.tsNs} at seq ${record.seq}`);
          if (record.payload[0] !== (record.seq & 0xff)) problems.push(`payload at seq ${record.seq}`);
          const entry = seen.get(record.key) ?? { seqs: [], partitions: new Set<number>() };
          entry.seqs.push(record.seq);
          entry.partitions.add(partition);
          seen.set(record.key, entry);
          total++;
        },
      });
      await waitFor(
        () => total >= keys.length * perKey,
        60_000,
        () => `${total}/${keys.length * perKey} consumed`,
      );
      await consumer.stop();

      expect(problems).toEqual([]);
      expect(total).toBe(keys.length * perKey);
      const usedPartitions = new Set<number>();
      for (const key of keys) {
        const entry = seen.get(key);
        expect(entry, key).toBeDefined();
        // Each key lives in exactly one partition, and arrives in the order it was sent.
        expect(entry?.partitions.size, key).toBe(1);
        expect(entry?.seqs, key).toEqual(Array.from({ length: perKey }, (_, i) => i));
        for (const p of entry?.partitions ?? []) usedPartitions.add(p);
      }
      // Otherwise "order across partitions" would prove nothing.
      expect(usedPartitions.size).toBeGreaterThan(1);
    },
    120_000,
  );

  itReal(missing)(
    'a consumer group resumes exactly after the last committed offset',
    async () => {
      const ep = endpoint as KafkaEndpoint;
      const topic = uniqueTopic('smoke-resume');
      const groupId = uniqueTopic('smoke-resume-group');
      topics.push(topic);
      await createTopics(ep, [{ topic, partitions: 3 }]);

      const total = 90;
      const firstRun = 37;
      const producer = client(ep).producer();
      clients.push(producer);
      await producer.connect();
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: total }, (_, seq) => ({
          key: `k${seq % 7}`,
          value: encode({ key: `k${seq % 7}`, seq, tsNs: BASE_TS, payload: Buffer.alloc(0) }),
        })),
      });

      // First member: processes `firstRun` messages, committing each one after handling
      // it, then stops. Messages it sees after that are not handled and not committed.
      const handledA = new Map<number, { partition: number; offset: string }>();
      const a = client(ep).consumer({ groupId });
      clients.push(a);
      await a.connect();
      await a.subscribe({ topic, fromBeginning: true });
      await a.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          if (handledA.size >= firstRun) return;
          handledA.set(decode(message.value).seq, { partition, offset: message.offset });
          await a.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
        },
      });
      await waitFor(
        () => handledA.size >= firstRun,
        60_000,
        () => `${handledA.size}/${firstRun} handled by the first consumer`,
      );
      await a.disconnect();

      // What the group committed must be exactly what A handled, partition by partition.
      const admin = client(ep).admin();
      await admin.connect();
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      await admin.disconnect();
      const committedByPartition = new Map<number, bigint>();
      for (const p of committed?.partitions ?? []) committedByPartition.set(p.partition, BigInt(p.offset));
      for (let partition = 0; partition < 3; partition++) {
        const handled = [...handledA.values()].filter((h) => h.partition === partition);
        const expected = handled.length === 0 ? -1n : BigInt(handled.length);
        expect(committedByPartition.get(partition), `partition ${partition}`).toBe(expected);
      }

      // Second member, same group: must start at the committed offsets.
      const handledB = new Map<number, { partition: number; offset: string }>();
      const firstOffsetB = new Map<number, bigint>();
      const redelivered: number[] = [];
      const b = client(ep).consumer({ groupId });
      clients.push(b);
      await b.connect();
      await b.subscribe({ topic, fromBeginning: true });
      await b.run({
        eachMessage: async ({ partition, message }) => {
          if (!firstOffsetB.has(partition)) firstOffsetB.set(partition, BigInt(message.offset));
          const seq = decode(message.value).seq;
          if (handledB.has(seq)) redelivered.push(seq);
          handledB.set(seq, { partition, offset: message.offset });
        },
      });
      await waitFor(
        () => handledA.size + handledB.size >= total,
        60_000,
        () => `A ${handledA.size} + B ${handledB.size} of ${total}`,
      );
      // Give a stray re-delivery a moment to show up before judging.
      await new Promise((r) => setTimeout(r, 500));
      await b.disconnect();

      for (const [partition, first] of firstOffsetB) {
        const c = committedByPartition.get(partition) ?? -1n;
        expect(first, `B's first offset on partition ${partition}`).toBe(c < 0n ? 0n : c);
      }
      expect(redelivered).toEqual([]);
      const overlap = [...handledB.keys()].filter((seq) => handledA.has(seq));
      expect(overlap).toEqual([]);
      const all = [...handledA.keys(), ...handledB.keys()].sort((x, y) => x - y);
      expect(all).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(handledB.size).toBe(total - firstRun);
    },
    120_000,
  );
});
