// The schema registry down, at start and mid-run, with the real registry (Apicurio, file
// storage: a restart keeps every schema and id), the real broker and chDB. Nothing is lost:
//  - a collector starting while the registry is down keeps capturing and holds its messages
//    (counted, none dropped within the buffer, no Kafka error counted); once the registry is
//    back, everything goes out with the registered ids;
//  - a processor starting while it is down decodes nothing and dead-letters nothing (the
//    outage is counted); once it is back every event lands;
//  - mid-run, the registry hangs (SIGSTOP) while one partition brings a schema id not seen
//    yet: that partition waits, the other keeps going, and once the registry answers
//    (SIGCONT) the held events land too.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { createTestTopics, kafkaClient, testOptions } from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';
import { buildCollector } from '../../collector/src/build.js';
import { validateConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { createLogger } from '../../common/log.js';
import { processorCodecFor } from '../../processor/src/codec.js';
import { createProcessor, processorTopics } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { compileSchema } from '../../schemas/avro-types.js';
import {
  catalog,
  confluentHeader,
  createSchemaResolver,
  SINGLE_OBJECT_HEADER_BYTES,
} from '../../schemas/codec.js';
import { createSchemaRegistration, valueSubject } from '../../schemas/registration.js';
import { createSchemaRegistryClient } from '../../schemas/registry-client.js';
import { createProcessorStore, queryRows } from '../support/clickhouse.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { endRegistryRun, type RegistryInstance, startRegistry } from '../support/registry.js';
import { waitFor } from '../support/wait.js';

const kafka = endpointOrReason(inject('kafka'));
const installed = endpointOrReason(inject('registry'));
const missing = kafka.missing ?? installed.missing;
const it = itReal(missing);
const log = createLogger('test.schema-registry-outage');
const work = mkdtempSync(join(tmpdir(), 'ktrail-registry-outage-'));
const prefixes: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let registry: RegistryInstance;
let store: ClickHouseClient;

beforeAll(async () => {
  if (missing !== undefined) return;
  registry = await startRegistry({ storage: 'file' });
  store = await createProcessorStore('registry-outage');
}, 300_000);

afterAll(() => endRegistryRun({ store, registry, kafka: kafka.value, prefixes, work }));

const brokers = (): string[] => kafka.value?.brokers as string[];
const prefix = (tag: string): string => {
  const p = `sro-${tag}-${Date.now().toString(36)}.`;
  prefixes.push(p);
  return p;
};

async function rowsOf(node: string): Promise<number> {
  const [r] = await queryRows<{ n: string }>(
    store,
    `SELECT (SELECT count() FROM ktrail.cpu_sample WHERE node = '${node}') + (SELECT count() FROM ktrail.proc_exit WHERE node = '${node}') AS n`,
  );
  return Number(r?.n);
}

async function metric(metrics: Registry, name: string): Promise<number> {
  const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === name);
  return Number(m?.values[0]?.value);
}

describe('schema registry outages', () => {
  it('collector: registry down at start -> capture goes on, messages held; registry back -> all delivered', async () => {
    const capture = join(work, 'stream.ktcap');
    const events = (await writeSyntheticCapture(capture, { records: 2_000, perBatch: 100 })).valid;
    await registry.stop();
    const config = validateConfig({
      node: 'node-down-at-start',
      http: { port: 0 },
      kafka: {
        brokers: brokers(),
        topicPrefix: prefix('collector'),
        partitions: 2,
        schemaRegistryUrl: registry.url,
      },
      collector: {
        source: 'replay',
        replayFile: capture,
        batchMaxEvents: 200,
        batchMaxMs: 50,
        statsIntervalMs: 60_000,
      },
    });
    const metrics = new Registry();
    const built = await buildCollector({ config, registry: metrics });
    await built.start();
    await built.collector.sourceDone;
    await sleep(2_000);
    expect(built.collector.snapshot()).toMatchObject({
      captured: events,
      delivered: 0,
      pending: events,
      droppedTotal: 0,
      kafkaErrors: 0,
    });
    expect(await metric(metrics, 'ktrail_collector_schema_registry_ready')).toBe(0);
    expect(await metric(metrics, 'ktrail_collector_schema_registry_held_sends_total')).toBeGreaterThan(0);

    await registry.start();
    await waitFor(
      'delivery after the registry is back',
      () => (built.collector.snapshot().delivered === events ? true : undefined),
      90_000,
      200,
    );
    const final = await built.stop();
    expect(final).toMatchObject({ captured: events, delivered: events, droppedTotal: 0, pending: 0 });
    const subject = valueSubject(built.topics.events);
    const res = await fetch(`${registry.url}/subjects/${subject}/versions/latest`);
    const { id } = (await res.json()) as { id: number };
    const messages = await readTopic(brokers(), built.topics.events);
    expect(messages.every((m) => m.value.subarray(0, 5).equals(confluentHeader(id)))).toBe(true);
  }, 240_000);

  it('processor: down at start, then hung mid-run with a new id -> no dead letter, other partitions go on, nothing lost', async () => {
    const p = prefix('processor');
    const names = await createTestTopics(kafkaClient(brokers()), p, 2);
    const config = validateConfig({
      node: 'processor-under-test',
      kafka: { brokers: brokers(), topicPrefix: p, partitions: 2, schemaRegistryUrl: registry.url },
    });
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
    const idA = registration.idOf(subject) as number;

    // Events framed as a collector does, on partition 0 (node-a) and 1 (node-b).
    const nodes = [
      new SyntheticNode({ node: 'node-a', containers: 2 }),
      new SyntheticNode({ node: 'node-b', containers: 2 }),
    ];
    const producer = kafkaClient(brokers()).producer();
    await producer.connect();
    const send = (partition: 0 | 1, value: Buffer) =>
      producer.send({
        topic: names.events,
        messages: [{ key: nodes[partition]?.node ?? '', value, partition }],
      });
    const framed = (partition: 0 | 1, id: number) =>
      Buffer.concat([
        confluentHeader(id),
        (nodes[partition] as SyntheticNode).next(100).subarray(SINGLE_OBJECT_HEADER_BYTES),
      ]);
    for (let i = 0; i < 5; i++) {
      await send(0, framed(0, idA));
      await send(1, framed(1, idA));
    }

    await registry.stop();
    const processor = createProcessor({
      kafka: createKafka(kafkaClientOptions(config.kafka, 'processor'), log),
      topics: processorTopics(names),
      sink: clickHouseSink(store),
      codec: processorCodecFor(config.kafka),
      options: testOptions(`${p}group`, { batchMaxMs: 300, lateMetadataWaitMs: 0, retryMaxMs: 2_000 }),
    });
    await processor.start();
    try {
      await waitFor(
        'the outage noticed',
        () => (processor.stats().schemaRegistryOutages === 1 ? true : undefined),
        60_000,
        100,
      );
      await sleep(3_000);
      expect(await rowsOf('node-a')).toBe(0);
      expect(await rowsOf('node-b')).toBe(0);
      expect(processor.stats()).toMatchObject({ deadLetters: 0, messages: 0 });
      expect(processor.stats().schemaRegistryHeldBatches).toBeGreaterThan(0);

      await registry.start();
      await waitFor(
        'every event after the registry is back',
        async () => ((await rowsOf('node-a')) === 500 && (await rowsOf('node-b')) === 500 ? true : undefined),
        90_000,
        200,
      );

      // Mid-run: a newer writer's id on partition 0 while the registry hangs.
      const newer = {
        ...current,
        fields: [...current.fields, { name: 'region', type: ['null', 'string'], default: null }],
      };
      const idB = await client.register(subject, newer);
      const resolver = createSchemaResolver();
      const batch = resolver.decodeAs('EventBatch', (nodes[0] as SyntheticNode).next(100));
      const newerMessage = Buffer.concat([
        confluentHeader(idB),
        compileSchema(newer).toBuffer({ ...batch, region: 'eu-1' }),
      ]);
      registry.freeze();
      try {
        await send(0, newerMessage);
        await send(1, framed(1, idA));
        await waitFor(
          'partition 1 goes on',
          async () => ((await rowsOf('node-b')) === 600 ? true : undefined),
          60_000,
          200,
        );
        await waitFor(
          'the hang noticed',
          () => (processor.stats().schemaRegistryOutages === 2 ? true : undefined),
          60_000,
          100,
        );
        expect(await rowsOf('node-a')).toBe(500);
      } finally {
        registry.thaw();
      }
      await waitFor(
        'partition 0 after the registry answers',
        async () => ((await rowsOf('node-a')) === 600 ? true : undefined),
        90_000,
        200,
      );
    } finally {
      await processor.stop();
      await producer.disconnect();
    }
    expect(processor.stats()).toMatchObject({ deadLetters: 0, schemaRegistryOutages: 2 });
    expect(await rowsOf('node-a')).toBe(600);
    expect(await rowsOf('node-b')).toBe(600);
  }, 300_000);
});
