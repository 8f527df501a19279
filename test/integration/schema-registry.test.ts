// The Confluent wire format through a real schema registry (Apicurio Registry's Confluent API,
// deploy/local/registry.sh), the real broker and chDB: the collector registers its schemas
// under `<topic>-value` with BACKWARD compatibility and frames every message with the
// registry's ids; the processor looks ids up (once each), decodes, writes every event to
// ClickHouse, and registers and frames its own outputs (enriched, alerts, dead letters) the
// same way; an id the registry does not know is a dead letter that says so. Readers that
// know nothing of ktrail decode the topics through the registry: ClickHouse's AvroConfluent
// format (chDB) and Apache Avro for Java. A newer writer schema is resolved to the
// processor's reader schema; one the subject's compatibility forbids is refused.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { createTestTopics, kafkaClient, testOptions } from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';
import { buildCollector } from '../../collector/src/build.js';
import { type KtrailConfig, validateConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import { processorCodecFor } from '../../processor/src/codec.js';
import { createProcessor, type Processor, processorTopics } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { catalog, confluentHeader, createSchemaResolver } from '../../schemas/codec.js';
import { createSchemaRegistration, valueSubject } from '../../schemas/registration.js';
import { createSchemaRegistryClient, RegistryRefusedError } from '../../schemas/registry-client.js';
import { createRegistryTopicDecoder } from '../../schemas/topic-decoder.js';
import type { EventBatch } from '../../schemas/types.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { endRegistryRun, type RegistryInstance, startRegistry } from '../support/registry.js';
import { waitFor } from '../support/wait.js';

const kafka = endpointOrReason(inject('kafka'));
const installed = endpointOrReason(inject('registry'));
const missing = kafka.missing ?? installed.missing;
const it = itReal(missing);
const log = createLogger('test.schema-registry');
const work = mkdtempSync(join(tmpdir(), 'ktrail-registry-'));
const ROOT = new URL('../../', import.meta.url).pathname;
const KINDS = ['tcp_close', 'tcp_connect', 'tcp_accept', 'proc_fork', 'proc_exit', 'proc_exec', 'tcp_reset'];
const MORE_KINDS = ['cgroup_mkdir', 'cgroup_rmdir', 'oom_kill', 'cpu_sample'];
const prefixes: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let registry: RegistryInstance;
let store: ClickHouseClient;
let capture: string;
let events: number;

beforeAll(async () => {
  if (missing !== undefined) return;
  registry = await startRegistry();
  capture = join(work, 'stream.ktcap');
  events = (await writeSyntheticCapture(capture, { records: 3_000, perBatch: 100 })).valid;
  store = await createProcessorStore('registry');
}, 300_000);

afterAll(() => endRegistryRun({ store, registry, kafka: kafka.value, prefixes, work }));

const brokers = (): string[] => kafka.value?.brokers as string[];

function configFor(tag: string): KtrailConfig {
  const prefix = `sr-${tag}-${Date.now().toString(36)}.`;
  prefixes.push(prefix);
  return validateConfig({
    node: `node-${tag}`,
    http: { port: 0 },
    kafka: { brokers: brokers(), topicPrefix: prefix, partitions: 2, schemaRegistryUrl: registry.url },
    collector: {
      source: 'replay',
      replayFile: capture,
      batchMaxEvents: 200,
      batchMaxMs: 50,
      statsIntervalMs: 60_000,
    },
  });
}

/** GET (or another method) on the registry's Confluent API. */
async function ccompat<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${registry.url}${path}`, {
    ...init,
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
  });
  return (await res.json()) as T;
}

const latestId = async (subject: string): Promise<number> =>
  (await ccompat<{ id: number }>(`/subjects/${subject}/versions/latest`)).id;

async function rowsOf(node: string): Promise<number> {
  const sum = [...KINDS, ...MORE_KINDS]
    .map((t) => `(SELECT count() FROM ktrail.${t} WHERE node = '${node}')`)
    .join(' + ');
  const [r] = await queryRows<{ n: string }>(store, `SELECT ${sum} AS n`);
  return Number(r?.n);
}

function startProcessor(config: KtrailConfig): Processor {
  return createProcessor({
    kafka: createKafka(kafkaClientOptions(config.kafka, 'processor'), log),
    topics: processorTopics(topicNames(config.kafka.topicPrefix)),
    sink: clickHouseSink(store),
    codec: processorCodecFor(config.kafka),
    options: testOptions(`${config.kafka.topicPrefix}group`, { batchMaxMs: 300, lateMetadataWaitMs: 300 }),
  });
}

/** One message value per file, for readers that take files. */
function files(tag: string, values: Buffer[]): string[] {
  return values.map((v, i) => {
    const path = join(work, `${tag}-${i}.bin`);
    writeFileSync(path, v);
    return path;
  });
}

/** ClickHouse's own AvroConfluent reader (chDB), schemas fetched from the registry by id. */
async function clickhouseReads(tag: string, values: Buffer[]): Promise<Record<string, unknown>[]> {
  const path = join(work, `${tag}.avro`);
  writeFileSync(path, Buffer.concat(values)); // the format reads messages back to back
  return queryRows(
    store,
    `SELECT * FROM file('${path}', 'AvroConfluent') SETTINGS format_avro_schema_registry_url = '${registry.url}'`,
  );
}

/** Apache Avro for Java, schemas fetched from the registry by id (schemas/interop/RegistryReader.java). */
async function javaReads(
  tag: string,
  values: Buffer[],
): Promise<{ schemaId: number; schema: string; record: string }[]> {
  const { stdout } = await promisify(execFile)(
    'java',
    [
      '-cp',
      `${ROOT}.cache/avro-java/*`,
      `${ROOT}schemas/interop/RegistryReader.java`,
      registry.url,
      ...files(tag, values),
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

describe('schema registry mode (Confluent wire format) end to end', () => {
  it('collector and processor through the registry; outputs registered; foreign readers decode every topic', async () => {
    const config = configFor('e2e');
    const names = topicNames(config.kafka.topicPrefix);
    const node = config.node;
    const built = await buildCollector({
      config,
      containerFeed: {
        start: (onRecord) =>
          onRecord({
            node,
            cgroupId: 4242n,
            cgroupPath: '/docker/abc',
            runtime: 'docker',
            containerId: 'abc',
            name: 'web',
            image: 'busybox:latest',
            labels: { app: 'web' },
            updatedAtNs: 1n,
            state: 'RUNNING',
          }),
        stop: () => {},
      },
    });
    await built.start();
    await built.collector.sourceDone;
    const final = await built.stop();
    expect(final).toMatchObject({ captured: events, delivered: events, droppedTotal: 0, pending: 0 });

    // Subjects by topic, each at BACKWARD; every message names its subject's id.
    const ids: Record<string, number> = {};
    for (const topic of [names.events, names.containers, names.stats]) {
      const subject = valueSubject(topic);
      expect(await ccompat(`/config/${subject}`)).toEqual({ compatibilityLevel: 'BACKWARD' });
      ids[topic] = await latestId(subject);
    }
    const eventMessages = await readTopic(brokers(), names.events);
    const containerMessages = await readTopic(brokers(), names.containers);
    const statsMessages = await readTopic(brokers(), names.stats);
    for (const [topic, messages] of [
      [names.events, eventMessages],
      [names.containers, containerMessages],
      [names.stats, statsMessages],
    ] as const) {
      expect(messages.length).toBeGreaterThan(0);
      for (const m of messages) expect(m.value.subarray(0, 5)).toEqual(confluentHeader(ids[topic] as number));
    }

    // The processor: every event in ClickHouse; an id the registry does not have is a dead letter.
    const processor = startProcessor(config);
    await processor.start();
    try {
      await waitFor(
        'every event in ClickHouse',
        async () => ((await rowsOf(node)) >= events ? true : undefined),
        90_000,
      );
      const producer = kafkaClient(brokers()).producer();
      await producer.connect();
      const body = eventMessages[0]?.value.subarray(5) as Buffer;
      await producer.send({
        topic: names.events,
        messages: [{ key: node, value: Buffer.concat([confluentHeader(2_000_000_000), body]) }],
      });
      await producer.disconnect();
      await waitFor(
        'the dead letter',
        () => (processor.stats().deadLetters === 1 ? true : undefined),
        30_000,
      );
      await waitFor(
        'the dead letter row',
        async () =>
          (
            await queryRows<{ n: string }>(
              store,
              `SELECT count() AS n FROM ktrail.dead_letters WHERE source_topic = '${names.events}'`,
            )
          )[0]?.n === '1'
            ? true
            : undefined,
        30_000,
      );
    } finally {
      await processor.stop();
    }
    expect(await rowsOf(node)).toBe(events);
    const [dl] = await queryRows<{ reason: string; error: string }>(
      store,
      `SELECT reason, error FROM ktrail.dead_letters WHERE source_topic = '${names.events}'`,
    );
    expect(dl?.reason).toBe('unknown_schema');
    expect(dl?.error).toContain('schema id 2000000000 is not in the schema registry');
    const stats = processor.stats();
    expect(stats).toMatchObject({ deadLetters: 1, schemaRegistryOutages: 0, schemaRegistryHeldBatches: 0 });

    // The processor's outputs: registered under their topics, framed with those ids.
    const decode = createRegistryTopicDecoder(createSchemaRegistryClient({ url: registry.url }));
    const outputs = {
      enriched: names.eventsEnriched,
      alerts: names.alerts,
      deadletter: names.deadletter,
    } as const;
    const outputMessages: Record<string, Buffer[]> = {};
    for (const [kind, topic] of Object.entries(outputs)) {
      const subject = valueSubject(topic);
      expect(await ccompat(`/config/${subject}`)).toEqual({ compatibilityLevel: 'BACKWARD' });
      const id = await latestId(subject);
      const messages = (await readTopic(brokers(), topic)).map((m) => m.value);
      expect(messages.length, `${kind} messages`).toBeGreaterThan(0);
      for (const m of messages) expect(m.subarray(0, 5)).toEqual(confluentHeader(id));
      outputMessages[kind] = messages;
    }
    let enrichedEvents = 0;
    for (const m of outputMessages.enriched ?? [])
      enrichedEvents += ((await decode('enriched', m)) as { events: unknown[] }).events.length;
    expect(enrichedEvents).toBe(stats.enrichedEvents);
    // `./ktrail tail` with the registry setting reads the same.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'deploy/local/tail.ts', 'enriched', '--from-beginning', '--max', '1'],
      {
        cwd: ROOT,
        timeout: 90_000,
        maxBuffer: 64 * 1024 * 1024,
        env: {
          ...process.env,
          KTRAIL_KAFKA_BROKERS: brokers().join(','),
          KTRAIL_KAFKA_TOPIC_PREFIX: config.kafka.topicPrefix,
          KTRAIL_KAFKA_SCHEMA_REGISTRY_URL: registry.url,
        },
      },
    );
    const tailed = JSON.parse(stdout.trim().split('\n')[0] ?? '{}') as {
      value?: { node?: string; events?: unknown[] };
    };
    expect(tailed.value?.node).toBe(node);
    expect(tailed.value?.events?.length).toBeGreaterThan(0);
    const alert = (await decode('alerts', outputMessages.alerts?.[0] as Buffer)) as { kind: string };
    expect(alert.kind).toBe('oom_kill');
    const dead = (await decode('deadletter', outputMessages.deadletter?.[0] as Buffer)) as { reason: string };
    expect(dead.reason).toBe('unknown_schema');

    // ClickHouse reads what it can map: records, maps, enums, nullable fields.
    const chContainers = await clickhouseReads(
      'containers',
      containerMessages.map((m) => m.value),
    );
    expect(chContainers).toMatchObject([{ node, name: 'web', labels: { app: 'web' }, state: 'RUNNING' }]);
    const chStats = await clickhouseReads(
      'stats',
      statsMessages.map((m) => m.value),
    );
    expect(chStats.reduce((s, r) => s + Number(r.eventsDelivered), 0)).toBe(events);
    const chAlerts = await clickhouseReads('alerts', outputMessages.alerts ?? []);
    expect(chAlerts.length).toBe(outputMessages.alerts?.length);
    expect(chAlerts.every((a) => a.kind === 'oom_kill' && a.node === node)).toBe(true);
    const chDead = await clickhouseReads('deadletter', outputMessages.deadletter ?? []);
    expect(chDead).toMatchObject([{ sourceTopic: names.events, reason: 'unknown_schema' }]);
    // The event union's records with identical shapes are one Variant type in ClickHouse, which
    // refuses the union (docs/schemas.md): Java reads EventBatch and EnrichedBatch instead.
    const ours = createSchemaResolver({ registry: createSchemaRegistryClient({ url: registry.url }) });
    const firstBatches = eventMessages.slice(0, 3).map((m) => m.value);
    const java = await javaReads('events', [...firstBatches, ...(outputMessages.enriched ?? []).slice(0, 2)]);
    expect(java.map((j) => j.schema)).toEqual([
      ...firstBatches.map(() => 'io.ktrail.v1.EventBatch'),
      ...(outputMessages.enriched ?? []).slice(0, 2).map(() => 'io.ktrail.v1.EnrichedBatch'),
    ]);
    for (const [i, value] of firstBatches.entries()) {
      await ours.prepare([value]);
      const batch = ours.decodeAs('EventBatch', value) as EventBatch;
      const record = java[i]?.record ?? '';
      expect(record).toContain(`"node": "${node}"`);
      expect(record).toContain(`"sequence": ${batch.sequence}`);
      expect(record.match(/"tsNs": /g)?.length).toBe(batch.events.length);
    }
  }, 240_000);

  it('a newer writer schema is resolved to the reader; one the subject forbids is refused', async () => {
    const config = configFor('evolve');
    const names = topicNames(config.kafka.topicPrefix);
    const client = createSchemaRegistryClient({ url: registry.url });
    const subject = valueSubject(names.events);
    const current = catalog().current.EventBatch.schema as { fields: object[] };
    const registration = createSchemaRegistration({
      client,
      subjects: [{ subject, schema: current }],
      compatibility: 'BACKWARD',
      log,
    });
    await registration.attempt();
    // A newer collector: one more envelope field, with a default (BACKWARD allows it).
    const newer = {
      ...current,
      fields: [...current.fields, { name: 'region', type: ['null', 'string'], default: null }],
    };
    const newerId = await client.register(subject, newer);
    expect(newerId).not.toBe(registration.idOf(subject));
    // A field without a default can't read the older data: the registry refuses it.
    const breaking = { ...current, fields: [...current.fields, { name: 'rack', type: 'string' }] };
    const refused = await client.register(subject, breaking).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(refused).toBeInstanceOf(RegistryRefusedError);
    expect(refused?.message).toMatch(/409.*Incompatible/);

    await createTestTopics(kafkaClient(brokers()), config.kafka.topicPrefix, 2);
    const synthetic = new SyntheticNode({ node: 'node-evolve', containers: 2 });
    const resolver = createSchemaResolver();
    const newerType = compileSchema(newer);
    const producer = kafkaClient(brokers()).producer();
    await producer.connect();
    for (let i = 0; i < 5; i++) {
      const value = resolver.decodeAs('EventBatch', synthetic.next(100));
      await producer.send({
        topic: names.events,
        messages: [
          {
            key: 'node-evolve',
            value: Buffer.concat([
              confluentHeader(newerId),
              newerType.toBuffer({ ...value, region: 'eu-1' }),
            ]),
          },
        ],
      });
    }
    await producer.disconnect();
    const processor = startProcessor(config);
    await processor.start();
    try {
      await waitFor(
        "the newer writer's events",
        async () => ((await rowsOf('node-evolve')) >= 500 ? true : undefined),
        60_000,
      );
    } finally {
      await processor.stop();
    }
    expect(await rowsOf('node-evolve')).toBe(500);
    expect(processor.stats().deadLetters).toBe(0);
  }, 180_000);

  it('a collector whose schema the subject forbids sends nothing and holds its messages, counted', async () => {
    const config = configFor('refused');
    const names = topicNames(config.kafka.topicPrefix);
    // An older EventBatch without `collectorVersion` (no default): the current one can't
    // read what it wrote, so BACKWARD refuses the collector's schema.
    const current = catalog().current.EventBatch.schema as { fields: { name: string }[] };
    const older = { ...current, fields: current.fields.filter((f) => f.name !== 'collectorVersion') };
    await createSchemaRegistryClient({ url: registry.url }).register(valueSubject(names.events), older);
    const metrics = new Registry();
    const built = await buildCollector({
      config: { ...config, collector: { ...config.collector, shutdownDeadlineMs: 1_000 } },
      registry: metrics,
    });
    await built.start();
    await built.collector.sourceDone;
    await sleep(1_000);
    expect(built.collector.snapshot()).toMatchObject({
      captured: events,
      delivered: 0,
      pending: events,
      kafkaErrors: 0,
    });
    const ready = (await metrics.getMetricsAsJSON()).find(
      (m) => m.name === 'ktrail_collector_schema_registry_ready',
    );
    expect(ready?.values[0]?.value).toBe(0);
    const final = await built.stop();
    // Nothing reached Kafka; what could not be sent is counted, not lost silently.
    expect(final.delivered).toBe(0);
    expect(final.captured).toBe(final.delivered + final.droppedTotal + final.pending);
    expect(final.unaccounted).toBe(0);
    expect(await readTopic(brokers(), names.events)).toEqual([]);
    expect(await ccompat(`/config/${valueSubject(names.events)}`)).toEqual({
      compatibilityLevel: 'BACKWARD',
    });
  }, 120_000);
});
