// The collector's own cost in its stats records and on /metrics: process CPU and RSS, the
// kernel time of each BPF program (bpf stats, read from the source as cumulative counters
// and sent as deltas) and events per second. The source and sink are in-memory stand-ins;
// the real kernel path is test/integration/collector-ebpf.test.ts.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { fixedBootClock } from '../../collector/src/clock.js';
import { createCollector, type EventSource } from '../../collector/src/collector.js';
import type { MessageSink } from '../../collector/src/kafka-sink.js';
import type { QueuedMessage } from '../../collector/src/pipeline/send-queue.js';
import type { ProgramCost } from '../../collector/src/stats.js';
import { createEncoder, createEventBatchFramer, createSchemaResolver } from '../../schemas/codec.js';
import type { CollectorStats, KtrailEvent } from '../../schemas/types.js';

const TOPICS = { events: 'e', containers: 'c', stats: 's' };
const statsEncoder = createEncoder('CollectorStats');
const resolver = createSchemaResolver();

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

function run(cost: { current: Record<string, ProgramCost> }) {
  const accepted: QueuedMessage[] = [];
  const sink: MessageSink = {
    async send(messages) {
      accepted.push(...messages);
      return { status: 'success' };
    },
    async close() {},
  };
  const source: EventSource = {
    start(onBatch) {
      onBatch(Buffer.alloc(0), 100);
    },
    stop() {},
    programCost: () => cost.current,
  };
  const registry = new Registry();
  const collector = createCollector<KtrailEvent, never>({
    node: 'node-cost',
    collectorVersion: 'test',
    settings: {
      batchMaxEvents: 100,
      batchMaxBytes: 100_000,
      batchMaxMs: 10_000,
      bufferMaxBytes: 64 * 1024 * 1024,
      bufferMaxMessages: 10_000,
      statsIntervalMs: 60_000,
      shutdownDeadlineMs: 5_000,
    },
    topics: TOPICS,
    clock: fixedBootClock('00000000-0000-4000-8000-0000000000cc', 0n),
    source,
    decode: (_buf, records) => ({
      events: Array.from({ length: records }, (_, i) => sample(i)),
      malformed: 0,
    }),
    eventBatch: createEventBatchFramer(),
    encodeStats: (s) => statsEncoder.encode(s),
    sink,
    registry,
  });
  const stats = () =>
    accepted
      .filter((m) => m.topic === TOPICS.stats)
      .map((m) => resolver.decodeAs('CollectorStats', m.value) as CollectorStats);
  return { collector, registry, stats };
}

const total = (records: CollectorStats[], pick: (r: CollectorStats) => Record<string, bigint>, k: string) =>
  records.reduce((s, r) => s + Number(pick(r)[k] ?? 0n), 0);

describe('collector cost', () => {
  it('stats records carry process CPU, RSS and per-program kernel time; /metrics too', async () => {
    const cost = { current: { kt_cpu_switch: { runTimeNs: 5_000, runCount: 50 } } };
    const { collector, registry, stats } = run(cost);
    await collector.start();
    // Scrape mid-run: the programs' counters are read fresh at scrape time.
    const mid = await registry.metrics();
    expect(mid).toMatch(/ktrail_collector_bpf_program_runs_total\{program="kt_cpu_switch"\} 50/);
    cost.current = { kt_cpu_switch: { runTimeNs: 12_000, runCount: 120 } };
    await collector.stop();

    const records = stats();
    expect(records.length).toBeGreaterThan(0);
    // The first record counts from process start: loading the programs is a cost too.
    expect(records.reduce((s, r) => s + Number(r.cpuNs), 0)).toBeGreaterThan(0);
    expect(Number(records.at(-1)?.rssBytes)).toBeGreaterThan(10 * 2 ** 20);
    expect(total(records, (r) => r.programRunTimeNs, 'kt_cpu_switch')).toBe(12_000);
    expect(total(records, (r) => r.programRunCount, 'kt_cpu_switch')).toBe(120);

    const text = await registry.metrics();
    expect(text).toMatch(
      /ktrail_collector_bpf_program_run_seconds_total\{program="kt_cpu_switch"\} 0\.000012/,
    );
    expect(text).toMatch(/ktrail_collector_bpf_program_runs_total\{program="kt_cpu_switch"\} 120/);
    const eps = /^ktrail_collector_events_per_second (\S+)$/m.exec(text)?.[1];
    expect(Number(eps)).toBeGreaterThan(0);
  });

  it('a program reloaded under the same name counts again from zero, never negative', async () => {
    const cost = { current: { kt_proc_exec: { runTimeNs: 9_000, runCount: 90 } } };
    const { collector, registry, stats } = run(cost);
    await collector.start();
    await registry.metrics(); // reads 90 runs
    cost.current = { kt_proc_exec: { runTimeNs: 1_000, runCount: 10 } };
    await collector.stop();
    const records = stats();
    expect(records.every((r) => (r.programRunCount.kt_proc_exec ?? 0n) >= 0n)).toBe(true);
    expect(total(records, (r) => r.programRunCount, 'kt_proc_exec')).toBe(10);
  });
});
