// The collector pipeline, one per node:
//
//   source (raw records) -> decode -> batcher (each event Avro-encoded on arrival) ->
//   encoder (EventBatch envelope, sequence) ->
//   send queue (bounded, drops counted) -> delivery loop -> sink (Kafka)
//   samplers (map reads, cgroupfs) -------^
//   container records -> encode -> containers queue --^   stats every N s -> stats queue --^
//
// Every stage counts into one CollectorCounters object, so at any instant
//   captured = delivered + dropped(by reason) + pending.
import type { Registry } from 'prom-client';
import { createLogger, createThrottledWarn } from '../../common/log.js';
import type { CollectorStats } from '../../schemas/types.js';
import { type Batcher, createBatcher } from './batcher.js';
import type { BootClock } from './clock.js';
import {
  checkedMessageLimit,
  containerEnqueuer,
  createCountingDelivery,
  createQueues,
  drainAndClose,
  sourceInputs,
  stopInputs,
} from './collector-wiring.js';
import type { MessageSink } from './kafka-sink.js';
import { type BatchEncoder, createBatchEncoder, type FrameEventBatch } from './pipeline/encoder.js';
import type { DropReason } from './pipeline/send-queue.js';
import {
  type CollectorCounters,
  createCounters,
  type PendingView,
  type ProgramCost,
  registerCollectorMetrics,
  type StatsSnapshot,
  snapshot,
} from './stats.js';
import { createStatsReporter, type StatsReporter } from './stats-reporter.js';
import type { UnsentStatsStore } from './unsent-stats.js';

/** A decoded event: the decoder's output (docs/events.md), `kind` picks the Avro branch. */
export interface KtrailEvent {
  kind: string;
}

/**
 * An event left in its source batch by the decoder (collector/src/kernel/record-writer.ts):
 * its byte offset there. Only meaningful while that batch is being accepted.
 */
export type RawRecord = number;

/**
 * What the collector tells a source that can wait (a capture replay; the kernel cannot):
 * while `saturated()`, more events would only pile up in the send buffer, which then sets
 * the collector's RSS rather than its throughput.
 */
export interface SourceFlow {
  saturated(): boolean;
}

/** Raw record batches (ring-buffer layout): the eBPF addon or a capture-file replay. */
export interface EventSource {
  start(onBatch: (buf: Buffer, records: number) => void, flow?: SourceFlow): void | Promise<void>;
  stop(): void | Promise<void>;
  /** Finite sources (replay without loop) resolve this once everything was delivered. */
  readonly done?: Promise<void>;
  /** Cumulative counters the source itself keeps (kernel drops by program, addon losses). */
  drops?(): { kernelDrops?: Record<string, number | bigint>; addonDrops?: number | bigint };
  /** Cumulative kernel time and runs per BPF program (bpf stats; empty when not enabled). */
  programCost?(): Record<string, ProgramCost>;
}

export interface DecodeResult<E> {
  events: E[];
  /** Records the decoder rejected (bad size, unknown type...): counted, never fatal. */
  malformed: number;
  /** Records that could not be tied to a v2 cgroup (kernel-events.ts): counted, not sent. */
  unattributed?: number;
}

export type DecodeBatch<E> = (buf: Buffer, records: number) => DecodeResult<E>;

/** Periodic producers of events (map samplers, memory from cgroupfs). */
export interface Sampler<E> {
  start(emit: (events: E[]) => void): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** Container metadata producers (Docker, containerd, Kubernetes providers). */
export interface ContainerFeed<R> {
  start(onRecord: (record: R) => void): void | Promise<void>;
  stop(): void | Promise<void>;
}

export interface CollectorSettings {
  batchMaxEvents: number;
  batchMaxBytes: number;
  batchMaxMs: number;
  bufferMaxBytes: number;
  bufferMaxMessages: number;
  /** Bounds of the container-records and stats queues (32 MiB / 100k and 8 MiB / 10k by default; memory-budget.ts derives them). */
  containersQueueBytes?: number;
  containersQueueMessages?: number;
  statsQueueBytes?: number;
  statsQueueMessages?: number;
  statsIntervalMs: number;
  shutdownDeadlineMs: number;
  /** Hard per-message limit (below the broker's message.max.bytes); default 1,000,000. */
  maxMessageBytes?: number;
}

export interface Topics {
  events: string;
  containers: string;
  stats: string;
}

export interface CollectorOptions<E extends KtrailEvent | RawRecord, R> {
  node: string;
  collectorVersion: string;
  settings: CollectorSettings;
  topics: Topics;
  clock: BootClock;
  source: EventSource;
  decode: DecodeBatch<E>;
  /** The EventBatch codec in two steps: each event on arrival, the envelope per message. */
  eventBatch: {
    writeEvent: (event: E, buf: Buffer, pos: number) => number;
    frame: FrameEventBatch;
    /**
     * The kernel type of a RawRecord of the batch being accepted, and the kind of a type
     * (needed when decode returns any): records are counted by kind per type, not one by one.
     */
    typeOf?: (record: RawRecord) => number;
    kindOfType?: (type: number) => string;
  };
  /** CollectorStats (schemas/CollectorStats.avsc), one per stats interval, as deltas. */
  encodeStats: (record: CollectorStats) => Buffer;
  sink: MessageSink;
  samplers?: Sampler<E>[];
  containers?: ContainerFeed<R>;
  encodeContainer?: (record: R) => Buffer;
  /** Key suffix of a container record (`node/<suffix>`): its cgroup id, so compaction keeps one per container. */
  containerKey?: (record: R) => string;
  registry?: Registry;
  /** Where sequence numbers start and are recorded (continues across restarts in one boot). */
  sequenceStore?: { first: bigint; save(next: bigint): void };
  /** Stats messages Kafka had not acknowledged at stop: kept here, sent first by the next start. */
  unsentStats?: UnsentStatsStore;
}

export interface Collector {
  start(): Promise<void>;
  /** Stops sources, flushes within the shutdown deadline, returns the final counters. */
  stop(): Promise<StatsSnapshot>;
  snapshot(): StatsSnapshot;
  readonly counters: CollectorCounters;
  /** Ready once the source captures, a produce request has succeeded and Kafka is not failing now. */
  ready(): boolean;
  /** A finite source's end (replay without loop): resolves after its last batch. */
  readonly sourceDone: Promise<void> | undefined;
}

/** Queued event bytes, in produce requests, past which a source that can wait is told to. */
const SATURATED_REQUESTS = 4;

export function createCollector<E extends KtrailEvent | RawRecord, R>(
  options: CollectorOptions<E, R>,
): Collector {
  const log = createLogger('collector', { node: options.node });
  const { node, settings, topics, clock, source, sink } = options;
  const counters = createCounters();

  const { eventsQueue, containersQueue, statsQueue } = createQueues(settings, counters);

  const warnDrop = createThrottledWarn(log);
  const dropEvents = (n: number, reason: DropReason, error?: unknown): void => {
    counters.dropped[reason] += n;
    if (error !== undefined) warnDrop(reason, { err: error, reason, events: n }, 'events dropped');
  };

  const maxMessageBytes = checkedMessageLimit(settings);
  const encoder: BatchEncoder = createBatchEncoder({
    node,
    collectorVersion: options.collectorVersion,
    topic: topics.events,
    clock,
    frame: options.eventBatch.frame,
    queue: eventsQueue,
    counters,
    maxMessageBytes,
    onDrop: dropEvents,
    ...(options.sequenceStore
      ? { firstSequence: options.sequenceStore.first, onSequence: options.sequenceStore.save }
      : {}),
  });

  const queues = { eventsQueue, containersQueue, statsQueue };
  // stats is created below, once the delivery it notifies exists.
  const delivery = createCountingDelivery(queues, sink, maxMessageBytes, counters, (m) => stats.delivered(m));

  const batcher: Batcher<E> = createBatcher<E>(
    { maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes, maxDelayMs: settings.batchMaxMs },
    options.eventBatch.writeEvent,
    (items, count, openedAtMs) => {
      if (encoder.encodeAndQueue(items, count, openedAtMs)) delivery.notify();
    },
    (reason, error) => dropEvents(1, reason, error),
  );

  const pending: PendingView = {
    pendingEvents: () => batcher.pendingEvents + eventsQueue.events,
    bufferedMessages: () => eventsQueue.messages + containersQueue.messages + statsQueue.messages,
    bufferedBytes: () => eventsQueue.bytes + containersQueue.bytes + statsQueue.bytes,
    oldestCapturedAtMs: () => eventsQueue.oldestCapturedAtMs ?? batcher.openedAtMs,
  };
  // Scrapes read the programs' kernel time fresh (stats is defined below; called later).
  if (options.registry)
    registerCollectorMetrics(options.registry, counters, pending, () => stats.pullSourceDrops());

  let stopped = false;
  // A few produce requests' worth queued keeps Kafka busy; more only holds memory.
  const flow: SourceFlow = { saturated: () => eventsQueue.bytes > SATURATED_REQUESTS * maxMessageBytes };

  const { accept, onSourceBatch } = sourceInputs(options, counters, batcher, warnDrop, () => !stopped);

  const onContainer = containerEnqueuer(options, containersQueue, counters, log, {
    running: () => !stopped,
    notify: () => delivery.notify(),
  });

  // --- stats: deltas per interval, and what a previous run could not send ---------------
  let statsTimer: NodeJS.Timeout | undefined;
  const stats: StatsReporter = createStatsReporter({
    node,
    clock,
    collectorVersion: options.collectorVersion,
    topic: topics.stats,
    counters,
    pending,
    nextSequence: () => encoder.nextSequence,
    encode: options.encodeStats,
    queue: statsQueue,
    notify: () => delivery.notify(),
    sourceDrops: () => source.drops?.(),
    programCost: () => source.programCost?.(),
    ...(options.unsentStats ? { unsentStats: options.unsentStats } : {}),
  });

  let stopping: Promise<StatsSnapshot> | undefined;
  // Ready means capturing: before the kernel programs attach, an exec is not seen at all.
  let capturing = false;

  return {
    counters,
    async start() {
      stats.restoreUnsent();
      delivery.start();
      statsTimer = setInterval(stats.emit, settings.statsIntervalMs);
      statsTimer.unref();
      if (options.containers) await options.containers.start(onContainer);
      for (const s of options.samplers ?? []) await s.start(accept);
      await source.start(onSourceBatch, flow);
      capturing = true;
      // The first interval starts when capture does (see stats-reporter.ts).
      stats.restartInterval();
      log.info({ topics, settings }, 'collector started');
    },
    stop() {
      // Runs once: stop the inputs, flush the batcher, then drain and close (drainAndClose).
      stopping ??= (async () => {
        const deadline = Date.now() + settings.shutdownDeadlineMs;
        if (statsTimer) clearInterval(statsTimer);
        // The programs' bpf stats can only be read while they are loaded.
        stats.pullSourceDrops();
        await stopInputs(options, log);
        stopped = true;
        batcher.shutdown();
        await drainAndClose({ stats, delivery, queues, pending, sink, log }, deadline);
        const final = snapshot(node, clock.bootId, counters, pending);
        if (final.unaccounted !== 0) log.error({ final }, 'loss accounting does not balance');
        log.info({ final }, 'collector stopped');
        return final;
      })();
      return stopping;
    },
    snapshot() {
      stats.pullSourceDrops();
      return snapshot(node, clock.bootId, counters, pending);
    },
    ready() {
      return capturing && delivery.healthy;
    },
    get sourceDone() {
      return source.done;
    },
  };
}
