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
import { PoisonError } from '../../common/errors.js';
import type { TopicNames } from '../../common/kafka-topics.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import {
  dedupToken,
  type MessageRows,
  type Row,
  rowsByMessage,
  splitRejected,
} from '../../processor/src/partition-batch.js';
import { createProcessor, type Processor } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { loadCatalog } from '../../schemas/catalog.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { buildMessageRows } from '../support/event-row.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const kafka = endpointOrReason(inject('kafka'));
/** 1998-07-09: before the time_is_set constraint's 2001-01-01. */
const BROKEN_BOOT_EPOCH_NS = 900_000_000n * 1_000_000_000n;

describe('processor: rows ClickHouse rejects', () => {
  let client: Kafka;
  let names: TopicNames;
  let ch: ClickHouseClient;
  let producer: Producer;
  let processor: Processor;
  let groupId: string;

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    const prefix = `rejected-${Date.now().toString(36)}.`;
    groupId = `${prefix}group`;
    client = kafkaClient(kafka.value.brokers);
    names = await createTestTopics(client, prefix, 1);
    ch = await createProcessorStore('rejected');
    producer = await nodeProducer(client);
  }, 120_000);

  afterAll(async () => {
    await processor?.stop();
    await producer?.disconnect();
    await ch?.close();
  });

  const query = <T>(sql: string): Promise<T[]> => queryRows<T>(ch, sql);

  itReal(kafka.missing)(
    'a message whose rows ClickHouse rejects is a dead letter; the others land exactly once; the partition moves on',
    async () => {
      // Seven messages in one batch: six good ones (cpu_sample and proc_exit rows) and, at
      // index 3, one whose cpu_sample rows are all before 2001.
      const good = new SyntheticNode({ node: 'split-node', containers: 2, exitShare: 0.25 });
      const broken = new SyntheticNode({ node: 'broken-clock', containers: 1 });
      const values = [0, 1, 2, 3, 4, 5, 6].map((i) =>
        i === 3 ? broken.next(10, BROKEN_BOOT_EPOCH_NS) : good.next(20),
      );
      const [sent] = await producer.send({
        topic: names.events,
        messages: values.map((value) => ({ key: 'split-node', value })),
      });
      const base = BigInt(sent?.baseOffset ?? '0');
      const badOffset = base + 3n;

      processor = createProcessor({
        kafka: client,
        topics: processorTopics(names),
        sink: clickHouseSink(ch),
        codec: createProcessorCodec(),
        // One batch for all seven (cut by time after they all arrived); enriched off.
        options: testOptions(groupId, { batchMaxMs: 2_000, enrichedTopic: false }),
      });
      await processor.start();

      const admin = client.admin();
      await admin.connect();
      const end = BigInt((await admin.fetchTopicOffsets(names.events))[0]?.high ?? '0');
      expect(end).toBe(base + 7n);
      await waitFor(
        'the committed offset past every message',
        async () => {
          const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
          return t?.partitions[0]?.offset === String(end) ? true : undefined;
        },
        90_000,
        250,
      );
      await admin.disconnect();

      // Good rows: all of them, once (every event has a unique ts_ns per node).
      const [cpu] = await query<{ n: string; d: string }>(
        `SELECT count() AS n, uniqExact(ts_ns) AS d FROM ktrail.cpu_sample WHERE node = 'split-node'`,
      );
      const [exits] = await query<{ n: string; d: string }>(
        `SELECT count() AS n, uniqExact(ts_ns) AS d FROM ktrail.proc_exit WHERE node = 'split-node'`,
      );
      expect(Number(cpu?.n) + Number(exits?.n)).toBe(6 * 20);
      expect(Number(cpu?.d) + Number(exits?.d)).toBe(6 * 20);
      expect(Number(exits?.n)).toBeGreaterThan(0);
      const [brokenRows] = await query<{ n: string }>(
        `SELECT count() AS n FROM ktrail.cpu_sample WHERE node = 'broken-clock'`,
      );
      expect(Number(brokenRows?.n)).toBe(0);
      // Only the table that refused the rows lost them: the message's event_batches row landed.
      const batches = await query<{ kafka_offset: string }>(
        'SELECT kafka_offset FROM ktrail.event_batches ORDER BY kafka_offset',
      );
      expect(batches.map((b) => BigInt(b.kafka_offset))).toEqual(
        [0, 1, 2, 3, 4, 5, 6].map((i) => base + BigInt(i)),
      );

      // The dead_letters table: the rejected message, with its coordinates and the rows.
      const dead = await query<{
        source_topic: string;
        source_partition: number;
        source_offset: string;
        reason: string;
        error: string;
        raw: string;
        consumer_group: string;
      }>(
        'SELECT source_topic, source_partition, source_offset, reason, error, raw, consumer_group FROM ktrail.dead_letters',
      );
      expect(dead).toHaveLength(1);
      const row = dead[0] as (typeof dead)[number];
      expect(row.source_topic).toBe(names.events);
      expect(row.source_partition).toBe(0);
      expect(BigInt(row.source_offset)).toBe(badOffset);
      expect(row.reason).toBe('insert_rejected');
      expect(row.consumer_group).toBe(groupId);
      expect(row.error).toContain('cpu_sample');
      expect(row.error).toContain('time_is_set');
      const raw = Buffer.from(row.raw, 'base64').toString();
      const lines = raw.split('\n').filter((l) => l !== '');
      expect(lines).toHaveLength(10); // the message's ten rows, in the sink's row format
      expect(lines.every((l) => l.includes('broken-clock'))).toBe(true);

      // The dead-letter topic: the same message.
      const consumer = client.consumer({ groupId: `${groupId}-dlq-reader` });
      await consumer.connect();
      await consumer.subscribe({ topic: names.deadletter, fromBeginning: true });
      const got: Buffer[] = [];
      await consumer.run({
        eachMessage: async ({ message }) => void (message.value && got.push(message.value)),
      });
      await waitFor('the dead-letter topic message', () => (got.length > 0 ? true : undefined), 30_000);
      await consumer.disconnect();
      const dl = loadCatalog().current.DeadLetter.type.fromBuffer((got[0] as Buffer).subarray(10)) as {
        sourceTopic: string;
        sourcePartition: number;
        sourceOffset: bigint | number;
        reason: string;
        raw: Buffer;
      };
      expect(dl.sourceTopic).toBe(names.events);
      expect(dl.sourcePartition).toBe(0);
      expect(BigInt(dl.sourceOffset)).toBe(badOffset);
      expect(dl.reason).toBe('insert_rejected');
      expect(dl.raw.toString()).toBe(raw);

      const stats = processor.stats();
      expect(stats.deadLetters).toBe(1);
      expect(stats.rowsWritten).toBe(6 * 20 + 7 + 1); // good events, event_batches rows, the dead letter
    },
    180_000,
  );

  itReal(kafka.missing)(
    'a split interrupted part-way and redone (a crash) lands every good row once: the sub-insert tokens repeat',
    async () => {
      const sink = clickHouseSink(ch);
      const codec = createProcessorCodec();
      const node = new SyntheticNode({ node: 'redo-node', containers: 1 });
      const broken = new SyntheticNode({ node: 'redo-node', containers: 1 });
      // Eight messages at offsets 1000..1007 of partition 5; offset 1005 is rejected.
      const build = (): Row[] => {
        const rows: Row[] = [];
        for (let i = 0; i < 8; i++) {
          const decoded = codec.decodeEventBatch(messages[i] as Buffer);
          for (const row of buildMessageRows(decoded, 5, String(1000 + i), false).rows)
            rows.push(row.columns);
        }
        return rows;
      };
      const messages = [0, 1, 2, 3, 4, 5, 6, 7].map((i) =>
        i === 5 ? broken.next(3, BROKEN_BOOT_EPOCH_NS) : node.next(25),
      );
      const token = (first: bigint, last: bigint) => dedupToken('cpu_sample', 'redo', 5, first, last);
      const attempt = async (first: bigint, last: bigint, rows: Row[]) => {
        try {
          await sink.insert('cpu_sample', rows, token(first, last));
          return undefined;
        } catch (err) {
          if (err instanceof PoisonError) return err;
          throw err;
        }
      };
      const count = async () => {
        const [r] = await query<{ n: string; d: string }>(
          `SELECT count() AS n, uniqExact(ts_ns) AS d FROM ktrail.cpu_sample WHERE node = 'redo-node'`,
        );
        return { n: Number(r?.n), d: Number(r?.d) };
      };

      // First run: the whole batch is rejected; the split "crashes" after two sub-inserts landed.
      let rows = build();
      const rejection = await attempt(1000n, 1007n, rows);
      expect(rejection).toBeInstanceOf(PoisonError);
      let landed = 0;
      const crashing = async (first: bigint, last: bigint, part: Row[]) => {
        const err = await attempt(first, last, part);
        if (err === undefined && ++landed === 2) throw new Error('crash');
        return err;
      };
      await expect(
        splitRejected(rowsByMessage(rows) as MessageRows[], crashing, rejection as PoisonError),
      ).rejects.toThrow('crash');
      const partial = await count();
      expect(partial.n).toBeGreaterThan(0);
      expect(partial.n).toBeLessThan(7 * 25);

      // The rebuilt batch: same range, same rows; the whole insert fails again, the split redoes
      // every sub-insert, and the ones that had landed are dropped as repeats.
      rows = build();
      const again = await attempt(1000n, 1007n, rows);
      expect(again).toBeInstanceOf(PoisonError);
      const bad = await splitRejected(rowsByMessage(rows) as MessageRows[], attempt, again as PoisonError);
      expect(bad.map((b) => b.offset)).toEqual([1005n]);
      expect(await count()).toEqual({ n: 7 * 25, d: 7 * 25 });
    },
    120_000,
  );
});
