// Proves the Kafka part of the stack is real: Avro-encoded messages go through the real
// broker with kafkajs, per-key order holds on a multi-partition topic, and a consumer
// group resumes exactly after its last committed offset (no re-delivery, no gap).
// The Avro schema is a tiny inline one on purpose: this tests the transport, not schemas/.
import { Writable } from 'node:stream';
import avsc from 'avsc';
import type { Consumer, Kafka, Producer } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../../common/errors.js';
import { createKafka } from '../../common/kafka.js';
import { ensureTopics, topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import {
  createTopics,
  deleteTopics,
  type KafkaEndpoint,
  quietKafka,
  startCluster3,
  startCluster3Node,
  stopCluster3,
  stopCluster3Node,
  uniqueTopic,
} from '../support/kafka.js';
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
      // Idempotent, as the collector sends: kafkajs retries a failed produce request per
      // broker, so without it one failed partition duplicates the others in the request.
      const producer = client(ep).producer({ idempotent: true, maxInFlightRequests: 1 });
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
      const producer = client(ep).producer({ idempotent: true, maxInFlightRequests: 1 });
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

describe('ensureTopics on the real broker', () => {
  const created: string[] = [];
  afterAll(async () => {
    if (endpoint) await deleteTopics(endpoint, created);
  });

  itReal(missing)(
    'creates the ktrail topics once, co-partitioned, with a compacted containers topic',
    async () => {
      const ep = endpoint as KafkaEndpoint;
      const prefix = `${uniqueTopic('ensure')}.`;
      const names = topicNames(prefix);
      created.push(...Object.values(names));
      const admin = quietKafka(ep.brokers, 'ensure-test').admin();
      await admin.connect();
      try {
        const first = await ensureTopics(admin, { prefix, partitions: 4 });
        expect(first.created.sort()).toEqual(Object.values(names).sort());
        expect(first.existing).toEqual([]);

        const { topics } = await admin.fetchTopicMetadata({ topics: Object.values(names) });
        expect(topics.map((t) => [t.name, t.partitions.length]).sort()).toEqual(
          Object.values(names)
            .map((n) => [n, 4])
            .sort(),
        );
        const configs = await admin.describeConfigs({
          resources: [
            { type: 2, name: names.containers, configNames: ['cleanup.policy', 'min.compaction.lag.ms'] },
          ],
          includeSynonyms: false,
        });
        const entries = Object.fromEntries(
          (configs.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]),
        );
        expect(entries['cleanup.policy']).toBe('compact');
        expect(Number(entries['min.compaction.lag.ms'])).toBeGreaterThan(0);

        // Idempotent: nothing new, nothing fails.
        const second = await ensureTopics(admin, { prefix, partitions: 4 });
        expect(second.created).toEqual([]);
        expect(second.existing.sort()).toEqual(Object.values(names).sort());

        // A different partition count would break co-partitioning: refuse, naming topics.
        const mismatch = ensureTopics(admin, { prefix, partitions: 5 });
        await expect(mismatch).rejects.toBeInstanceOf(ConfigError);
        await expect(mismatch).rejects.toThrow(`${names.events} has 4`);
      } finally {
        await admin.disconnect();
      }
    },
    60_000,
  );

  itReal(missing)(
    'creates nothing when an existing topic has another partition count',
    async () => {
      const ep = endpoint as KafkaEndpoint;
      const prefix = `${uniqueTopic('ensure-pc')}.`;
      const names = topicNames(prefix);
      created.push(...Object.values(names));
      await createTopics(ep, [{ topic: names.events, partitions: 3 }]);
      const admin = quietKafka(ep.brokers, 'ensure-test').admin();
      await admin.connect();
      try {
        await expect(ensureTopics(admin, { prefix, partitions: 6 })).rejects.toThrow(`${names.events} has 3`);
        const after = new Set(await admin.listTopics());
        expect(Object.values(names).filter((t) => after.has(t))).toEqual([names.events]);
      } finally {
        await admin.disconnect();
      }
    },
    60_000,
  );

  itReal(missing)(
    'refuses a containers topic that exists without compaction',
    async () => {
      const ep = endpoint as KafkaEndpoint;
      const prefix = `${uniqueTopic('ensure-nc')}.`;
      const names = topicNames(prefix);
      created.push(...Object.values(names));
      await createTopics(ep, [{ topic: names.containers, partitions: 2 }]);
      const admin = quietKafka(ep.brokers, 'ensure-test').admin();
      await admin.connect();
      try {
        await expect(ensureTopics(admin, { prefix, partitions: 2 })).rejects.toThrow(
          `topic ${names.containers}: cleanup.policy is "delete", ktrail needs "compact"`,
        );
      } finally {
        await admin.disconnect();
      }
    },
    60_000,
  );
});

// The three-node cluster the failover tests use: proves the helpers start it next to the
// single broker, and that acks=all writes survive losing a partition leader.
describe('three-node KRaft cluster', () => {
  let cluster: KafkaEndpoint | undefined;
  const clients: (Producer | Consumer)[] = [];
  afterAll(async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
    if (cluster) await stopCluster3();
  }, 120_000);

  itReal(missing)(
    'keeps every acknowledged message when the partition leader is killed',
    async () => {
      cluster = await startCluster3();
      expect(cluster.brokers).toHaveLength(3);
      const topic = uniqueTopic('c3-failover');
      await createTopics(cluster, [{ topic, partitions: 1, replicationFactor: 3 }]);

      const admin = quietKafka(cluster.brokers, 'c3-test').admin();
      await admin.connect();
      const leaderOf = async (): Promise<number> => {
        const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
        return topics[0]?.partitions[0]?.leader ?? -1;
      };
      const leader = await leaderOf();
      expect([1, 2, 3]).toContain(leader);

      const producer = createKafka(
        { brokers: cluster.brokers, clientId: 'c3-producer' },
        createLogger('test.kafka-c3'),
      ).producer({ idempotent: true, maxInFlightRequests: 1 }); // as the collector sends
      clients.push(producer);
      await producer.connect();
      const send = (from: number, to: number) =>
        producer.send({
          topic,
          acks: -1,
          messages: Array.from({ length: to - from }, (_, i) => ({
            key: 'k',
            value: encode({ key: 'k', seq: from + i, tsNs: BASE_TS, payload: Buffer.alloc(0) }),
          })),
        });
      await send(0, 50);

      // A crash, not a clean shutdown: the controller must notice and move leadership.
      await stopCluster3Node(leader as 1 | 2 | 3, { kill: true });
      await send(50, 100);
      const newLeader = await leaderOf();
      expect(newLeader).not.toBe(leader);
      expect([1, 2, 3]).toContain(newLeader);
      await admin.disconnect();

      const seqs: number[] = [];
      const consumer = quietKafka(cluster.brokers, 'c3-consumer').consumer({
        groupId: uniqueTopic('c3-group'),
      });
      clients.push(consumer);
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          seqs.push(decode(message.value).seq);
        },
      });
      await waitFor(
        () => seqs.length >= 100,
        60_000,
        () => `${seqs.length}/100 consumed`,
      );
      await consumer.disconnect();
      // Every acknowledged message, once, in order (kafkajs retried the in-flight send).
      expect(seqs).toEqual(Array.from({ length: 100 }, (_, i) => i));

      // The killed node comes back and serves again.
      await startCluster3Node(leader as 1 | 2 | 3);
      const probe = quietKafka(
        [`127.0.0.1:${cluster.brokers[leader - 1]?.split(':')[1]}`],
        'c3-probe',
      ).admin();
      await probe.connect();
      const described = await probe.describeCluster();
      await probe.disconnect();
      expect(described.brokers.map((b) => b.nodeId).sort()).toEqual([1, 2, 3]);
    },
    // Four JVM starts on a shared 2-core machine: 105-145 s measured under load.
    360_000,
  );
});

// No broker needed: the client factory's own behaviour.
describe('createKafka', () => {
  const logger = createLogger('test.kafka-smoke');

  it('names the bad setting', () => {
    expect(() => createKafka({ brokers: [], clientId: 'x' }, logger)).toThrow(ConfigError);
    expect(() => createKafka({ brokers: ['localhost'], clientId: 'x' }, logger)).toThrow(
      'kafka.brokers: "localhost" is not host:port',
    );
    expect(() => createKafka({ brokers: ['127.0.0.1:1'], clientId: '' }, logger)).toThrow('kafka.clientId');
  });

  it('routes kafkajs log lines into pino with their namespace', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const captured = pino({ level: 'warn' }, sink).child({ component: 'probe' });
    // Port 1 on loopback refuses connections: kafkajs logs an error and gives up fast.
    const admin = createKafka(
      { brokers: ['127.0.0.1:1'], clientId: 'log-probe', retry: { retries: 0 } },
      captured,
    ).admin();
    await expect(admin.connect()).rejects.toThrow();
    const fromKafkajs = lines.filter((l) => l.lib === 'kafkajs');
    expect(fromKafkajs.length).toBeGreaterThan(0);
    // Per-attempt connection failures are warnings; the caller gets the final error.
    const attempt = fromKafkajs.find((l) => l.ns === 'Connection');
    expect(attempt).toMatchObject({ component: 'probe', level: 40 });
    expect(String(attempt?.msg)).toMatch(/ECONNREFUSED/);
  });
});
