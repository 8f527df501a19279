// Plumbing for the alert-state integration tests: their own topics and group on the real
// broker, processors that keep alert state in the real chDB store, and a reader of the
// alerts topic to its end.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka, Producer } from 'kafkajs';
import {
  createTestTopics,
  kafkaClient,
  nodeProducer,
  processorTopics,
  testOptions,
} from '../../bench/processor/harness.js';
import type { TopicNames } from '../../common/kafka-topics.js';
import { clickHouseAlertStateStore } from '../../processor/src/alert-state.js';
import type { Alert } from '../../processor/src/alerts.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import {
  createProcessor,
  type Processor,
  type ProcessorHooks,
  type ProcessorOptions,
} from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface AlertPipeline {
  brokers: string[];
  client: Kafka;
  names: TopicNames;
  groupId: string;
  producer: Producer;
  /** A new member of the group (its own kafkajs client), started. */
  processor(name: string, hooks?: ProcessorHooks, over?: Partial<ProcessorOptions>): Promise<Processor>;
  /** Every events partition committed up to its end. */
  committedAll(): Promise<boolean>;
  until(what: string, check: () => Promise<boolean> | boolean, timeoutMs?: number): Promise<void>;
  /** The alerts topic from the start to its current end, decoded. */
  alerts(): Promise<Alert[]>;
  /** An output topic from the start to its current end, decoded. */
  read(kind: 'alerts' | 'enriched'): Promise<unknown[]>;
  close(): Promise<void>;
}

export async function alertPipeline(
  brokers: string[],
  ch: ClickHouseClient,
  tag: string,
  partitions: number,
): Promise<AlertPipeline> {
  const prefix = `${tag}-${Date.now().toString(36)}.`;
  const groupId = `${prefix}group`;
  const client = kafkaClient(brokers);
  const names = await createTestTopics(client, prefix, partitions);
  const producer = await nodeProducer(client);
  const started: Processor[] = [];
  const decode = createTopicDecoder();
  const admin = client.admin();
  await admin.connect();

  async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(250);
    }
  }

  async function read(kind: 'alerts' | 'enriched'): Promise<unknown[]> {
    const topic = kind === 'alerts' ? names.alerts : names.eventsEnriched;
    const ends = await admin.fetchTopicOffsets(topic);
    const wanted = new Map(ends.map((e) => [e.partition, BigInt(e.high)]));
    const out: unknown[] = [];
    if ([...wanted.values()].every((h) => h === 0n)) return out;
    const consumer = client.consumer({ groupId: `${groupId}-reader-${Date.now()}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      const next = new Map<number, bigint>();
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          next.set(partition, BigInt(message.offset) + 1n);
          if (message.value !== null) out.push(decode(kind, message.value));
        },
      });
      await until(`the ${kind} topic read to its end`, () =>
        [...wanted].every(([p, high]) => (next.get(p) ?? 0n) >= high),
      );
    } finally {
      await consumer.disconnect();
    }
    return out;
  }

  return {
    brokers,
    client,
    names,
    groupId,
    producer,
    async processor(name, hooks = {}, over = {}) {
      const p = createProcessor({
        kafka: kafkaClient(brokers, name),
        topics: processorTopics(names),
        sink: clickHouseSink(ch),
        codec: createProcessorCodec(),
        options: testOptions(groupId, {
          batchMaxMs: 300,
          lateMetadataWaitMs: 2_000,
          sessionTimeoutMs: 8_000,
          heartbeatIntervalMs: 1_000,
          alerts: { ...testOptions(groupId).alerts, crashLoopExits: 3, crashLoopWindowMs: 600_000 },
          ...over,
        }),
        hooks,
        alertState: clickHouseAlertStateStore(ch),
      });
      await p.start();
      started.push(p);
      return p;
    },
    async committedAll() {
      const ends = await admin.fetchTopicOffsets(names.events);
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      return ends.every(
        (e) => e.high === '0' || t?.partitions.find((p) => p.partition === e.partition)?.offset === e.high,
      );
    },
    until,
    alerts: () => read('alerts') as Promise<Alert[]>,
    read,
    async close() {
      for (const p of started) await p.stop().catch(() => undefined);
      await producer.disconnect();
      await admin.disconnect();
    },
  };
}
