// Bad input and failing outputs against a running processor, on the real broker and chDB:
// every kind of bad message ends in dead_letters (table and topic) with its reason while the
// good messages of the same batch land and the committed offset moves past; rows older than
// the raw TTL are counted; a message Kafka holds twice is written once and counted; an
// enriched topic deleted mid-run is skipped and counted, never a stall, and is published to
// again once it is back.
import { createHash, randomBytes } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka, Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import {
  createTestTopics,
  kafkaClient,
  nodeProducer,
  processorTopics,
  testOptions,
} from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';
import type { TopicNames } from '../../common/kafka-topics.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { MAX_DEAD_LETTER_RAW_BYTES } from '../../processor/src/dead-letters.js';
import type { EnrichedBatch, EnrichedEvent } from '../../processor/src/enriched.js';
import { createProcessor, type Processor, type ProcessorCodec } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { createEncoder } from '../../schemas/codec.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { looseEventBatchWriter } from '../support/loose-avro.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DAY_NS = 86_400_000_000_000n;
const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const eventBatchEncoder = createEncoder('EventBatch');

function procExit(tsNs: bigint, comm: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: 'proc_exit',
    tsNs,
    cgroupId: 1n,
    pid: 10,
    tgid: 10,
    flags: 0,
    ppid: 1,
    exitCode: 0,
    signal: 0,
    coreDumped: 0,
    startNs: 0n,
    cpuNs: 1_000n,
    comm,
    ...over,
  };
}

function envelope(node: string, sequence: bigint, events: Record<string, unknown>[], bootEpochNs: bigint) {
  return {
    node,
    bootId: 'boot-1',
    collectorVersion: 'test',
    sequence,
    producedAtNs: nowNs(),
    bootEpochNs,
    events,
  };
}

describe('processor: bad input and failing outputs', () => {
  let client: Kafka;
  let names: TopicNames;
  let ch: ClickHouseClient;
  let producer: Producer;
  let processor: Processor;
  let groupId: string;
  const decode = createTopicDecoder();

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    const prefix = `bad-${Date.now().toString(36)}.`;
    groupId = `${prefix}group`;
    client = kafkaClient(kafka.value.brokers);
    // One partition: the bad and the good messages of a test share batches.
    names = await createTestTopics(client, prefix, 1);
    ch = await createProcessorStore('bad');
    producer = await nodeProducer(client);
    const real = createProcessorCodec();
    // Failure injection for "any failure while building the enriched output of one message":
    // the real encoder, refusing the events of a process named `boom`.
    // An event arrives decoded or as its bytes (enriched-writer.ts): look in either.
    const mentions = (e: EnrichedEvent, text: string) =>
      e.bytes === undefined
        ? 'comm' in e.event && e.event.comm === text
        : e.bytes.body.subarray(e.bytes.spans[2 * e.index], e.bytes.spans[2 * e.index + 1]).includes(text);
    const codec: ProcessorCodec = {
      ...real,
      encodeEnriched: (batch: EnrichedBatch) => {
        if (batch.events.some((e) => mentions(e, 'boom')))
          throw new Error('injected: enriched encoder failed');
        return real.encodeEnriched(batch);
      },
    };
    processor = createProcessor({
      kafka: client,
      topics: processorTopics(names),
      sink: clickHouseSink(ch),
      codec,
      options: testOptions(groupId, {
        batchMaxMs: 300,
        lateMetadataWaitMs: 200,
        rawTtlDays: 14,
        outputs: { attemptTimeoutMs: 3_000, backoffInitialMs: 1_000, backoffMaxMs: 2_000 },
      }),
    });
    await processor.start();
  }, 120_000);

  afterAll(async () => {
    await processor?.stop();
    await producer?.disconnect();
    await ch?.close();
  });

  const query = <T>(sql: string): Promise<T[]> => queryRows<T>(ch, sql);
  const count = async (sql: string): Promise<number> => Number((await query<{ n: string }>(sql))[0]?.n);

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(250);
    }
  }

  async function committedToEnd(): Promise<boolean> {
    const admin = client.admin();
    await admin.connect();
    try {
      const [end] = await admin.fetchTopicOffsets(names.events);
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      return end !== undefined && t?.partitions[0]?.offset === end.high;
    } finally {
      await admin.disconnect();
    }
  }

  /** Reads a topic from the start until `done` says enough (or the time is up). */
  async function readTopic(topic: string, done: (values: Buffer[]) => boolean, timeoutMs = 30_000) {
    const values: Buffer[] = [];
    const consumer = client.consumer({ groupId: `${groupId}-${topic}-${Date.now()}` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => void (message.value && values.push(message.value)),
    });
    try {
      await until(`messages of ${topic}`, async () => done(values), timeoutMs);
    } finally {
      await consumer.disconnect();
    }
    return values;
  }

  itReal(kafka.missing)(
    'each kind of bad message is a dead letter with its reason; the good ones of the batch land; offsets move past',
    async () => {
      const node = 'bad-node';
      const boot = nowNs() - 3_600_000_000_000n;
      const loose = looseEventBatchWriter();
      const good = new SyntheticNode({ node, containers: 1 });
      const big = Buffer.concat([Buffer.from([0xc3, 0x01]), randomBytes(1_000_000)]); // unknown schema, ~1 MB
      const messages: { label: string; value: Buffer | null; reason?: string }[] = [
        { label: 'good 1', value: good.next(10) },
        {
          label: 'int past 32 bits',
          value: loose(envelope(node, 101n, [procExit(1n, 'sh', { flags: 2 ** 40 })], boot)),
          reason: 'out_of_range',
        },
        {
          label: 'u32 past 32 bits',
          value: loose(envelope(node, 102n, [procExit(2n, 'sh', { pid: 2 ** 33 })], boot)),
          reason: 'out_of_range',
        },
        {
          label: 'a clock past 2262',
          value: eventBatchEncoder.encode(
            envelope(node, 103n, [procExit(3n, 'sh')], 9_300_000_000_000_000_000n) as never,
          ),
          reason: 'out_of_range',
        },
        {
          label: 'enriched output fails',
          value: eventBatchEncoder.encode(envelope(node, 104n, [procExit(4n, 'boom')], boot) as never),
          reason: 'output_failed',
        },
        { label: 'over the broker limit as a dead letter', value: big, reason: 'unknown_schema' },
        { label: 'tombstone', value: null, reason: 'null_value' },
        { label: 'zero bytes', value: Buffer.alloc(0), reason: 'empty_value' },
        { label: 'good 2', value: good.next(10) },
      ];
      for (const m of messages)
        await producer.send({ topic: names.events, messages: [{ key: node, value: m.value }] });

      await until('every offset committed past the bad messages', committedToEnd);
      expect(await count(`SELECT count() AS n FROM ktrail.cpu_sample WHERE node = '${node}'`)).toBe(20);
      // The message whose enriched output failed still has its row in ClickHouse.
      expect(await count(`SELECT count() AS n FROM ktrail.proc_exit WHERE comm = 'boom'`)).toBe(1);
      expect(await count(`SELECT count() AS n FROM ktrail.proc_exit WHERE node = '${node}'`)).toBe(1);

      const dead = await query<{
        source_offset: string;
        reason: string;
        raw: string;
        raw_size: string;
        raw_sha256: string;
      }>(
        'SELECT source_offset, reason, raw, raw_size, raw_sha256 FROM ktrail.dead_letters ORDER BY source_offset',
      );
      const expected = messages
        .map((m, offset) => ({ offset: String(offset), reason: m.reason }))
        .filter((m) => m.reason !== undefined);
      expect(dead.map((d) => ({ offset: d.source_offset, reason: d.reason }))).toEqual(expected);
      const bigDead = dead.find((d) => d.reason === 'unknown_schema');
      expect(Buffer.from(bigDead?.raw ?? '', 'base64').length).toBe(MAX_DEAD_LETTER_RAW_BYTES);
      expect(Number(bigDead?.raw_size)).toBe(big.length);
      expect(bigDead?.raw_sha256).toBe(createHash('sha256').update(big).digest('hex'));

      // The topic has every one of them (the big one cut, so it fits the broker's limit).
      const topic = await readTopic(names.deadletter, (v) => v.length >= expected.length);
      const reasons = topic.map((v) => (decode('deadletter', v) as { reason: string }).reason).sort();
      expect(reasons).toEqual(expected.map((e) => e.reason as string).sort());

      // The enriched topic has the good events and not the failed message's.
      const enriched = (
        await readTopic(
          names.eventsEnriched,
          (v) => v.reduce((n, b) => n + decode('enriched', b).events.length, 0) >= 20,
        )
      ).map((v) => decode('enriched', v));
      const events = enriched.flatMap((b) => b.events);
      expect(events.filter((e) => e.event.kind === 'cpu_sample')).toHaveLength(20);
      expect(events.some((e) => 'comm' in e.event && e.event.comm === 'boom')).toBe(false);
      expect(processor.stats().deadLetters).toBeGreaterThanOrEqual(expected.length);
    },
    180_000,
  );

  itReal(kafka.missing)(
    'rows older than the raw TTL are counted in ingest_losses and still reach the rollups',
    async () => {
      const node = 'old-node';
      const old = new SyntheticNode({ node, containers: 1 });
      // Events of 20 days ago (the raw TTL here is 14 days).
      await producer.send({
        topic: names.events,
        messages: [{ key: node, value: old.next(30, nowNs() - 20n * DAY_NS) }],
      });
      await until('the old batch committed', committedToEnd);
      const losses = await query<{ what: string; rows: string }>(
        `SELECT what, sum(rows) AS rows FROM ktrail.ingest_losses
         WHERE node = '${node}' AND reason = 'older_than_ttl' GROUP BY what`,
      );
      expect(losses).toEqual([{ what: 'cpu_sample', rows: '30' }]);
      expect(await count(`SELECT count() AS n FROM ktrail.cpu_sample WHERE node = '${node}'`)).toBe(0);
      expect(
        await count(`SELECT sum(cpu_ns) AS n FROM ktrail.usage WHERE node = '${node}' AND resolution = 60`),
      ).toBe(30 * 5_000_000);
      expect(processor.losses()).toContainEqual({ what: 'cpu_sample', reason: 'older_than_ttl', rows: 30 });
    },
    120_000,
  );

  itReal(kafka.missing)(
    'a message Kafka holds twice is written once and counted; a collector counting from 0 again is kept',
    async () => {
      const node = 'twice-node';
      const gen = new SyntheticNode({ node, containers: 1 });
      const [m1, m2, m3] = [gen.next(10), gen.next(10), gen.next(10)];
      // A producer's resend under a new id: the same bytes again, at later offsets.
      for (const value of [m1, m2, m3, m2, m3])
        await producer.send({ topic: names.events, messages: [{ key: node, value }] });
      await sleep(5);
      // The same node and boot counting from 1 again (a restarted collector): a later time.
      const restarted = new SyntheticNode({ node, containers: 1 }).next(10);
      await producer.send({ topic: names.events, messages: [{ key: node, value: restarted }] });
      await until('the copies committed', committedToEnd);
      expect(await count(`SELECT count() AS n FROM ktrail.event_batches WHERE node = '${node}'`)).toBe(4);
      expect(await count(`SELECT count() AS n FROM ktrail.cpu_sample WHERE node = '${node}'`)).toBe(40);
      const losses = await query<{ what: string; rows: string; detail: string }>(
        `SELECT what, sum(rows) AS rows, any(detail) AS detail FROM ktrail.ingest_losses
         WHERE node = '${node}' AND reason = 'duplicate_message' GROUP BY what`,
      );
      expect(losses).toEqual([
        {
          what: 'events',
          rows: '20',
          detail: expect.stringMatching(/Kafka held twice.*boot boot-1 sequence [23] /),
        },
      ]);
      expect(processor.losses()).toContainEqual({ what: 'events', reason: 'duplicate_message', rows: 20 });
      expect(processor.stats().duplicateEvents).toBe(20);
    },
    120_000,
  );

  itReal(kafka.missing)(
    'a deleted enriched topic is skipped and counted, rows keep landing, and it is used again once back',
    async () => {
      const node = 'outage-node';
      const gen = new SyntheticNode({ node, containers: 1 });
      const admin = client.admin();
      await admin.connect();
      try {
        await admin.deleteTopics({ topics: [names.eventsEnriched] });
        await until(
          'the enriched topic gone',
          async () => !(await admin.listTopics()).includes(names.eventsEnriched),
        );
        const outageEvents = 5 * 20;
        for (let i = 0; i < 5; i++)
          await producer.send({ topic: names.events, messages: [{ key: node, value: gen.next(20) }] });
        await until('the outage batches committed', committedToEnd);
        expect(await count(`SELECT count() AS n FROM ktrail.cpu_sample WHERE node = '${node}'`)).toBe(
          outageEvents,
        );
        const skipped = await count(
          `SELECT sum(rows) AS n FROM ktrail.ingest_losses
           WHERE node = '${node}' AND what = 'topic:enriched' AND reason = 'output_skipped'`,
        );
        expect(skipped).toBe(outageEvents);
        expect(processor.stats().outputSkipped).toBeGreaterThanOrEqual(outageEvents);

        const alerts = (
          await readTopic(names.alerts, (v) =>
            v.some((b) => (decode('alerts', b) as { kind: string }).kind === 'output_skipped'),
          )
        ).map((v) => decode('alerts', v) as { kind: string; details: Record<string, string> });
        expect(alerts.find((a) => a.kind === 'output_skipped')?.details.output).toBe('enriched');

        // Back: the topic is recreated, and once the backoff ends the next batches go to it.
        await admin.createTopics({
          topics: [{ topic: names.eventsEnriched, numPartitions: 1 }],
          waitForLeaders: true,
        });
        await sleep(2_500);
        const firstAfter = gen.next(20);
        await producer.send({ topic: names.events, messages: [{ key: node, value: firstAfter }] });
        await until('the batch after the outage committed', committedToEnd);
        const back = (
          await readTopic(names.eventsEnriched, (v) => v.some((b) => decode('enriched', b).node === node))
        ).map((v) => decode('enriched', v));
        const published = back.filter((b) => b.node === node).flatMap((b) => b.events);
        expect(published).toHaveLength(20);
      } finally {
        await admin.disconnect();
      }
    },
    180_000,
  );
});
