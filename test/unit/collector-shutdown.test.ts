// The collector's stop: the final CollectorStats record is written after the shutdown drain,
// so the stats records of a run add up to its final counters (delivered and dropped), and
// what Kafka has not acknowledged of the stats at stop is kept on disk and sent first by the
// next start. The sink here is an in-memory stand-in whose answers the test decides; the
// real broker path is test/e2e/up-stop.test.ts.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedBootClock } from '../../collector/src/clock.js';
import { createCollector, type EventSource } from '../../collector/src/collector.js';
import type { MessageSink, SinkResult } from '../../collector/src/kafka-sink.js';
import type { QueuedMessage } from '../../collector/src/pipeline/send-queue.js';
import { openUnsentStats } from '../../collector/src/unsent-stats.js';
import { createEncoder, createEventBatchFramer, createSchemaResolver } from '../../schemas/codec.js';
import type { CollectorStats, KtrailEvent } from '../../schemas/types.js';

const dir = mkdtempSync(join(tmpdir(), 'ktrail-shutdown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOPICS = { events: 'e', containers: 'c', stats: 's' };
const resolver = createSchemaResolver();
const statsEncoder = createEncoder('CollectorStats');

/** A sink that records what it accepted; `mode` decides each answer, `delayMs` each round trip. */
function memorySink(options: { mode: () => 'up' | 'down'; delayMs?: number }) {
  const accepted: QueuedMessage[] = [];
  const sink: MessageSink = {
    async send(messages): Promise<SinkResult> {
      await new Promise((r) => setTimeout(r, options.delayMs ?? 0));
      if (options.mode() === 'down') return { status: 'retryable', error: new Error('broker down') };
      accepted.push(...messages);
      return { status: 'success' };
    },
    async close() {},
  };
  const stats = () =>
    accepted
      .filter((m) => m.topic === TOPICS.stats)
      .map((m) => resolver.decodeAs('CollectorStats', m.value) as CollectorStats);
  return { sink, accepted, stats };
}

/** A source that pushes `batches` batches of `perBatch` cpu samples as soon as it starts. */
function burstSource(batches: number, perBatch: number): EventSource & { startedAtMs: number } {
  const source = {
    startedAtMs: 0,
    start(onBatch: (buf: Buffer, records: number) => void) {
      source.startedAtMs = Date.now();
      for (let i = 0; i < batches; i++) onBatch(Buffer.alloc(0), perBatch);
    },
    stop() {},
  };
  return source;
}

const sample = (i: number): KtrailEvent => ({
  kind: 'cpu_sample',
  tsNs: BigInt(i),
  cgroupId: 1n,
  pid: 0,
  tgid: 0,
  flags: 0,
  cpuNs: 1n,
  switches: 1n,
  intervalNs: 1n,
});

function collectorWith(sink: MessageSink, source: EventSource, node: string, deadlineMs: number) {
  return createCollector<KtrailEvent, never>({
    node,
    collectorVersion: 'test',
    settings: {
      batchMaxEvents: 100,
      batchMaxBytes: 100_000,
      batchMaxMs: 10_000,
      bufferMaxBytes: 64 * 1024 * 1024,
      bufferMaxMessages: 10_000,
      statsIntervalMs: 60_000,
      shutdownDeadlineMs: deadlineMs,
    },
    topics: TOPICS,
    clock: fixedBootClock('00000000-0000-4000-8000-0000000000aa', 0n),
    source,
    decode: (_buf, records) => ({
      events: Array.from({ length: records }, (_, i) => sample(i)),
      malformed: 0,
    }),
    eventBatch: createEventBatchFramer(),
    encodeStats: (s) => statsEncoder.encode(s),
    sink,
    unsentStats: openUnsentStats(node, dir),
  });
}

const sum = (records: CollectorStats[], pick: (r: CollectorStats) => bigint): number =>
  records.reduce((s, r) => s + Number(pick(r)), 0);
const drops = (r: CollectorStats): bigint => Object.values(r.bufferDropsByReason).reduce((a, b) => a + b, 0n);

describe('collector stop', () => {
  it('writes the final stats record after the drain: the records add up to the final counters', async () => {
    // 40 messages of 100 events, 20 ms per request: the drain takes a while after stop().
    const mem = memorySink({ mode: () => 'up', delayMs: 20 });
    const source = burstSource(40, 100);
    const collector = collectorWith(mem.sink, source, 'node-drain', 10_000);
    await collector.start();
    const final = await collector.stop();

    expect(final.captured).toBe(4_000);
    expect(final.delivered).toBe(4_000);
    expect(final.unaccounted).toBe(0);
    const records = mem.stats();
    expect(records.length).toBeGreaterThan(0);
    // The last message Kafka got is the final stats record, after every event message.
    expect(mem.accepted.at(-1)?.topic).toBe(TOPICS.stats);
    expect(sum(records, (r) => r.eventsDelivered)).toBe(final.delivered);
    expect(sum(records, drops)).toBe(final.droppedTotal);
    // The first interval starts when capture did; each next one where the last ended.
    expect(Number((records[0] as CollectorStats).intervalStartNs / 1_000_000n)).toBeGreaterThanOrEqual(
      source.startedAtMs,
    );
    for (let i = 1; i < records.length; i++)
      expect((records[i] as CollectorStats).intervalStartNs).toBe(
        (records[i - 1] as CollectorStats).intervalEndNs,
      );
    expect(existsSync(openUnsentStats('node-drain', dir).file)).toBe(false);
  });

  it('keeps the stats Kafka did not take at stop and sends them first on the next start', async () => {
    let mode: 'up' | 'down' = 'down';
    const mem = memorySink({ mode: () => mode });
    const first = collectorWith(mem.sink, burstSource(5, 100), 'node-down', 300);
    await first.start();
    const final = await first.stop();
    expect(final.delivered).toBe(0);
    expect(final.dropped.shutdown_deadline).toBe(500);
    expect(mem.accepted).toHaveLength(0);
    const store = openUnsentStats('node-down', dir);
    expect(existsSync(store.file)).toBe(true);
    expect(store.load()).toHaveLength(1);

    // The next run, Kafka back: the kept record goes out before anything else.
    mode = 'up';
    const second = collectorWith(mem.sink, burstSource(1, 10), 'node-down', 5_000);
    await second.start();
    const next = await second.stop();
    const records = mem.stats();
    expect(records).toHaveLength(2);
    const [kept, last] = records as [CollectorStats, CollectorStats];
    expect(kept.bufferDropsByReason).toEqual({ shutdown_deadline: 500n });
    expect(kept.eventsDelivered).toBe(0n);
    expect(mem.accepted[0]?.topic).toBe(TOPICS.stats);
    expect(last.eventsDelivered).toBe(BigInt(next.delivered));
    expect(next.delivered).toBe(10);
    // Sent, so no longer kept.
    expect(existsSync(store.file)).toBe(false);
  });

  it('a kept record that still cannot be sent is kept again, with the new final record', async () => {
    const mem = memorySink({ mode: () => 'down' });
    for (const run of [1, 2]) {
      const c = collectorWith(mem.sink, burstSource(1, 7), 'node-twice', 200);
      await c.start();
      await c.stop();
      expect(openUnsentStats('node-twice', dir).load()).toHaveLength(run);
    }
  });

  it('is not ready before the source captures, even once Kafka took a record', async () => {
    let mode: 'up' | 'down' = 'down';
    const mem = memorySink({ mode: () => mode });
    const earlier = collectorWith(mem.sink, burstSource(1, 3), 'node-ready', 200);
    await earlier.start();
    await earlier.stop();
    mode = 'up';
    // A source that attaches only when told: the kept stats record goes out before it does.
    let attach: () => void = () => {};
    const attached = new Promise<void>((r) => {
      attach = r;
    });
    const gated: EventSource = {
      start: () => attached,
      stop() {},
    };
    const c = collectorWith(mem.sink, gated, 'node-ready', 1_000);
    const starting = c.start();
    for (let i = 0; i < 100 && mem.accepted.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(mem.accepted.length).toBeGreaterThan(0);
    expect(c.ready()).toBe(false);
    attach();
    await starting;
    expect(c.ready()).toBe(true);
    await c.stop();
  });
});
