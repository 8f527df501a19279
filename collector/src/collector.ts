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
import { ConfigError } from '../../common/errors.js';
import { createLogger, createThrottledWarn } from '../../common/log.js';
import type { CollectorStats } from '../../schemas/types.js';
import { type Batcher, createBatcher } from './batcher.js';
import type { BootClock } from './clock.js';
import type { MessageSink } from './kafka-sink.js';
import { createDelivery, type Delivery } from './pipeline/delivery.js';
import { type BatchEncoder, createBatchEncoder, type FrameEventBatch } from './pipeline/encoder.js';
import { createSendQueue, type DropReason } from './pipeline/send-queue.js';
import { SchemaRegistryPendingError } from './registry-sink.js';
import {
  bump,
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
    /** The kind of a RawRecord of the batch being accepted (needed when decode returns any). */
    kindOf?: (record: RawRecord) => string;
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

/** Bytes kept free below the per-message limit for the EventBatch envelope. */
const ENVELOPE_HEADROOM = 4096;

/**
 * How long stop() waits for Kafka to acknowledge the final stats record, after the events
 * drain: a few produce round trips when Kafka answers, less when its last request failed.
 * Past it the record is kept on disk for the next start.
 */
const FINAL_STATS_MS = 3_000;
const FINAL_STATS_FAILING_MS = 1_000;

export function createCollector<E extends KtrailEvent | RawRecord, R>(
  options: CollectorOptions<E, R>,
): Collector {
  const log = createLogger('collector', { node: options.node });
  const { node, settings, topics, clock, source, decode, sink } = options;
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

  // Every unanswered request counts, not only the send that finally fails after them.
  sink.onRequestTimeout?.(() => {
    counters.kafkaErrors++;
  });
  const delivery: Delivery = createDelivery({
    queues: [eventsQueue, containersQueue, statsQueue],
    sink,
    maxRequestBytes: maxMessageBytes,
    onDelivered(queue, messages) {
      if (queue === eventsQueue) {
        for (const m of messages) {
          counters.delivered += m.events;
          counters.deliveredBytes += m.value.length;
        }
        counters.deliveredMessages += messages.length;
      } else {
        bump(counters.deliveredOtherMessages, queue.name, messages.length);
        if (queue === statsQueue) stats.delivered(messages);
      }
    },
    onSendError(error) {
      if (!(error instanceof SchemaRegistryPendingError)) counters.kafkaErrors++;
    },
  });

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

  // Hot path: one call per source batch. Counting by kind is a Map update per event.
  function accept(events: E[]): void {
    if (stopped) return;
    counters.captured += events.length;
    const byKind = counters.capturedByKind;
    const kindOf = options.eventBatch.kindOf;
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as E;
      const kind = typeof e === 'number' ? (kindOf?.(e) ?? 'raw') : (e as KtrailEvent).kind;
      byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    }
    batcher.addAll(events);
  }

  function onSourceBatch(buf: Buffer, records: number): void {
    if (stopped) return;
    let result: DecodeResult<E>;
    try {
      result = decode(buf, records);
    } catch (err) {
      // A decoder that throws on a whole batch: count its records as malformed, go on.
      result = { events: [], malformed: records };
      warnDrop('decoder', { err, records }, 'decoder rejected a whole batch');
    }
    countUndecoded(counters, result.malformed, result.unattributed ?? 0);
    accept(result.events);
  }

  function onContainer(record: R): void {
    if (stopped || !options.encodeContainer) return;
    let value: Buffer;
    try {
      value = options.encodeContainer(record);
    } catch (err) {
      bump(counters.droppedOtherMessages, 'containers');
      log.warn({ err }, 'container record could not be encoded');
      return;
    }
    const suffix = options.containerKey?.(record);
    containersQueue.push({
      topic: topics.containers,
      key: suffix === undefined ? node : `${node}/${suffix}`,
      value,
      events: 0,
      capturedAtMs: Date.now(),
      sequence: -1n,
    });
    delivery.notify();
  }

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

  async function stopInputs(): Promise<void> {
    const stops: Array<void | Promise<void>> = [source.stop()];
    for (const s of options.samplers ?? []) stops.push(s.stop());
    if (options.containers) stops.push(options.containers.stop());
    const results = await Promise.allSettled(stops);
    for (const r of results)
      if (r.status === 'rejected') log.warn({ err: r.reason }, 'input did not stop cleanly');
  }

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
      // Runs once: stop inputs, flush the batcher, send what we hold until the deadline,
      // count whatever is still held as dropped (shutdown_deadline), and only then write the
      // final stats record, so it carries what the drain delivered and what the deadline
      // dropped; what Kafka does not take of the stats is kept on disk for the next start.
      stopping ??= (async () => {
        const deadline = Date.now() + settings.shutdownDeadlineMs;
        if (statsTimer) clearInterval(statsTimer);
        // The programs' bpf stats can only be read while they are loaded.
        stats.pullSourceDrops();
        await stopInputs();
        stopped = true;
        batcher.shutdown();
        const drained = await delivery.drain(deadline - Date.now());
        if (!drained) {
          log.warn(
            { events: eventsQueue.events, messages: pending.bufferedMessages() },
            'shutdown deadline reached; dropping what Kafka has not acknowledged',
          );
          eventsQueue.dropAll('shutdown_deadline');
          containersQueue.dropAll('shutdown_deadline');
        }
        stats.emit();
        await delivery.drain(delivery.healthy ? FINAL_STATS_MS : FINAL_STATS_FAILING_MS);
        // Don't wait on a request stuck against a dead broker past the deadline.
        await Promise.race([delivery.stop(), new Promise((r) => setTimeout(r, 1_000).unref())]);
        stats.keepUnsent();
        await Promise.race([sink.close(), new Promise((r) => setTimeout(r, 1_000).unref())]);
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

/** The three bounded send queues; metadata and stats have their own bounds, so a long outage can't crowd out events. */
function createQueues(settings: CollectorSettings, counters: CollectorCounters) {
  const otherDrop = (q: string) => () => bump(counters.droppedOtherMessages, q);
  return {
    eventsQueue: createSendQueue({
      name: 'events',
      maxBytes: settings.bufferMaxBytes,
      maxMessages: settings.bufferMaxMessages,
      onDrop: (m, reason) => {
        counters.dropped[reason] += m.events;
        if (m.maybeWritten) counters.droppedUnconfirmed += m.events;
      },
    }),
    containersQueue: createSendQueue({
      name: 'containers',
      maxBytes: settings.containersQueueBytes ?? 32 * 1024 * 1024,
      maxMessages: settings.containersQueueMessages ?? 100_000,
      onDrop: otherDrop('containers'),
    }),
    statsQueue: createSendQueue({
      name: 'stats',
      maxBytes: settings.statsQueueBytes ?? 8 * 1024 * 1024,
      maxMessages: settings.statsQueueMessages ?? 10_000,
      onDrop: otherDrop('stats'),
    }),
  };
}

/** The per-message limit; a batch must leave room below it for the EventBatch envelope. */
function checkedMessageLimit(settings: CollectorSettings): number {
  const maxMessageBytes = settings.maxMessageBytes ?? 1_000_000;
  // The envelope (node, boot id, version, numbers) is a few hundred bytes at most.
  if (settings.batchMaxBytes > maxMessageBytes - ENVELOPE_HEADROOM)
    throw new ConfigError(
      `collector.batchMaxBytes (${settings.batchMaxBytes}) must leave ${ENVELOPE_HEADROOM} bytes below the ` +
        `per-message limit (${maxMessageBytes}) for the batch envelope`,
    );
  return maxMessageBytes;
}

/** Records the decoder could not use are captured and dropped, each under its own reason. */
function countUndecoded(counters: CollectorCounters, malformed: number, unattributed: number): void {
  if (malformed > 0) {
    counters.captured += malformed;
    counters.dropped.malformed_record += malformed;
    bump(counters.capturedByKind, 'malformed', malformed);
  }
  if (unattributed > 0) {
    counters.captured += unattributed;
    counters.dropped.unattributed += unattributed;
    bump(counters.capturedByKind, 'unattributed', unattributed);
  }
}
