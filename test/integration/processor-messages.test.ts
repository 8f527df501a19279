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
import {
  BOOT_EPOCH_NS,
  CONTAINER_CGROUP_BASE,
  containerId,
  containerRecord,
  encodeContainerRecord,
  poisonMessage,
  SyntheticNode,
} from '../../bench/processor/synthetic.js';
import type { TopicNames } from '../../common/kafka-topics.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { createProcessor, type Processor } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { loadCatalog } from '../../schemas/catalog.js';
import { createEncoder, createSchemaResolver } from '../../schemas/codec.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
import type { Alert, EnrichedBatch } from '../../schemas/types.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LATE_WAIT_MS = 1_500;

describe('processor messages', () => {
  let client: Kafka;
  let names: TopicNames;
  let ch: ClickHouseClient;
  let producer: Producer;
  let processor: Processor;
  let groupId: string;
  const resolver = createSchemaResolver();

  beforeAll(async () => {
    if (kafka.value === undefined) return;
    const prefix = `msgs-${Date.now().toString(36)}.`;
    groupId = `${prefix}group`;
    client = kafkaClient(kafka.value.brokers);
    names = await createTestTopics(client, prefix, 2);
    ch = await createProcessorStore('msgs');
    producer = await nodeProducer(client);
    processor = createProcessor({
      kafka: client,
      topics: processorTopics(names),
      sink: clickHouseSink(ch),
      codec: createProcessorCodec(resolver),
      options: testOptions(groupId, { batchMaxMs: 300, lateMetadataWaitMs: LATE_WAIT_MS }),
    });
    await processor.start();
  }, 120_000);

  afterAll(async () => {
    await processor?.stop();
    await producer?.disconnect();
    await ch?.close();
  });

  const query = <T>(sql: string): Promise<T[]> => queryRows<T>(ch, sql);

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(250);
    }
  }

  async function committedAll(): Promise<boolean> {
    const admin = client.admin();
    await admin.connect();
    try {
      const ends = await admin.fetchTopicOffsets(names.events);
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      return ends.every(
        (e) => e.high === '0' || t?.partitions.find((p) => p.partition === e.partition)?.offset === e.high,
      );
    } finally {
      await admin.disconnect();
    }
  }

  itReal(kafka.missing)(
    'a poison message goes to the dead-letter topic and table, and its partition keeps moving',
    async () => {
      const node = new SyntheticNode({ node: 'poison-node', containers: 1 });
      await producer.send({ topic: names.events, messages: [{ key: node.node, value: node.next(10) }] });
      await producer.send({ topic: names.events, messages: [{ key: node.node, value: poisonMessage() }] });
      await producer.send({ topic: names.events, messages: [{ key: node.node, value: node.next(10) }] });
      await until('rows after the poison', async () => {
        const [r] = await query<{ n: string }>(
          `SELECT count() AS n FROM ktrail.cpu_sample WHERE node = 'poison-node'`,
        );
        return Number(r?.n) === 20;
      });
      const dead = await query<{ reason: string; source_topic: string; raw: string }>(
        'SELECT reason, source_topic, raw FROM ktrail.dead_letters',
      );
      expect(dead).toHaveLength(1);
      expect(dead[0]?.reason).toBe('unknown_schema');
      expect(dead[0]?.source_topic).toBe(names.events);
      expect(Buffer.from(dead[0]?.raw ?? '', 'base64').equals(poisonMessage())).toBe(true);

      const consumer = client.consumer({ groupId: `${groupId}-dlq-reader` });
      await consumer.connect();
      await consumer.subscribe({ topic: names.deadletter, fromBeginning: true });
      const got: Buffer[] = [];
      await consumer.run({
        eachMessage: async ({ message }) => void (message.value && got.push(message.value)),
      });
      await until('the dead-letter topic message', async () => got.length > 0, 30_000);
      await consumer.disconnect();
      const dl = loadCatalog().current.DeadLetter.type.fromBuffer((got[0] as Buffer).subarray(10)) as {
        raw: Buffer;
      };
      expect(dl.raw.equals(poisonMessage())).toBe(true);
      await until('every offset committed past the poison', committedAll);
    },
    120_000,
  );

  itReal(kafka.missing)(
    'messages written with an older and a newer EventBatch schema both land',
    async () => {
      const current = loadCatalog().current.EventBatch.schema as Record<string, unknown> & {
        fields: Array<Record<string, unknown>>;
      };
      // Older: before bootEpochNs existed (the reader fills its default, null).
      const older = { ...current, fields: current.fields.filter((f) => f.name !== 'bootEpochNs') };
      // Newer: a field this reader does not know yet (the reader skips it).
      const newer = {
        ...current,
        fields: [...current.fields, { name: 'zone', type: 'string', default: '' }],
      };
      resolver.addSchemaId(9001, older);
      resolver.addSchemaId(9002, newer);
      const confluent = (id: number, schema: unknown, value: unknown): Buffer => {
        const header = Buffer.alloc(5);
        header.writeUInt32BE(id, 1);
        return Buffer.concat([header, compileSchema(schema).toBuffer(value)]);
      };
      const event = (ts: bigint) => ({
        kind: 'cpu_sample',
        tsNs: ts,
        cgroupId: CONTAINER_CGROUP_BASE,
        pid: 0,
        tgid: 0,
        flags: 0,
        cpuNs: 1n,
        switches: 1n,
        intervalNs: 1n,
      });
      const base = {
        node: 'schema-node',
        bootId: 'b',
        collectorVersion: 'x',
        producedAtNs: BOOT_EPOCH_NS + 5n,
      };
      await producer.send({
        topic: names.events,
        messages: [
          {
            key: 'schema-node',
            value: confluent(9001, older, { ...base, sequence: 1n, events: [event(1n), event(2n)] }),
          },
          {
            key: 'schema-node',
            value: confluent(9002, newer, {
              ...base,
              sequence: 2n,
              bootEpochNs: BOOT_EPOCH_NS,
              zone: 'eu-1',
              events: [event(3n)],
            }),
          },
        ],
      });
      await until('both schema versions in ClickHouse', async () => {
        const [r] = await query<{ n: string }>(
          `SELECT count() AS n FROM ktrail.cpu_sample WHERE node = 'schema-node'`,
        );
        return Number(r?.n) === 3;
      });
      const rows = await query<{ ts_ns: string; t: string }>(
        `SELECT ts_ns, toString(toUnixTimestamp64Nano(time)) AS t FROM ktrail.cpu_sample WHERE node = 'schema-node' ORDER BY ts_ns`,
      );
      // Older writer: no boot epoch, so the batch's produce time stands in for the wall clock.
      expect(rows.map((r) => [r.ts_ns, r.t])).toEqual([
        ['1', String(BOOT_EPOCH_NS + 5n)],
        ['2', String(BOOT_EPOCH_NS + 5n)],
        ['3', String(BOOT_EPOCH_NS + 3n)],
      ]);
    },
    120_000,
  );

  itReal(kafka.missing)(
    'late metadata: joined when it comes within the wait; after it, pending rows resolve in SQL; host cgroups are host',
    async () => {
      const early = new SyntheticNode({
        node: 'late-node',
        containers: 1,
        cgroupOverride: CONTAINER_CGROUP_BASE + 7n,
      });
      const tooLate = new SyntheticNode({
        node: 'late-node',
        containers: 1,
        cgroupOverride: CONTAINER_CGROUP_BASE + 8n,
      });
      const host = new SyntheticNode({ node: 'late-node', containers: 1, cgroupOverride: 1n });
      await producer.send({
        topic: names.events,
        messages: [
          { key: 'late-node', value: early.next(5) },
          { key: 'late-node', value: tooLate.next(5) },
          { key: 'late-node', value: host.next(5) },
        ],
      });
      // Container 7's record arrives within the wait; container 8's only after it.
      await sleep(LATE_WAIT_MS / 3);
      await producer.send({
        topic: names.containers,
        messages: [{ key: 'late-node/7', value: encodeContainerRecord(containerRecord('late-node', 7)) }],
      });
      await until('the late rows written', async () => {
        const [r] = await query<{ n: string }>(
          `SELECT count() AS n FROM ktrail.cpu_sample WHERE node = 'late-node'`,
        );
        return Number(r?.n) === 15;
      });
      const states = await query<{ cgroup_id: string; join_state: string; container_id: string }>(
        `SELECT DISTINCT cgroup_id, toString(join_state) AS join_state, container_id FROM ktrail.cpu_sample WHERE node = 'late-node' ORDER BY cgroup_id`,
      );
      expect(states).toEqual([
        { cgroup_id: '1', join_state: 'host', container_id: '' },
        {
          cgroup_id: String(CONTAINER_CGROUP_BASE + 7n),
          join_state: 'joined',
          container_id: containerId('late-node', 7),
        },
        { cgroup_id: String(CONTAINER_CGROUP_BASE + 8n), join_state: 'pending', container_id: '' },
      ]);
      expect(processor.stats().lateResolved).toBeGreaterThanOrEqual(5);

      await producer.send({
        topic: names.containers,
        messages: [{ key: 'late-node/8', value: encodeContainerRecord(containerRecord('late-node', 8)) }],
      });
      await until('SQL to resolve the pending rows', async () => {
        const [r] = await query<{ n: string }>(
          `SELECT count() AS n FROM ktrail.cpu_sample_resolved WHERE node = 'late-node' AND cgroup_id = ${CONTAINER_CGROUP_BASE + 8n} AND join_state = 'joined' AND container_id = '${containerId('late-node', 8)}'`,
        );
        return Number(r?.n) === 5;
      });
      // The raw rows stay as written; the view does the late join.
      const [raw] = await query<{ n: string }>(
        `SELECT count() AS n FROM ktrail.cpu_sample WHERE node = 'late-node' AND join_state = 'pending'`,
      );
      expect(Number(raw?.n)).toBe(5);
    },
    120_000,
  );

  itReal(kafka.missing)(
    'collector stats land in collector_stats exactly once; a poison stats message is a dead letter',
    async () => {
      const stats = {
        node: 'stats-node',
        bootId: 'b1',
        collectorVersion: 'test',
        firstSequence: 1n,
        lastSequence: 9n,
        intervalStartNs: BOOT_EPOCH_NS,
        intervalEndNs: BOOT_EPOCH_NS + 10_000_000_000n,
        eventsByKind: { cpu_sample: 12_345n },
        kernelDropsByProgram: { process: 2n },
        bufferDropsByReason: {},
        malformedRecords: 0n,
        eventsDelivered: 12_345n,
        bytesSent: 99_999n,
        oldestUnsentAgeMs: 5n,
        cpuNs: 40_000_000n,
        rssBytes: 123_456_789n,
        programRunTimeNs: { kt_proc_exec: 7_000n },
        programRunCount: { kt_proc_exec: 3n },
      };
      await producer.send({
        topic: names.stats,
        messages: [
          { key: 'stats-node', value: createEncoder('CollectorStats').encode(stats as never) },
          { key: 'stats-node', value: poisonMessage() },
        ],
      });
      await until('the stats row and its dead letter', async () => {
        const [r] = await query<{ s: string; d: string }>(
          `SELECT (SELECT count() FROM ktrail.collector_stats WHERE node = 'stats-node') AS s,
                  (SELECT count() FROM ktrail.dead_letters WHERE source_topic = '${names.stats}') AS d`,
        );
        return Number(r?.s) === 1 && Number(r?.d) === 1;
      });
      const [row] = await query<{ e: string; k: string; b: string; c: string; r: string; p: string }>(
        `SELECT events_by_kind['cpu_sample'] AS e, kernel_drops_by_program['process'] AS k, bytes_sent AS b,
                cpu_ns AS c, rss_bytes AS r, program_run_time_ns['kt_proc_exec'] AS p
         FROM ktrail.collector_stats WHERE node = 'stats-node'`,
      );
      expect(row).toEqual({ e: '12345', k: '2', b: '99999', c: '40000000', r: '123456789', p: '7000' });
    },
    120_000,
  );

  itReal(kafka.missing)(
    'enriched events and a crash-loop alert reach their topics',
    async () => {
      await producer.send({
        topic: names.containers,
        messages: [{ key: 'alert-node/0', value: encodeContainerRecord(containerRecord('alert-node', 0)) }],
      });
      // Three non-zero exits of one container (the rule's default N in testOptions is 3).
      const crashing = new SyntheticNode({ node: 'alert-node', containers: 1, exitShare: 1, exitCode: 1 });
      await producer.send({
        topic: names.events,
        messages: [{ key: 'alert-node', value: crashing.next(3) }],
      });

      const decode = createTopicDecoder();
      const enriched: EnrichedBatch[] = [];
      const alerts: Alert[] = [];
      const consumer = client.consumer({ groupId: `${groupId}-outputs-reader` });
      await consumer.connect();
      await consumer.subscribe({ topics: [names.eventsEnriched, names.alerts], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ topic, message }) => {
          if (message.value === null) return;
          if (topic === names.alerts) alerts.push(decode('alerts', message.value));
          else enriched.push(decode('enriched', message.value));
        },
      });
      await until(
        'the crash-loop alert',
        async () => alerts.some((a) => a.kind === 'crash_loop' && a.node === 'alert-node'),
        60_000,
      );
      await until(
        'enriched events of the node',
        async () => enriched.some((b) => b.node === 'alert-node'),
        30_000,
      );
      await consumer.disconnect();

      const alert = alerts.find((a) => a.kind === 'crash_loop');
      expect(alert?.container).toBe(containerId('alert-node', 0));
      expect(alert?.namespace).toBe('prod');
      expect(alert?.details.exits).toBe('3');
      const batches = enriched.filter((b) => b.node === 'alert-node');
      const events = batches.flatMap((b) =>
        b.events.map((e) => ({ ...e, container: b.containers[e.container] })),
      );
      expect(events).toHaveLength(3);
      expect(processor.stats().enrichedEvents).toBeGreaterThanOrEqual(3);
      for (const e of events) {
        expect(e.joinState).toBe('joined');
        expect(e.container).toMatchObject({
          containerId: containerId('alert-node', 0),
          containerName: 'app-0',
        });
        // The kernel event itself, typed as the collector sent it.
        expect(e.event.kind).toBe('proc_exit');
        expect(e.event.kind === 'proc_exit' && e.event.exitCode).toBe(1);
        expect(typeof e.event.cgroupId).toBe('bigint');
      }
    },
    120_000,
  );
});
