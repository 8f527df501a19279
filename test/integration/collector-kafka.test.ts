// The collector against the real broker: a synthetic capture (malformed records mixed in) is
// replayed through the whole pipeline — decode, batch, Avro, bounded queue, Kafka — and read
// back: every valid event arrives intact and in order, sequence numbers are contiguous,
// malformed records are counted and never fatal, container records land on the same
// partition as the node's events, and the stats topic tells the same story as the counters.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { buildCollector } from '../../collector/src/build.js';
import type { ContainerFeed } from '../../collector/src/collector.js';
import type { ContainerRecord } from '../../collector/src/containers/types.js';
import { openCaptureReader } from '../../collector/src/kernel/capture.js';
import { createDecoder } from '../../collector/src/kernel/decode.js';
import { createKernelEventStage } from '../../collector/src/kernel-events.js';
import { validateConfig } from '../../common/config.js';
import { createKafka } from '../../common/kafka.js';
import { ensureTopics, topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { CollectorStats, EventBatch, KtrailEvent } from '../../schemas/types.js';
import { deleteTopics } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const dir = mkdtempSync(join(tmpdir(), 'ktrail-collector-kafka-'));
const prefixes: string[] = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (kafka.value)
    await deleteTopics(
      kafka.value,
      prefixes.flatMap((p) => Object.values(topicNames(p))),
    );
});

function prefix(): string {
  const p = `ct-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}.`;
  prefixes.push(p);
  return p;
}

describe('collector -> real Kafka', () => {
  itReal(kafka.missing)(
    'replayed events arrive intact, in order, with contiguous sequences; malformed records are counted',
    async () => {
      const brokers = kafka.value?.brokers as string[];
      const file = join(dir, 'mixed.ktcap');
      // Every 97th record has an unknown type: the decoder must skip it and go on.
      const written = await writeSyntheticCapture(file, {
        records: 20_000,
        perBatch: 400,
        malformedEvery: 97,
        seed: 42,
      });
      const malformed = written.records - written.valid;
      expect(malformed).toBeGreaterThan(100);

      const config = validateConfig({
        node: 'node-it-1',
        http: { port: 0 },
        kafka: { brokers, topicPrefix: prefix(), partitions: 3 },
        collector: {
          source: 'replay',
          replayFile: file,
          batchMaxEvents: 1_000,
          batchMaxMs: 50,
          statsIntervalMs: 60_000,
        },
      });

      // One container record through the same pipeline, to check co-partitioning.
      const container: ContainerRecord = {
        node: 'node-it-1',
        cgroupId: 123_456_789n,
        cgroupPath: '/docker/abc',
        runtime: 'docker',
        containerId: 'abc',
        name: 'web',
        image: 'busybox:latest',
        labels: { app: 'web' },
        updatedAtNs: 1n,
        state: 'RUNNING',
      };
      const containerFeed: ContainerFeed<ContainerRecord> = {
        start: (onRecord) => onRecord(container),
        stop: () => {},
      };

      const built = await buildCollector({ config, containerFeed });
      await built.start();
      await built.collector.sourceDone;
      const final = await built.stop();

      // The counters balance and say exactly what happened.
      expect(final.unaccounted).toBe(0);
      expect(final.captured).toBe(written.records);
      expect(final.malformedRecords).toBe(malformed);
      expect(final.dropped.malformed_record).toBe(malformed);
      expect(final.delivered).toBe(written.valid);
      expect(final.droppedTotal).toBe(malformed);
      expect(final.pending).toBe(0);

      // What Kafka holds: the same events the decoder reads from the file, in the same order.
      const expected: KtrailEvent[] = [];
      const decoder = createDecoder();
      const stage = createKernelEventStage();
      for await (const batch of openCaptureReader(file).batches())
        expected.push(...stage(decoder.decode(batch.buf, batch.records)).events);
      expect(expected.length).toBe(written.valid);

      const resolver = createSchemaResolver();
      const messages = await readTopic(brokers, built.topics.events);
      const batches = messages.map((m) => resolver.decodeAs('EventBatch', m.value) as EventBatch);
      expect(new Set(messages.map((m) => m.key))).toEqual(new Set(['node-it-1']));
      expect(new Set(messages.map((m) => m.partition)).size).toBe(1);
      expect(batches.map((b) => b.sequence)).toEqual(batches.map((_, i) => BigInt(i)));
      expect(
        batches.every((b) => b.node === 'node-it-1' && b.bootId === '00000000-0000-4000-8000-000000000001'),
      ).toBe(true);
      expect(batches.every((b) => b.events.length <= 1_000)).toBe(true);
      // wall time of an event = bootEpochNs + tsNs: the synthetic capture starts "now".
      const first = batches[0] as EventBatch;
      const firstWallMs = Number(((first.bootEpochNs ?? 0n) + (first.events[0]?.tsNs ?? 0n)) / 1_000_000n);
      expect(Math.abs(firstWallMs - Date.now())).toBeLessThan(10 * 60_000);
      const received = batches.flatMap((b) => b.events);
      expect(received.length).toBe(expected.length);
      expect(received).toEqual(expected);
      expect(final.delivered).toBe(received.length);
      expect(final.deliveredMessages).toBe(messages.length);

      // Container records: key node/cgroupId, on the node's events partition.
      const records = await readTopic(brokers, built.topics.containers);
      expect(records).toHaveLength(1);
      expect(records[0]?.key).toBe('node-it-1/123456789');
      expect(records[0]?.partition).toBe(messages[0]?.partition);
      const decodedContainer = resolver.decodeAs('ContainerRecord', records[0]?.value as Buffer);
      expect(decodedContainer.name).toBe('web');
      expect(decodedContainer.labels).toEqual({ app: 'web' });

      // Stats (the final one is written at shutdown): deltas that add up to the counters.
      const stats = (await readTopic(brokers, built.topics.stats)).map(
        (m) => resolver.decodeAs('CollectorStats', m.value) as CollectorStats,
      );
      expect(stats.length).toBeGreaterThanOrEqual(1);
      const sum = (f: (s: CollectorStats) => bigint) => stats.reduce((a, s) => a + f(s), 0n);
      expect(sum((s) => s.malformedRecords)).toBe(BigInt(malformed));
      expect(sum((s) => s.bufferDropsByReason.malformed_record ?? 0n)).toBe(BigInt(malformed));
      const byKind = sum((s) => Object.values(s.eventsByKind).reduce((a, n) => a + n, 0n));
      expect(byKind).toBe(BigInt(written.records));
      expect(stats.at(-1)?.lastSequence).toBe(BigInt(messages.length - 1));
    },
    180_000,
  );

  itReal(kafka.missing)(
    'messages the broker rejects (MESSAGE_TOO_LARGE) are dropped as kafka_rejected, counted exactly',
    async () => {
      const brokers = kafka.value?.brokers as string[];
      const file = join(dir, 'rejected.ktcap');
      const written = await writeSyntheticCapture(file, { records: 6_050, perBatch: 500, seed: 7 });
      const topicPrefix = prefix();
      // The topics exist before the collector starts; the events topic takes only small batches.
      const admin = createKafka({ brokers, clientId: 'collector-test-admin' }, createLogger('test')).admin();
      await admin.connect();
      const { names } = await ensureTopics(admin, { prefix: topicPrefix, partitions: 1 });
      await admin.alterConfigs({
        validateOnly: false,
        resources: [
          { type: 2, name: names.events, configEntries: [{ name: 'max.message.bytes', value: '4000' }] },
        ],
      });
      await admin.disconnect();

      const config = validateConfig({
        node: 'node-it-2',
        http: { port: 0 },
        kafka: { brokers, topicPrefix, partitions: 1 },
        collector: { source: 'replay', replayFile: file, batchMaxEvents: 1_000, batchMaxMs: 20 },
      });
      const built = await buildCollector({ config });
      await built.start();
      await built.collector.sourceDone;
      const final = await built.stop();

      expect(final.unaccounted).toBe(0);
      expect(final.captured).toBe(written.records);
      expect(final.dropped.kafka_rejected).toBeGreaterThan(0);
      expect(final.delivered + final.dropped.kafka_rejected).toBe(written.records);
      // The collector kept going: what was not rejected is in Kafka, exactly.
      const resolver = createSchemaResolver();
      const inKafka = (await readTopic(brokers, names.events))
        .map((m) => resolver.decodeAs('EventBatch', m.value) as EventBatch)
        .reduce((n, b) => n + b.events.length, 0);
      expect(inKafka).toBe(final.delivered);
      // Rejections never blocked the other topics: the stats written at shutdown got through.
      const stats = await readTopic(brokers, names.stats);
      expect(stats.length).toBeGreaterThanOrEqual(1);
      expect(resolver.decodeAs('CollectorStats', stats.at(-1)?.value as Buffer).node).toBe('node-it-2');
    },
    180_000,
  );
});
