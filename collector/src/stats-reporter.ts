// CollectorStats records: one per interval, as deltas of the collector's counters, queued on
// the stats lane. Summed over a run, the records equal the run's final counters, so what
// SQL shows in collector_stats is what the collector's last log line says — provided the
// last record is written after the shutdown drain (collector.ts stop()) and reaches Kafka:
// what Kafka has not acknowledged at stop is kept on disk (unsent-stats.ts) and sent first
// by the next start.
//
// Interval bounds are wall-clock ns. Within a run each record starts where the previous one
// ended; a run's first record starts when capture started, so the space between one run's
// last record and the next run's first is time nothing captured (the capture_gaps view).
import { createLogger } from '../../common/log.js';
import type { CollectorStats } from '../../schemas/types.js';
import type { BootClock } from './clock.js';
import { DROP_REASONS, type QueuedMessage, type SendQueue } from './pipeline/send-queue.js';
import { bump, type CollectorCounters, type PendingView, type ProgramCost, snapshot } from './stats.js';
import type { UnsentStatsStore } from './unsent-stats.js';

export interface StatsReporterOptions {
  node: string;
  clock: BootClock;
  collectorVersion: string;
  topic: string;
  counters: CollectorCounters;
  pending: PendingView;
  nextSequence: () => bigint;
  encode: (record: CollectorStats) => Buffer;
  queue: SendQueue;
  notify: () => void;
  /** Cumulative counters the source keeps (kernel drops by program, addon losses). */
  sourceDrops: () =>
    | { kernelDrops?: Record<string, number | bigint>; addonDrops?: number | bigint }
    | undefined;
  /** Cumulative bpf stats per program the source reads (kernel sources only). */
  programCost?: () => Record<string, ProgramCost> | undefined;
  /** The process's own CPU time (ns, all threads) and RSS; defaults to this process's. */
  selfUsage?: () => { cpuNs: number; rssBytes: number };
  unsentStats?: UnsentStatsStore;
}

export interface StatsReporter {
  /** Queues the record of the interval that ends now and starts the next one. */
  emit(): void;
  /** The current interval starts now instead (called when capture starts). */
  restartInterval(): void;
  /** Copies the source's cumulative counters (drops, program cost) into the collector's. */
  pullSourceDrops(): void;
  /** Queues what a previous run kept on disk (first thing at start). */
  restoreUnsent(): void;
  /** The stats lane's acknowledged messages: a restored set fully sent empties the file. */
  delivered(messages: readonly QueuedMessage[]): void;
  /** At stop, after the last drain: what Kafka has not acknowledged goes to disk. */
  keepUnsent(): void;
}

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

/** process.cpuUsage() is getrusage(RUSAGE_SELF): the addon's poll thread counts too. */
function processUsage(): { cpuNs: number; rssBytes: number } {
  const u = process.cpuUsage();
  return { cpuNs: (u.user + u.system) * 1000, rssBytes: process.memoryUsage.rss() };
}

function programDeltas(
  now: Map<string, ProgramCost>,
  before: Map<string, ProgramCost>,
): { runTimeNs: Record<string, bigint>; runCount: Record<string, bigint> } {
  const runTimeNs: Record<string, bigint> = {};
  const runCount: Record<string, bigint> = {};
  for (const [name, p] of now) {
    const b = before.get(name);
    const runs = p.runCount - (b?.runCount ?? 0);
    // A program reloaded under the same name starts again from zero: count from there.
    const reset = runs < 0;
    const n = reset ? p.runCount : runs;
    if (n <= 0) continue;
    runCount[name] = BigInt(n);
    runTimeNs[name] = BigInt(Math.max(0, reset ? p.runTimeNs : p.runTimeNs - (b?.runTimeNs ?? 0)));
  }
  return { runTimeNs, runCount };
}

function deltaMap(now: Map<string, number>, before: Map<string, number>): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const [k, v] of now) {
    const d = v - (before.get(k) ?? 0);
    if (d !== 0) out[k] = BigInt(d);
  }
  return out;
}

export function createStatsReporter(options: StatsReporterOptions): StatsReporter {
  const { node, clock, counters, pending, queue, unsentStats } = options;
  const selfUsage = options.selfUsage ?? processUsage;
  const log = createLogger('collector.stats', { node });

  // The counters as of the start of the current interval (the first starts at zero, so the
  // first record's CPU includes start-up: loading and attaching the programs is a cost too).
  const mark = (atNs: bigint, nextSequence: bigint, cpuNs: number) => ({
    atNs,
    byKind: new Map(counters.capturedByKind),
    kernel: new Map(counters.kernelDrops),
    dropped: { ...counters.dropped },
    delivered: counters.delivered,
    bytes: counters.deliveredBytes,
    captured: counters.captured,
    cpuNs,
    programs: new Map(counters.programCost),
    nextSequence,
  });
  let last = mark(nowNs(), options.nextSequence(), 0);
  const restored = new Set<QueuedMessage>();

  function pullSourceDrops(): void {
    pullProgramCost();
    const d = options.sourceDrops();
    if (!d) return;
    if (d.kernelDrops)
      for (const [p, n] of Object.entries(d.kernelDrops)) counters.kernelDrops.set(p, Number(n));
    if (d.addonDrops !== undefined) counters.addonDrops = Number(d.addonDrops);
  }

  function pullProgramCost(): void {
    const cost = options.programCost?.();
    if (!cost) return;
    for (const [name, p] of Object.entries(cost)) counters.programCost.set(name, p);
  }

  function record(
    endNs: bigint,
    next: bigint,
    oldestUnsentAgeMs: number,
    usage: { cpuNs: number; rssBytes: number },
  ): CollectorStats {
    const programs = programDeltas(counters.programCost, last.programs);
    const seconds = Number(endNs - last.atNs) / 1e9;
    counters.eventsPerSecond = seconds > 0 ? (counters.captured - last.captured) / seconds : 0;
    const bufferDrops: Record<string, bigint> = {};
    for (const r of DROP_REASONS) {
      const d = counters.dropped[r] - last.dropped[r];
      if (d !== 0) bufferDrops[r] = BigInt(d);
    }
    return {
      node,
      bootId: clock.bootId,
      collectorVersion: options.collectorVersion,
      firstSequence: next > last.nextSequence ? last.nextSequence : null,
      lastSequence: next > last.nextSequence ? next - 1n : null,
      intervalStartNs: last.atNs,
      intervalEndNs: endNs,
      eventsByKind: deltaMap(counters.capturedByKind, last.byKind),
      kernelDropsByProgram: deltaMap(counters.kernelDrops, last.kernel),
      bufferDropsByReason: bufferDrops,
      malformedRecords: BigInt(counters.dropped.malformed_record - last.dropped.malformed_record),
      eventsDelivered: BigInt(counters.delivered - last.delivered),
      bytesSent: BigInt(counters.deliveredBytes - last.bytes),
      oldestUnsentAgeMs: BigInt(oldestUnsentAgeMs),
      cpuNs: BigInt(Math.max(0, Math.round(usage.cpuNs - last.cpuNs))),
      rssBytes: BigInt(usage.rssBytes),
      programRunTimeNs: programs.runTimeNs,
      programRunCount: programs.runCount,
    };
  }

  const message = (value: Buffer): QueuedMessage => ({
    topic: options.topic,
    key: node,
    value,
    events: 0,
    capturedAtMs: Date.now(),
    sequence: -1n,
  });

  return {
    pullSourceDrops,
    emit() {
      pullSourceDrops();
      const endNs = nowNs();
      const snap = snapshot(node, clock.bootId, counters, pending);
      const next = options.nextSequence();
      const usage = selfUsage();
      const rec = record(endNs, next, snap.oldestUnsentAgeMs, usage);
      last = mark(endNs, next, usage.cpuNs);
      try {
        queue.push(message(options.encode(rec)));
        options.notify();
      } catch (err) {
        bump(counters.droppedOtherMessages, 'stats');
        log.warn({ err }, 'stats record could not be encoded');
      }
      log.info(
        {
          captured: snap.captured,
          delivered: snap.delivered,
          dropped: snap.droppedTotal,
          pending: snap.pending,
          oldestUnsentAgeMs: snap.oldestUnsentAgeMs,
          kafkaErrors: snap.kafkaErrors,
        },
        'collector stats',
      );
    },
    restartInterval() {
      last.atNs = nowNs();
    },
    restoreUnsent() {
      const values = unsentStats?.load() ?? [];
      for (const value of values) {
        const m = message(value);
        restored.add(m);
        queue.push(m);
      }
      if (values.length === 0) return;
      log.info({ messages: values.length, file: unsentStats?.file }, 'sending stats a previous run kept');
      options.notify();
    },
    delivered(messages) {
      if (restored.size === 0) return;
      for (const m of messages) restored.delete(m);
      if (restored.size === 0) unsentStats?.save([]);
    },
    keepUnsent() {
      const unsent = queue.takeAll();
      if (unsent.length === 0) return;
      if (unsentStats?.save(unsent.map((m) => m.value))) {
        log.warn(
          { messages: unsent.length, file: unsentStats.file },
          'stats not acknowledged by Kafka: kept on disk, sent by the next start',
        );
        return;
      }
      bump(counters.droppedOtherMessages, 'stats', unsent.length);
      log.warn({ messages: unsent.length }, 'stats not acknowledged by Kafka: dropped');
    },
  };
}
