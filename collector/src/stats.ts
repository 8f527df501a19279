// The collector's counters: one plain object updated on the hot path with integer adds, read
// by the periodic CollectorStats message and by Prometheus at scrape time (collect()
// callbacks, so metrics cost nothing per event). The invariant the tests check:
//
//   captured = delivered + sum(dropped by reason) + pending
//
// where captured counts every event (and every malformed record) that reached the
// collector, delivered counts events in messages Kafka acknowledged, and pending counts
// events held in the batcher or the send queue (in flight included).
import { Counter, Gauge, type Registry } from 'prom-client';
import { DROP_REASONS, type DropReason } from './pipeline/send-queue.js';

export interface CollectorCounters {
  /** Events plus malformed records that reached the collector. */
  captured: number;
  capturedByKind: Map<string, number>;
  delivered: number;
  deliveredMessages: number;
  /** Encoded bytes of acknowledged event messages (before Kafka's gzip). */
  deliveredBytes: number;
  encodedMessages: number;
  encodedBytes: number;
  dropped: Record<DropReason, number>;
  /**
   * Of the dropped events, those in messages whose earlier send failed ambiguously (timeout,
   * connection lost mid-request): Kafka may hold them after all. Downstream, sequence numbers
   * settle it. So: delivered <= events in Kafka <= delivered + droppedUnconfirmed.
   */
  droppedUnconfirmed: number;
  /** Drops of non-event messages (container metadata, stats), by queue name. */
  droppedOtherMessages: Map<string, number>;
  deliveredOtherMessages: Map<string, number>;
  kafkaErrors: number;
  /** Ring-buffer reserve failures, by BPF program, as last reported by the addon (cumulative). */
  kernelDrops: Map<string, number>;
  /** Records the addon itself lost (e.g. JS not keeping up), cumulative. */
  addonDrops: number;
  /** Kernel time and runs per BPF program, as last read from bpf stats (cumulative). */
  programCost: Map<string, ProgramCost>;
  /** Events per second captured over the last stats interval. */
  eventsPerSecond: number;
  sequence: bigint;
}

/** bpf stats of one program: run_time_ns / run_cnt, cumulative since it was loaded. */
export interface ProgramCost {
  runTimeNs: number;
  runCount: number;
}

export function createCounters(): CollectorCounters {
  const dropped = {} as Record<DropReason, number>;
  for (const r of DROP_REASONS) dropped[r] = 0;
  return {
    captured: 0,
    capturedByKind: new Map(),
    delivered: 0,
    deliveredMessages: 0,
    deliveredBytes: 0,
    encodedMessages: 0,
    encodedBytes: 0,
    dropped,
    droppedUnconfirmed: 0,
    droppedOtherMessages: new Map(),
    deliveredOtherMessages: new Map(),
    kafkaErrors: 0,
    kernelDrops: new Map(),
    addonDrops: 0,
    programCost: new Map(),
    eventsPerSecond: 0,
    sequence: -1n,
  };
}

export function totalDropped(c: CollectorCounters): number {
  let sum = 0;
  for (const r of DROP_REASONS) sum += c.dropped[r];
  return sum;
}

export function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** What the stats message and the metrics show, at one instant. */
export interface StatsSnapshot {
  node: string;
  bootId: string;
  atMs: number;
  captured: number;
  capturedByKind: Record<string, number>;
  delivered: number;
  deliveredMessages: number;
  deliveredBytes: number;
  dropped: Record<DropReason, number>;
  droppedTotal: number;
  /** Dropped events Kafka may nevertheless hold (see CollectorCounters.droppedUnconfirmed). */
  droppedUnconfirmed: number;
  pending: number;
  bufferedMessages: number;
  bufferedBytes: number;
  oldestUnsentAgeMs: number;
  malformedRecords: number;
  kafkaErrors: number;
  kernelDrops: Record<string, number>;
  addonDrops: number;
  lastSequence: string;
  /** captured - delivered - dropped - pending: 0 unless accounting is broken. */
  unaccounted: number;
}

export interface PendingView {
  pendingEvents(): number;
  bufferedMessages(): number;
  bufferedBytes(): number;
  oldestCapturedAtMs(): number | undefined;
}

export function snapshot(
  node: string,
  bootId: string,
  c: CollectorCounters,
  pending: PendingView,
  now = Date.now(),
): StatsSnapshot {
  const droppedTotal = totalDropped(c);
  const pendingEvents = pending.pendingEvents();
  const oldest = pending.oldestCapturedAtMs();
  return {
    node,
    bootId,
    atMs: now,
    captured: c.captured,
    capturedByKind: Object.fromEntries(c.capturedByKind),
    delivered: c.delivered,
    deliveredMessages: c.deliveredMessages,
    deliveredBytes: c.deliveredBytes,
    dropped: { ...c.dropped },
    droppedTotal,
    droppedUnconfirmed: c.droppedUnconfirmed,
    pending: pendingEvents,
    bufferedMessages: pending.bufferedMessages(),
    bufferedBytes: pending.bufferedBytes(),
    oldestUnsentAgeMs: oldest === undefined ? 0 : Math.max(0, now - oldest),
    malformedRecords: c.dropped.malformed_record,
    kafkaErrors: c.kafkaErrors,
    kernelDrops: Object.fromEntries(c.kernelDrops),
    addonDrops: c.addonDrops,
    lastSequence: c.sequence.toString(),
    unaccounted: c.captured - c.delivered - droppedTotal - pendingEvents,
  };
}

/** Registers the collector's metrics; values are read from the counters at scrape time. */
export function registerCollectorMetrics(
  registry: Registry,
  c: CollectorCounters,
  pending: PendingView,
  refreshProgramCost: () => void = () => {},
): void {
  const registers = [registry];
  new Counter({
    name: 'ktrail_collector_bpf_program_run_seconds_total',
    help: 'Kernel time spent in each BPF program (bpf stats; needs kernel.bpf_stats_enabled=1)',
    labelNames: ['program'],
    registers,
    collect() {
      refreshProgramCost();
      this.reset();
      for (const [program, p] of c.programCost) this.inc({ program }, p.runTimeNs / 1e9);
    },
  });
  new Counter({
    name: 'ktrail_collector_bpf_program_runs_total',
    help: 'Runs of each BPF program (bpf stats; needs kernel.bpf_stats_enabled=1)',
    labelNames: ['program'],
    registers,
    collect() {
      this.reset();
      for (const [program, p] of c.programCost) this.inc({ program }, p.runCount);
    },
  });
  new Counter({
    name: 'ktrail_collector_events_captured_total',
    help: 'Events (and malformed records) that reached the collector, by kind',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      for (const [kind, n] of c.capturedByKind) this.inc({ kind }, n);
    },
  });
  new Counter({
    name: 'ktrail_collector_events_dropped_total',
    help: 'Events the collector dropped, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const r of DROP_REASONS) this.inc({ reason: r }, c.dropped[r]);
    },
  });
  new Counter({
    name: 'ktrail_collector_kernel_drops_total',
    help: 'Ring-buffer reserve failures reported by the kernel programs, by program',
    labelNames: ['program'],
    registers,
    collect() {
      this.reset();
      for (const [program, n] of c.kernelDrops) this.inc({ program }, n);
    },
  });
  new Counter({
    name: 'ktrail_collector_bytes_total',
    help: 'Encoded Avro bytes of event messages, by stage (encoded, delivered)',
    labelNames: ['stage'],
    registers,
    collect() {
      this.reset();
      this.inc({ stage: 'encoded' }, c.encodedBytes);
      this.inc({ stage: 'delivered' }, c.deliveredBytes);
    },
  });
  new Counter({
    name: 'ktrail_collector_messages_total',
    help: 'Kafka messages by topic kind and outcome',
    labelNames: ['queue', 'outcome'],
    registers,
    collect() {
      this.reset();
      this.inc({ queue: 'events', outcome: 'delivered' }, c.deliveredMessages);
      for (const [queue, n] of c.deliveredOtherMessages) this.inc({ queue, outcome: 'delivered' }, n);
      for (const [queue, n] of c.droppedOtherMessages) this.inc({ queue, outcome: 'dropped' }, n);
    },
  });
  registerScalarMetrics(registers, c, pending);
}

/** The collector's one-number metrics: totals (counters) and levels (gauges), read at scrape time. */
function registerScalarMetrics(registers: Registry[], c: CollectorCounters, pending: PendingView): void {
  const totals: Array<[string, string, () => number]> = [
    [
      'ktrail_collector_events_delivered_total',
      'Events in messages acknowledged by Kafka',
      () => c.delivered,
    ],
    [
      'ktrail_collector_events_dropped_unconfirmed_total',
      'Dropped events whose earlier send failed ambiguously: Kafka may hold them after all',
      () => c.droppedUnconfirmed,
    ],
    [
      'ktrail_collector_addon_drops_total',
      'Records the native addon lost before handing them to JavaScript',
      () => c.addonDrops,
    ],
    [
      'ktrail_collector_malformed_records_total',
      'Records the decoder rejected (counted as dropped with reason malformed_record)',
      () => c.dropped.malformed_record,
    ],
    [
      'ktrail_collector_kafka_errors_total',
      'Produce requests that failed or got no answer within kafka.requestTimeoutMs (a frozen broker)',
      () => c.kafkaErrors,
    ],
  ];
  for (const [name, help, value] of totals)
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  const levels: Array<[string, string, () => number]> = [
    [
      'ktrail_collector_events_per_second',
      'Events captured per second over the last stats interval',
      () => c.eventsPerSecond,
    ],
    [
      'ktrail_collector_events_pending',
      'Events held in the batcher or the send buffer',
      () => pending.pendingEvents(),
    ],
    [
      'ktrail_collector_buffer_bytes',
      'Encoded bytes held in the send buffers',
      () => pending.bufferedBytes(),
    ],
    [
      'ktrail_collector_oldest_unsent_seconds',
      'Age of the oldest event not yet acknowledged by Kafka',
      () => {
        const oldest = pending.oldestCapturedAtMs();
        return oldest === undefined ? 0 : Math.max(0, Date.now() - oldest) / 1000;
      },
    ],
    [
      'ktrail_collector_sequence',
      'Last batch sequence number assigned in this boot',
      () => Number(c.sequence),
    ],
  ];
  for (const [name, help, value] of levels)
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
}
