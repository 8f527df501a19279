// The processor: one member of a consumer group over the events and containers topics.
//
// Exactly-once rows come from three rules (DESIGN.md pitfalls 1-4):
// - a batch covers whole messages [first, last] of one partition; before its inserts start,
//   the cut is recorded as commit metadata on the partition's current watermark, so a
//   restart or the next owner re-cuts exactly the same range;
// - every insert carries the token table:topic:partition:first-last, so a repeated insert
//   of that range is dropped by ClickHouse;
// - the offset after `last` is committed only once every table's insert for the batch
//   succeeded, only by a member that still owns the partition in the same generation.
// An insert ClickHouse rejects as bad data (PoisonError) is split by source message with
// deterministic sub-range tokens (splitRejected): the good rows land once, the rejected
// messages' rows become dead letters, and the partition moves on.
// Batches of one partition are flushed one after the other, so the committed watermark
// is always contiguous.
import { createHash } from 'node:crypto';
import type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { isContainerCgroupPath } from '../../collector/src/containers/cgroup-path.js';
import { isRetriable, PoisonError } from '../../common/errors.js';
import { type TopicNames, useNativeCrc32cOrWarn } from '../../common/kafka.js';
import { createLogger, createThrottledWarn, type Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import { AlertStateKeeper, type AlertStateStore } from './alert-state.js';
import { type Alert, AlertEngine, type AlertRules } from './alerts.js';
import { coPartitionedAssigner } from './assigner.js';
import { catchUpToEnd } from './catch-up.js';
import { toJsonEachRow } from './clickhouse/writer.js';
import { boundedDeadLetter, type DeadLetterSource, REASON, reasonOf, requireValue } from './dead-letters.js';
import { type EnrichedBatch, enrichedMessages } from './enriched.js';
import { MetadataTable } from './metadata-table.js';
import {
  applyHost,
  applyJoin,
  type BatchLimits,
  type CutBatch,
  decodeCut,
  dedupToken,
  encodeCut,
  type MessageRows,
  markPending,
  PartitionBatch,
  type Row,
  rowsByMessage,
  splitRejected,
} from './partition-batch.js';
import { PendingBudget, type PendingSnapshot } from './pending-budget.js';
import {
  buildMessageRows,
  COLLECTOR_STATS_TABLE,
  CONTAINERS_TABLE,
  containerMetaFromRecord,
  containerRow,
  DEAD_LETTERS_TABLE,
  type DecodedEvent,
  type DecodedEventBatch,
  deadLetterRow,
  EVENT_BATCHES_TABLE,
  INGEST_LOSSES_TABLE,
  type LossRow,
  lossRow,
  sourceColumns,
  statsRow,
  TIME_NS,
  tableForKind,
} from './rows.js';
import { createSchemaGate } from './schema-gate.js';
import {
  countByKey,
  DEFAULT_OUTPUT_OPTIONS,
  OptionalOutputs,
  type OutputOptions,
  type OutputSend,
} from './side-outputs.js';
import { identityColumns } from './workload.js';

/** Where rows go: one insert per (table, batch), deduplicated by token. Throws KtrailError. */
export interface RowSink {
  insert(table: string, rows: Row[], dedupToken: string): Promise<void>;
  /**
   * The offsets in [first, last] of `partition` whose rows `table` already has (rows.ts
   * sourceColumns; `rows` are the rows about to be written, for bounds on time).
   */
  writtenOffsets(
    table: string,
    topic: string,
    partition: number,
    first: bigint,
    last: bigint,
    rows: Row[],
  ): Promise<Set<string>>;
}

/** Avro in and out (schemas/). Decoders throw PoisonError on bytes they can't read. */
export interface ProcessorCodec {
  decodeEventBatch(value: Buffer): DecodedEventBatch;
  /** The ContainerRecord as Avro decodes it (camelCase fields). */
  decodeContainerRecord(value: Buffer): Record<string, unknown>;
  /** A CollectorStats message (camelCase fields). */
  decodeCollectorStats(value: Buffer): Record<string, unknown>;
  encodeDeadLetter(dl: DeadLetter): Buffer;
  encodeEnriched(batch: EnrichedBatch): Buffer;
  encodeAlert(alert: Alert): Buffer;
  /**
   * With a schema registry: makes the writer schemas of a fetched batch known before it is
   * decoded (undefined when nothing is missing); rejects while the registry can't answer.
   * schema-gate.ts pauses the partition meanwhile.
   */
  prepare?(values: ReadonlyArray<Buffer | null>): Promise<void> | undefined;
}

export interface ProcessorTopics {
  events: string;
  containers: string;
  deadletter: string;
  /** Collector stats (co-partitioned too); unset = not consumed. */
  stats?: string;
  enriched: string;
  alerts: string;
}

/** The processor's topics among common/kafka.ts' topic names. */
export function processorTopics(names: TopicNames): ProcessorTopics {
  return {
    events: names.events,
    containers: names.containers,
    deadletter: names.deadletter,
    enriched: names.eventsEnriched,
    alerts: names.alerts,
    stats: names.stats,
  };
}

export interface ProcessorOptions {
  groupId: string;
  batchMaxRows: number;
  batchMaxMs: number;
  /** A batch with fewer rows is cut at batchSmallMaxMs instead of batchMaxMs (default: never). */
  batchSmallRows?: number;
  batchSmallMaxMs?: number;
  lateMetadataWaitMs: number;
  lateBufferMaxEvents: number;
  /** Rows held across all partitions before fetching pauses (pending-budget.ts); unset = no bound. */
  pendingMaxRows?: number;
  metadataRetentionMs: number;
  enrichedTopic: boolean;
  alerts: AlertRules;
  /** kafkajs partitionsConsumedConcurrently: containers batches must flow while events wait. */
  concurrency?: number;
  /** Give up waiting for the containers topic to be re-read after this long (then join late). */
  restoreTimeoutMs?: number;
  /** Retry backoff bounds for inserts and produces. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  sessionTimeoutMs?: number;
  /** The raw tables' TTL: rows older than this on arrival are counted (ingest_losses); unset = not counted. */
  rawTtlDays?: number;
  /** Time budget and backoff of the Kafka outputs (side-outputs.ts). */
  outputs?: Partial<OutputOptions>;
  /** Heartbeat interval (kafkajs sends them between fetches and batches); below sessionTimeoutMs. */
  heartbeatIntervalMs?: number;
  /** On stop, first wait this long at most for commits to reach the end offsets of that moment. */
  stopCatchUpMs?: number;
}

/** What tests and metrics observe; no behaviour depends on a listener. */
export interface ProcessorHooks {
  onAssigned?(info: { memberId: string; generation: number; assignment: Record<string, number[]> }): void;
  onCommitted?(info: {
    memberId: string;
    generation: number;
    partition: number;
    first: bigint;
    last: bigint;
    rows: number;
  }): void;
  onBatchDropped?(info: { memberId: string; partition: number; first: bigint; last: bigint }): void;
}

export interface ProcessorStats {
  messages: number;
  events: number;
  rowsWritten: number;
  batchesCommitted: number;
  deadLetters: number;
  latePending: number;
  lateOverflow: number;
  lateResolved: number;
  metadataRecords: number;
  metadataEvictions: number;
  insertRetries: number;
  batchesDropped: number;
  alerts: number;
  /** Events published to the enriched topic (a batch rebuilt after a crash publishes again). */
  enrichedEvents: number;
  /** Events, alerts and dead letters not published because their output topic was down (see losses()). */
  outputSkipped: number;
  /** Rows that arrived already older than their raw table's TTL (see losses()). */
  expiredRows: number;
  /** Rows of a re-processed batch found already written, so not written again (exactly-once). */
  alreadyWritten: number;
  /** Alert-state snapshots not saved, or not restored, or stale on restore (alert-state.ts). */
  alertStateFailures: number;
  /** Times the schema registry stopped answering (schema-gate.ts). */
  schemaRegistryOutages: number;
  /** Fetched batches left in Kafka (partition paused) until their schemas could be looked up. */
  schemaRegistryHeldBatches: number;
}

/** A committed loss by what (a table or `topic:<output>`) and reason: the ingest_losses rows, summed. */
export interface LossCount {
  what: string;
  reason: string;
  rows: number;
}

export interface Processor {
  start(): Promise<void>;
  /** Stop consuming, flush and commit what is owned, leave the group. Runs once. */
  stop(): Promise<void>;
  stats(): ProcessorStats;
  /** Rows held against the pending-rows bound, and the partitions it paused. */
  pending(): PendingSnapshot;
  /** Committed losses since start, by what and reason (metrics). */
  losses(): LossCount[];
  ready(): boolean;
  memberId(): string;
}

interface PartitionState {
  partition: number;
  generation: number;
  owned: boolean;
  batch: PartitionBatch;
  /** Cut recorded in commit metadata by an earlier owner: the first batch must end exactly here. */
  forcedCut: bigint | undefined;
  /** Ready once the forced cut was read from the group's committed offsets. */
  init: Promise<void>;
  lock: Promise<void>;
  busy: boolean;
  /** The cut being written (at most one per partition); never rejects, see writeError. */
  writing: Promise<void>;
  writeInFlight: boolean;
  /** A write that failed with something other than a lost partition: rethrown by drain(). */
  writeError: unknown;
  metadata: MetadataTable;
  alerts: AlertEngine;
  pendingDeadLetters: DeadLetter[];
  pendingAlerts: Alert[];
  restored: boolean;
}

class LostPartitionError extends Error {}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function createProcessor(deps: {
  kafka: Kafka;
  topics: ProcessorTopics;
  sink: RowSink;
  codec: ProcessorCodec;
  options: ProcessorOptions;
  hooks?: ProcessorHooks;
  logger?: Logger;
  /** Where alert-rule state is saved for the partition's next owner; unset = memory only. */
  alertState?: AlertStateStore;
}): Processor {
  const { kafka, topics, sink, codec, options } = deps;
  const hooks = deps.hooks ?? {};
  const log = deps.logger ?? createLogger('processor');
  // Dead letters are in their table and topic; the log gets a sample per reason, not a line each.
  const warnDeadLetter = createThrottledWarn(log);
  // The side outputs (enriched events above all) are produced record batches: their CRC-32C
  // from the codec addon, not kafkajs' byte-at-a-time JavaScript (common/kafka.ts).
  useNativeCrc32cOrWarn(log);
  if (options.batchMaxRows <= 0 || options.batchMaxMs <= 0)
    throw new Error('batchMaxRows and batchMaxMs must be > 0');
  const limits: BatchLimits = {
    maxRows: options.batchMaxRows,
    maxMs: options.batchMaxMs,
    smallRows: options.batchSmallRows ?? 0,
    smallMaxMs: Math.max(options.batchMaxMs, options.batchSmallMaxMs ?? 0),
    lateWaitMs: options.lateMetadataWaitMs,
    lateMaxRows: options.lateBufferMaxEvents,
  };
  const retryInitialMs = options.retryInitialMs ?? 200;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const retentionNs = BigInt(options.metadataRetentionMs) * 1_000_000n;
  // With a schema registry, unknown writer-schema ids are looked up before a batch is decoded.
  const schemaGate =
    codec.prepare === undefined
      ? undefined
      : createSchemaGate({
          prepare: codec.prepare.bind(codec),
          pause: (topic, p) => consumer.pause([{ topic, partitions: [p] }]),
          resume: (topic, p) => {
            // An events partition may be held by its restore or by the pending-rows bound too.
            const state = states.get(p);
            if (
              topic === topics.events &&
              (state === undefined || !stillOwned(state) || !state.restored || pending.holds(p))
            )
              return;
            consumer.resume([{ topic, partitions: [p] }]);
          },
          log,
          retryInitialMs,
          retryMaxMs,
        });

  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    partitionAssigners: [coPartitionedAssigner],
    sessionTimeout: options.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: options.heartbeatIntervalMs ?? 3_000,
    maxBytesPerPartition: 4 * 1024 * 1024,
    // How long the broker may hold a fetch that finds no new data. kafkajs' 5 s default
    // delays a partition resumed after its metadata restore (pause/resume below) by up to
    // 5 s, because the fetch in flight covers only the partitions not paused: measured as
    // a 5-6 s latency for the first messages after every assignment.
    maxWaitTimeInMs: Math.min(500, options.batchMaxMs),
  });
  // Every produce is to an output that must not stall ingestion: kafkajs' own retries are
  // kept short, and OptionalOutputs bounds each send and skips (counted) what fails.
  const producer: Producer = kafka.producer({
    allowAutoTopicCreation: false,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 },
  });
  const outputs = new OptionalOutputs(producer, { ...DEFAULT_OUTPUT_OPTIONS, ...options.outputs }, log);
  const rawTtlMs = options.rawTtlDays === undefined ? undefined : options.rawTtlDays * 86_400_000;
  const admin = kafka.admin();
  // Rows held across all partitions are bounded: at the bound, partitions stop taking messages.
  const pending = new PendingBudget(
    options.pendingMaxRows ?? Number.MAX_SAFE_INTEGER,
    {
      pause: (partitions) => consumer.pause([{ topic: topics.events, partitions }]),
      resume: (ps) =>
        consumer.resume([{ topic: topics.events, partitions: ps.filter((p) => states.get(p)?.restored) }]),
    },
    log,
  );

  const stats: ProcessorStats = {
    messages: 0,
    events: 0,
    rowsWritten: 0,
    batchesCommitted: 0,
    deadLetters: 0,
    latePending: 0,
    lateOverflow: 0,
    lateResolved: 0,
    metadataRecords: 0,
    metadataEvictions: 0,
    insertRetries: 0,
    batchesDropped: 0,
    alerts: 0,
    enrichedEvents: 0,
    outputSkipped: 0,
    expiredRows: 0,
    alreadyWritten: 0,
    alertStateFailures: 0,
    schemaRegistryOutages: 0,
    schemaRegistryHeldBatches: 0,
  };
  const lossCounts = new Map<string, LossCount>();
  const alertStates = new AlertStateKeeper({
    store: deps.alertState,
    group: options.groupId,
    topic: topics.events,
    log,
    countFailure: () => stats.alertStateFailures++,
    restoreTimeoutMs: options.restoreTimeoutMs ?? 30_000,
    retryInitialMs,
    retryMaxMs,
  });

  /** Counts a committed loss (stats, metrics). */
  function countLoss(loss: LossRow): void {
    const key = `${loss.what}\u0000${loss.reason}`;
    const c = lossCounts.get(key);
    if (c === undefined) lossCounts.set(key, { what: loss.what, reason: loss.reason, rows: loss.rows });
    else c.rows += loss.rows;
    if (loss.reason === 'older_than_ttl') stats.expiredRows += loss.rows;
    else stats.outputSkipped += loss.rows;
  }

  let generation = 0;
  let memberId = '';
  let running = false;
  let stopping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let heartbeat: (() => Promise<void>) | undefined;
  /** kafkajs' runner state: a commit it gets while stopped returns without committing. */
  let runnerRunning: (() => boolean) | undefined;
  const states = new Map<number, PartitionState>();
  /** Metadata tables survive a rebalance for partitions this member keeps. */
  const tables = new Map<number, MetadataTable>();

  function newState(partition: number, gen: number): PartitionState {
    let metadata = tables.get(partition);
    if (metadata === undefined) {
      metadata = new MetadataTable(retentionNs);
      tables.set(partition, metadata);
    }
    return {
      partition,
      generation: gen,
      owned: true,
      batch: new PartitionBatch(limits),
      forcedCut: undefined,
      init: Promise.resolve(),
      lock: Promise.resolve(),
      busy: false,
      writing: Promise.resolve(),
      writeInFlight: false,
      writeError: undefined,
      metadata,
      alerts: new AlertEngine(options.alerts, (node, cgroupId) => metadata.named(node, cgroupId)),
      pendingDeadLetters: [],
      pendingAlerts: [],
      restored: false,
    };
  }

  /** Serialises work on one partition (eachBatch and the flush timer). */
  function withLock<T>(state: PartitionState, fn: () => Promise<T>): Promise<T> {
    const run = state.lock.then(async () => {
      state.busy = true;
      try {
        return await fn();
      } finally {
        state.busy = false;
      }
    });
    state.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  function stillOwned(state: PartitionState): boolean {
    return state.owned && state.generation === generation && states.get(state.partition) === state;
  }

  function revokeAll(reason: string): void {
    generation++;
    for (const state of states.values()) {
      state.owned = false;
      pending.release(state.batch);
      if (!state.batch.isEmpty()) {
        stats.batchesDropped++;
        hooks.onBatchDropped?.({
          memberId,
          partition: state.partition,
          first: state.batch.firstOffset as bigint,
          last: state.batch.lastOffset as bigint,
        });
      }
    }
    containersRead.clear();
    restoreTargets.clear();
    pending.forgetPaused();
    if (states.size > 0)
      log.info({ reason, generation }, 'partitions revoked; pending batches dropped uncommitted');
    states.clear();
  }

  async function onAssigned(assignment: Record<string, number[]>): Promise<void> {
    const gen = generation;
    const eventsParts = assignment[topics.events] ?? [];
    const containerParts = new Set(assignment[topics.containers] ?? []);
    for (const p of [...tables.keys()]) if (!eventsParts.includes(p)) tables.delete(p);
    const fresh: PartitionState[] = [];
    for (const p of eventsParts) {
      const state = newState(p, gen);
      states.set(p, state);
      fresh.push(state);
    }
    // Events wait until the containers partition was read to its end (Kafka Streams'
    // restore phase), so the first batches join against complete metadata.
    if (fresh.length > 0) consumer.pause([{ topic: topics.events, partitions: eventsParts }]);
    hooks.onAssigned?.({ memberId, generation: gen, assignment });
    const init = (async () => {
      // Without the recorded cuts the first batches could be cut differently than before a
      // crash (and duplicate rows), so keep asking until the broker answers or the
      // assignment is gone.
      let delay = retryInitialMs;
      let fetched: [
        Awaited<ReturnType<Admin['fetchOffsets']>>,
        Awaited<ReturnType<Admin['fetchTopicOffsets']>>,
      ];
      for (;;) {
        try {
          fetched = await Promise.all([
            admin.fetchOffsets({ groupId: options.groupId, topics: [topics.events] }),
            admin.fetchTopicOffsets(topics.containers),
          ]);
          break;
        } catch (err) {
          if (gen !== generation) return;
          log.warn(
            { err: (err as Error).message, delayMs: delay },
            'reading committed offsets failed; retrying',
          );
          await sleep(delay);
          delay = Math.min(delay * 2, retryMaxMs);
        }
      }
      const [committed, ends] = fetched;
      const parts = committed.find((t) => t.topic === topics.events)?.partitions ?? [];
      // Alert state before the first event (events stay paused until markRestored below).
      await Promise.all(
        fresh.map((s) =>
          alertStates.restore(
            s.partition,
            s.alerts,
            parts.find((x) => x.partition === s.partition),
            () => gen === generation,
          ),
        ),
      );
      for (const state of fresh) {
        const c = parts.find((x) => x.partition === state.partition);
        state.forcedCut = decodeCut(c?.metadata);
        if (state.forcedCut !== undefined)
          log.info({ partition: state.partition, cut: String(state.forcedCut) }, 'resuming a recorded cut');
        const end = ends.find((e) => e.partition === state.partition);
        const high = end === undefined ? 0n : BigInt(end.high);
        const readUpTo = containersRead.get(state.partition) ?? -1n;
        if (
          !containerParts.has(state.partition) ||
          end === undefined ||
          end.high === end.low ||
          readUpTo >= high
        )
          markRestored(state);
        else restoreTargets.set(state.partition, { state, high });
      }
    })();
    for (const state of fresh) state.init = init;
    await init;
    setTimeout(() => {
      for (const state of fresh)
        if (stillOwned(state) && !state.restored) {
          log.warn({ partition: state.partition }, 'containers topic not restored in time; events join late');
          markRestored(state);
        }
    }, options.restoreTimeoutMs ?? 30_000).unref();
  }

  const restoreTargets = new Map<number, { state: PartitionState; high: bigint }>();
  /** Next offset to read per containers partition in this generation (restore progress). */
  const containersRead = new Map<number, bigint>();

  function markRestored(state: PartitionState): void {
    restoreTargets.delete(state.partition);
    if (state.restored) return;
    state.restored = true;
    if (stillOwned(state)) consumer.resume([{ topic: topics.events, partitions: [state.partition] }]);
  }

  /** The DeadLetter for a message that could not be handled (counted and logged). */
  function toDeadLetter(
    state: PartitionState,
    topic: string,
    message: { offset: string; key: Buffer | null; value: Buffer | null },
    err: unknown,
    reasonOverride?: string,
  ): DeadLetter {
    const reason = reasonOverride ?? reasonOf(err);
    const error = (err as Error).message ?? String(err);
    noteDeadLetter(reason, { topic, partition: state.partition, offset: message.offset, err: error });
    return boundedDeadLetter(
      sourceOf(state, topic, BigInt(message.offset), message.key),
      reason,
      error,
      message.value ?? Buffer.alloc(0),
    );
  }

  function sourceOf(
    state: PartitionState,
    topic: string,
    offset: bigint,
    key: Buffer | null,
  ): DeadLetterSource {
    return { topic, partition: state.partition, offset, key, consumerGroup: options.groupId };
  }

  /** Counts a dead letter and logs a sample per reason. */
  function noteDeadLetter(reason: string, fields: Record<string, unknown>): void {
    stats.deadLetters++;
    warnDeadLetter(reason, { ...fields, reason }, 'dead letter');
  }

  /**
   * Poison goes to the dead-letter topic and, for events, to the dead_letters table as part
   * of the batch (so it is exactly-once too). Container records are re-read on every
   * assignment, so they only go to the topic (at-least-once) and the counter.
   */
  function deadLetter(
    state: PartitionState,
    topic: string,
    message: { offset: string; key: Buffer | null; value: Buffer | null },
    err: unknown,
  ): void {
    const dl = toDeadLetter(state, topic, message, err);
    state.pendingDeadLetters.push(dl);
    if (topic === topics.events) state.batch.addRow(DEAD_LETTERS_TABLE, deadLetterRow(dl));
  }

  /**
   * One events message: decoded and turned into rows as a whole (any failure makes the whole
   * message a dead letter, never a part of it), then joined. Rows already older than their
   * table's TTL are still written (the rollups keep them) and counted.
   */
  function processEventMessage(
    state: PartitionState,
    message: { offset: string; key: Buffer | null; value: Buffer | null },
    now: number,
  ): void {
    const offset = BigInt(message.offset);
    const batch = state.batch;
    batch.addMessage(offset, now);
    stats.messages++;
    let decoded: DecodedEventBatch;
    let built: ReturnType<typeof buildMessageRows>;
    try {
      decoded = codec.decodeEventBatch(requireValue(message.value));
      built = buildMessageRows(decoded, state.partition, String(offset), options.enrichedTopic);
      state.alerts.observeSequence(
        decoded.node,
        decoded.bootId,
        decoded.sequence,
        decoded.producedAtNs,
        state.pendingAlerts,
      );
    } catch (err) {
      deadLetter(state, topics.events, message, err);
      return;
    }
    const node = decoded.node;
    const table = state.metadata;
    const expiredBeforeNs = rawTtlMs === undefined ? -1n : BigInt(now - rawTtlMs) * 1_000_000n;
    batch.addRow(EVENT_BATCHES_TABLE, built.envelope);
    const events = decoded.events;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i] as DecodedEvent;
      const row = built.rows[i] as Row;
      const timeNs = row[TIME_NS] as bigint;
      const kindTable = tableForKind(ev.kind);
      batch.addRow(kindTable, row);
      if (timeNs < expiredBeforeNs) batch.countExpired(node, kindTable);
      if (ev.kind === 'cgroup_mkdir' && typeof ev.path === 'string' && !isContainerCgroupPath(ev.path)) {
        table.markHost(node, ev.cgroupId);
        batch.resolveHost(node, ev.cgroupId);
      }
      if (table.isHost(node, ev.cgroupId)) {
        applyHost(row);
        continue;
      }
      const meta = table.lookup(node, ev.cgroupId, timeNs);
      if (meta !== undefined) applyJoin(row, meta);
      else {
        // Not described yet: waits for the runtime's record, keeping what its path gave.
        const known = table.newest(node, ev.cgroupId);
        if (known !== undefined) markPending(row, known);
        if (!batch.addWaiting(row, node, ev.cgroupId, timeNs, now)) stats.lateOverflow++;
      }
    }
    stats.events += events.length;
  }

  /**
   * One table's rows of a cut, under the batch's token. When ClickHouse rejects them as bad
   * data (PoisonError), they are split by source message (splitRejected) with sub-inserts
   * under `table:topic:partition:o1-o2` of their offset range; every message still rejected
   * alone becomes a dead letter (appended to `rejected`). Returns the rows that landed.
   *
   * Sound because an insert is all-or-nothing here: a rejected insert left no rows behind
   * (one block: batches stay far below max_insert_block_size, 1,048,449 rows / 256 MB, and
   * constraints and parsing fail the whole block; measured on chDB with 200k rows). Other
   * errors are retried as before: transient ones with backoff, and the ones a person must fix
   * (unknown table, auth, syntax) loudly, never dead-lettered.
   */
  async function insertTable(
    state: PartitionState,
    cut: CutBatch,
    table: string,
    rows: Row[],
    rejected: DeadLetter[],
  ): Promise<Row[]> {
    const insert = (first: bigint, last: bigint, part: Row[]) =>
      insertOrReject(state, table, first, last, part, cut.resumed);
    const rejection = await insert(cut.firstOffset, cut.lastOffset, rows);
    if (rejection === undefined) return rows;
    const messages = rowsByMessage(rows);
    if (messages === undefined) {
      // Rows without their source offset can't be split: a bug, retried loudly.
      log.error({ table, partition: state.partition }, 'rejected rows carry no kafka_offset; not splittable');
      await insertWhole(state, cut, table, rows);
      return rows;
    }
    log.warn(
      {
        table,
        partition: state.partition,
        first: String(cut.firstOffset),
        last: String(cut.lastOffset),
        messages: messages.length,
        err: rejection.message,
      },
      'ClickHouse rejected the batch as bad data; splitting it by source message',
    );
    const bad = await splitRejected(messages, insert, rejection);
    if (bad.length === 0) return rows; // every part landed (the rejection did not repeat)
    const badOffsets = new Set<bigint>();
    for (const b of bad) {
      badOffsets.add(b.offset);
      rejected.push(rejectedDeadLetter(state, table, b));
    }
    return messages.filter((m) => !badOffsets.has(m.offset)).flatMap((m) => m.rows);
  }

  /**
   * Inserts `rows` (the messages [first, last] of the partition) with retries; resolves to
   * the PoisonError when ClickHouse rejects them as bad data. When the rows may be there
   * already, in part or whole (`resumed`: the batch was cut by a writer that died; or a
   * retry, after a failure that may have landed), only the messages the table does not have
   * yet are written: exactly-once for any delay, not only within the tokens ClickHouse
   * remembers (the last dedupWindow inserts of the table).
   */
  async function insertOrReject(
    state: PartitionState,
    table: string,
    first: bigint,
    last: bigint,
    rows: Row[],
    resumed: boolean,
  ): Promise<PoisonError | undefined> {
    return insertWithRetry(state, table, (attempt) =>
      pendingRows(state, table, first, last, rows, resumed || attempt > 0),
    );
  }

  /**
   * One insert under a token, with retries; resolves to the PoisonError when ClickHouse
   * rejects the rows as bad data. For rows that do not say which events message they came
   * from (collector stats): a retry after more than dedupWindow inserts could repeat them.
   */
  function insertByToken(
    state: PartitionState,
    table: string,
    rows: Row[],
    token: string,
  ): Promise<PoisonError | undefined> {
    return insertWithRetry(state, table, async () => ({ rows, token }));
  }

  /**
   * Inserts what `next(attempt)` gives, retrying until written or rejected as bad data (the
   * PoisonError is returned). Rows of our own tables that ClickHouse refuses are our bug:
   * retried loudly, never dead-lettered.
   */
  async function insertWithRetry(
    state: PartitionState,
    table: string,
    next: (attempt: number) => Promise<{ rows: Row[]; token: string }>,
  ): Promise<PoisonError | undefined> {
    let rejection: PoisonError | undefined;
    let attempt = 0;
    await withRetry(state, `insert ${table}`, async () => {
      const part = await next(attempt++);
      if (part.rows.length === 0) return;
      try {
        await sink.insert(table, part.rows, part.token);
      } catch (err) {
        if (err instanceof PoisonError && table !== DEAD_LETTERS_TABLE && table !== INGEST_LOSSES_TABLE)
          rejection = err;
        else throw err;
      }
    });
    return rejection;
  }

  /**
   * The rows of messages [first, last] that `table` does not have yet, and their token: the
   * range's token when none are there; when some are, the token names the rest (the range
   * plus a digest of the offsets found), so a repeat of this same insert is dropped too.
   * An insert is all-or-nothing, so a message's rows in a table are all there or none.
   */
  async function pendingRows(
    state: PartitionState,
    table: string,
    first: bigint,
    last: bigint,
    rows: Row[],
    check: boolean,
  ): Promise<{ rows: Row[]; token: string }> {
    const token = dedupToken(table, topics.events, state.partition, first, last);
    if (!check) return { rows, token };
    const written = await sink.writtenOffsets(table, topics.events, state.partition, first, last, rows);
    if (written.size === 0) return { rows, token };
    const column = sourceColumns(table).offset;
    const rest = rows.filter((r) => !written.has(String(r[column])));
    stats.alreadyWritten += rows.length - rest.length;
    log.info(
      {
        table,
        partition: state.partition,
        first: String(first),
        last: String(last),
        found: rows.length - rest.length,
      },
      'rows of a re-processed batch were already written; writing only the rest',
    );
    const digest = createHash('sha256')
      .update([...written].sort().join(','))
      .digest('hex')
      .slice(0, 16);
    return { rows: rest, token: `${token}~${digest}` };
  }

  /**
   * The dead letter of one message's rows that `table` rejected (counted and logged).
   *
   * `raw` holds the rejected rows as JSONEachRow, whatever format the insert used (a person
   * can read it and re-insert it as is; the format is named in `error`), not the source
   * message's bytes: the batch no longer has those (it keeps rows;
   * holding every message's bytes until its batch commits would grow every batch for a rare
   * path), and only this table refused its rows, while the message's rows in other tables
   * (event_batches, other kinds) landed, so replaying the message would duplicate them. The
   * rows can be inserted as they are once the data or the table is fixed (bounded: see
   * dead-letters.ts). `key` is null: rows do not keep the message key.
   */
  function rejectedDeadLetter(
    state: PartitionState,
    table: string,
    message: MessageRows & { error: PoisonError },
  ): DeadLetter {
    const error = `insert into ${table} rejected ${message.rows.length} rows of this message (raw: the rows as JSONEachRow): ${message.error.message}`;
    const reason = reasonOf(message.error, REASON.insertRejected);
    noteDeadLetter(reason, {
      topic: topics.events,
      partition: state.partition,
      offset: String(message.offset),
      table,
      rows: message.rows.length,
      err: message.error.message,
    });
    return boundedDeadLetter(
      sourceOf(state, topics.events, message.offset, null),
      reason,
      error,
      Buffer.from(toJsonEachRow(message.rows)),
    );
  }

  async function withRetry(state: PartitionState, what: string, fn: () => Promise<void>): Promise<void> {
    let delay = retryInitialMs;
    for (let attempt = 1; ; attempt++) {
      if (!stillOwned(state)) throw new LostPartitionError(what);
      try {
        await fn();
        return;
      } catch (err) {
        if (!stillOwned(state)) throw new LostPartitionError(what);
        stats.insertRetries++;
        // Never skip a failed batch (Vector #24215): a non-retriable insert error that is not
        // a rejection of the rows (those are split off as dead letters by insertTable) is a
        // bug or a schema mismatch, and committing past it would lose rows. Retry, loudly.
        const level = isRetriable(err) ? 'warn' : 'error';
        log[level](
          { err: (err as Error).message, what, attempt, delayMs: delay, partition: state.partition },
          'write failed; retrying',
        );
        await sleepWithHeartbeat(delay);
        delay = Math.min(delay * 2, retryMaxMs);
      }
    }
  }

  async function beat(): Promise<void> {
    try {
      await heartbeat?.();
    } catch {
      // A failing heartbeat means a rebalance; stillOwned() turns false via the events.
    }
  }

  async function sleepWithHeartbeat(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await sleep(Math.min(1_000, until - Date.now()));
      await beat();
    }
  }

  async function commit(state: PartitionState, offset: bigint, metadata: string | null): Promise<void> {
    if (!stillOwned(state)) throw new LostPartitionError('commit');
    try {
      await commitOffsetsOrThrow([
        { topic: topics.events, partition: state.partition, offset: String(offset), metadata },
      ]);
    } catch (err) {
      // A commit refused by the coordinator means our generation is over.
      log.warn(
        { err, partition: state.partition },
        'commit refused; dropping the partition until the rejoin',
      );
      state.owned = false;
      throw new LostPartitionError('commit');
    }
  }

  /**
   * consumer.commitOffsets that never returns without committing: kafkajs returns quietly
   * when its runner has stopped (a crash, a stop), before or during the commit.
   */
  async function commitOffsetsOrThrow(offsets: Parameters<Consumer['commitOffsets']>[0]): Promise<void> {
    if (runnerRunning?.() === false) throw new Error('consumer not running: nothing committed');
    await consumer.commitOffsets(offsets);
    if (runnerRunning?.() === false)
      throw new Error('consumer stopped during the commit: it may not have landed');
  }

  /**
   * Cuts the open batch and starts writing it (insert every table, side outputs, commit the
   * watermark), without waiting for the write: consumption goes on into the next batch while
   * ClickHouse inserts. At most one cut per partition is in flight, because the commit
   * metadata records one cut range: the next cut first waits here for the previous write.
   */
  async function flush(state: PartitionState): Promise<void> {
    await drain(state);
    if (state.batch.isEmpty()) return;
    const held = state.batch;
    const cut = state.batch.cut();
    const wasForced = state.forcedCut !== undefined;
    state.forcedCut = undefined; // the batch after a forced cut is an ordinary one
    state.batch = new PartitionBatch(limits);
    const deadLetters = state.pendingDeadLetters;
    state.pendingDeadLetters = [];
    const alerts = state.pendingAlerts;
    state.pendingAlerts = [];
    stats.latePending += cut.latePending;
    cut.resumed = wasForced;
    state.writeInFlight = true;
    state.writing = writeCut(state, cut, wasForced, deadLetters, alerts)
      .catch((err: unknown) => {
        log.error({ err, partition: state.partition }, 'writing a batch failed');
        state.writeError = err;
      })
      .finally(() => {
        state.writeInFlight = false;
        pending.release(held);
        cutIfDue(state); // what accumulated meanwhile may be due already
      });
  }

  /**
   * Whether consumption must stop to cut now. While a write is in flight a due batch keeps
   * growing, up to its row bound, instead: slow inserts then make fewer, bigger inserts
   * rather than a stalled consumer (the write's end cuts it, see flush).
   */
  function mustCut(state: PartitionState, now: number): boolean {
    if (!state.batch.shouldCut(now, state.forcedCut)) return false;
    return !state.writeInFlight || state.forcedCut !== undefined || state.batch.rows >= limits.maxRows;
  }

  /** Cuts a partition's batch when it is due and nothing else holds it (timer, end of a write). */
  function cutIfDue(state: PartitionState): void {
    // A failed write is left for eachBatch to rethrow (see drain): no cut may commit past it.
    if (state.busy || state.writeInFlight || state.writeError !== undefined || !stillOwned(state)) return;
    // A forced cut is only honoured from eachBatch (it needs its exact last message).
    if (state.forcedCut !== undefined || !state.batch.shouldCut(Date.now(), undefined)) return;
    withLock(state, () =>
      state.batch.shouldCut(Date.now(), state.forcedCut) ? flush(state) : Promise.resolve(),
    ).catch((err) => log.error({ err, partition: state.partition }, 'timed flush failed'));
  }

  /** Waits for the partition's write in flight; rethrows its failure (eachBatch or stop sees it). */
  async function drain(state: PartitionState): Promise<void> {
    await state.writing;
    const err = state.writeError;
    if (err !== undefined) {
      state.writeError = undefined;
      throw err;
    }
  }

  /**
   * Writes one cut: every table's rows (rejected messages split off as dead letters), the
   * side outputs built (a message whose output can't be built becomes a dead letter), the
   * dead letters, the outputs published (skipped and counted when their topic is down),
   * the batch's losses, then the commit. Every insert carries the batch's token.
   */
  async function writeCut(
    state: PartitionState,
    cut: CutBatch,
    wasForced: boolean,
    deadLetters: DeadLetter[],
    alerts: Alert[],
  ): Promise<void> {
    const committedLosses: LossRow[] = [];
    try {
      // Record the cut before any insert, unless an earlier owner already did.
      if (!wasForced) await commit(state, cut.firstOffset, encodeCut(cut.lastOffset));
      let rejectedRows = 0;
      const rejected: DeadLetter[] = [];
      for (const [table, rows] of cut.tables) {
        if (rows.length === 0 || table === DEAD_LETTERS_TABLE) continue;
        const landed = await insertTable(state, cut, table, rows, rejected);
        if (landed !== rows) {
          // Side outputs (alerts, enriched) describe only rows that are in ClickHouse.
          rejectedRows += rows.length - landed.length;
          cut.tables.set(table, landed);
        }
        await beat(); // a batch of many tables can take longer than a session timeout
      }
      const built = buildSideOutputs(state, cut, alerts);
      // Dead letters after the tables, under the batch's token like every table: they include
      // the rows rejected above, and a rebuilt batch rejects the same messages (its repeat is
      // dropped).
      const newDead = [...rejected, ...built.deadLetters];
      const deadRows = [...(cut.tables.get(DEAD_LETTERS_TABLE) ?? []), ...newDead.map(deadLetterRow)];
      await insertWhole(state, cut, DEAD_LETTERS_TABLE, deadRows);
      const allDead = [...deadLetters, ...newDead];
      const skipped = await publishSideOutputs(state, cut, allDead, built.sends);
      committedLosses.push(...expiredLosses(cut), ...built.losses, ...skipped);
      const now = Date.now();
      const lossRows = committedLosses.map((l) =>
        lossRow(l, state.partition, cut.firstOffset, cut.lastOffset, now),
      );
      await insertWhole(state, cut, INGEST_LOSSES_TABLE, lossRows);
      await alertStates.save(state.partition, state.alerts, cut, () => stillOwned(state));
      await commit(state, cut.lastOffset + 1n, null);
      cut.rows += newDead.length - rejectedRows;
    } catch (err) {
      if (err instanceof LostPartitionError) {
        stats.batchesDropped++;
        hooks.onBatchDropped?.({
          memberId,
          partition: state.partition,
          first: cut.firstOffset,
          last: cut.lastOffset,
        });
        return;
      }
      throw err;
    }
    for (const loss of committedLosses) countLoss(loss);
    stats.rowsWritten += cut.rows;
    stats.batchesCommitted++;
    hooks.onCommitted?.({
      memberId,
      generation: state.generation,
      partition: state.partition,
      first: cut.firstOffset,
      last: cut.lastOffset,
      rows: cut.rows,
    });
  }

  /** One table's rows of a cut, retried until written (or the partition is lost); never split. */
  async function insertWhole(
    state: PartitionState,
    cut: CutBatch,
    table: string,
    rows: Row[],
  ): Promise<void> {
    if (rows.length === 0) return;
    const rejection = await insertOrReject(state, table, cut.firstOffset, cut.lastOffset, rows, cut.resumed);
    // Only dead letters and losses come here un-splittable; any other rejection is a bug.
    if (rejection !== undefined) throw rejection;
  }

  /** The cut's rows that arrived older than their raw table's TTL, as losses. */
  function expiredLosses(cut: CutBatch): LossRow[] {
    const out: LossRow[] = [];
    for (const [node, perTable] of cut.expired)
      for (const [table, rows] of perTable)
        out.push({
          node,
          what: table,
          reason: 'older_than_ttl',
          rows,
          detail: `TTL ${options.rawTtlDays} days`,
        });
    return out;
  }

  /**
   * The alerts and enriched messages of a cut, built before anything is published. Alert
   * rules and the enriched encoder run per row; a row that makes either throw turns its
   * whole source message into one dead letter (reason output_failed) and leaves it out of
   * the outputs, while its rows stay in ClickHouse. A failure that can't be pinned on a
   * message skips that output for this batch (counted as a loss).
   */
  function buildSideOutputs(
    state: PartitionState,
    cut: CutBatch,
    alerts: Alert[],
  ): { sends: OutputSend[]; deadLetters: DeadLetter[]; losses: LossRow[] } {
    const failed = new Map<string, { error: string; rows: Row[] }>();
    const fail = (offset: string, error: string, rows: Row[]) => {
      const f = failed.get(offset);
      if (f === undefined) failed.set(offset, { error, rows });
      else f.rows.push(...rows);
    };
    for (const [table, rows] of cut.tables) {
      if (table === DEAD_LETTERS_TABLE || table === EVENT_BATCHES_TABLE) continue;
      for (const row of rows) {
        try {
          state.alerts.observe(table, row, alerts);
        } catch (err) {
          fail(row.kafka_offset as string, `alert rules: ${(err as Error).message}`, [row]);
        }
      }
    }
    const losses: LossRow[] = [];
    const sends: OutputSend[] = [];
    const alertMessages: { key: string | null; value: Buffer }[] = [];
    for (const a of alerts) {
      try {
        alertMessages.push({ key: a.node, value: codec.encodeAlert(a) });
      } catch (err) {
        log.error(
          { err: (err as Error).message, kind: a.kind, node: a.node },
          'alert not encodable; skipped',
        );
        losses.push({
          node: a.node,
          what: `topic:alerts`,
          reason: 'output_skipped',
          rows: 1,
          detail: 'encode_failed',
        });
      }
    }
    sends.push({
      output: 'alerts',
      topic: topics.alerts,
      messages: alertMessages,
      events: alertMessages.length,
      eventsByNode: countByKey(alertMessages),
    });
    if (options.enrichedTopic) {
      const source = { partition: state.partition, firstOffset: cut.firstOffset, lastOffset: cut.lastOffset };
      try {
        const enriched = enrichedMessages(cut.tables, source, codec.encodeEnriched);
        for (const [offset, f] of enriched.failed)
          fail(offset, `enriched output: ${f.error.message}`, f.rows);
        sends.unshift({
          output: 'enriched',
          topic: topics.enriched,
          messages: enriched.messages,
          events: enriched.events,
          eventsByNode: enriched.eventsByNode,
        });
      } catch (err) {
        log.error(
          { err: (err as Error).message, partition: state.partition },
          'enriched output not buildable',
        );
        for (const [node, rows] of eventsPerNode(cut))
          losses.push({
            node,
            what: 'topic:enriched',
            reason: 'output_skipped',
            rows,
            detail: 'encode_failed',
          });
      }
    }
    const deadLetters: DeadLetter[] = [];
    for (const [offset, f] of failed) {
      noteDeadLetter(REASON.outputFailed, {
        topic: topics.events,
        partition: state.partition,
        offset,
        err: f.error,
      });
      const raw = Buffer.from(toJsonEachRow(f.rows));
      deadLetters.push(
        boundedDeadLetter(
          sourceOf(state, topics.events, BigInt(offset), null),
          REASON.outputFailed,
          f.error,
          raw,
        ),
      );
    }
    return { sends, deadLetters, losses };
  }

  /** Events of a cut per node (rows built from an event). */
  function eventsPerNode(cut: CutBatch): Map<string, number> {
    const out = new Map<string, number>();
    for (const [table, rows] of cut.tables) {
      if (table === DEAD_LETTERS_TABLE || table === EVENT_BATCHES_TABLE) continue;
      for (const row of rows) out.set(row.node as string, (out.get(row.node as string) ?? 0) + 1);
    }
    return out;
  }

  /**
   * Publishes dead letters, enriched events and alerts; an output that is down is skipped,
   * and what it skipped comes back as losses. An output that just went down raises an alert
   * (published with this batch's alerts, unless the alerts topic is the one down).
   */
  async function publishSideOutputs(
    state: PartitionState,
    cut: CutBatch,
    deadLetters: DeadLetter[],
    sends: OutputSend[],
  ): Promise<LossRow[]> {
    const all: OutputSend[] = [
      {
        output: 'deadletter',
        topic: topics.deadletter,
        messages: deadLetters.map((d) => ({ key: null, value: codec.encodeDeadLetter(d) })),
        events: deadLetters.length,
        eventsByNode: new Map([['', deadLetters.length]]),
      },
      ...sends,
    ];
    const losses: LossRow[] = [];
    for (const send of all) {
      if (send.messages.length === 0) continue;
      if (!stillOwned(state)) throw new LostPartitionError(`publish ${send.output}`);
      const result = await outputs.publish(send);
      if (!result.skipped) {
        if (send.output === 'enriched') stats.enrichedEvents += send.events;
        if (send.output === 'alerts') stats.alerts += send.events;
        continue;
      }
      for (const [node, rows] of send.eventsByNode)
        losses.push({
          node,
          what: `topic:${send.output}`,
          reason: 'output_skipped',
          rows,
          detail: result.reason,
        });
      if (result.wentDown && send.output !== 'alerts') {
        const alert = outputDownAlert(state, cut, send, result.reason);
        const alertsSend = all.find((x) => x.output === 'alerts');
        if (alertsSend !== undefined) {
          alertsSend.messages.push({ key: null, value: codec.encodeAlert(alert) });
          alertsSend.events++;
          alertsSend.eventsByNode.set('', (alertsSend.eventsByNode.get('') ?? 0) + 1);
        }
      }
    }
    return losses;
  }

  function outputDownAlert(state: PartitionState, cut: CutBatch, send: OutputSend, reason: string): Alert {
    return {
      kind: 'output_skipped',
      node: '',
      container: '',
      containerName: '',
      namespace: '',
      pod: '',
      timeNs: BigInt(Date.now()) * 1_000_000n,
      details: {
        output: send.output,
        topic: send.topic,
        reason,
        partition: String(state.partition),
        firstOffset: String(cut.firstOffset),
        lastOffset: String(cut.lastOffset),
      },
    };
  }

  async function onEventsBatch(payload: EachBatchPayload, state: PartitionState): Promise<void> {
    const { batch, resolveOffset, isRunning, isStale } = payload;
    await state.init;
    await withLock(state, async () => {
      let lastBeat = Date.now();
      for (const message of batch.messages) {
        if (!isRunning() || isStale() || !stillOwned(state)) return;
        // At the pending-rows bound the rest stays in Kafka (unresolved) until the resume.
        if (pending.holdBack(state.partition, state.forcedCut !== undefined && !state.batch.isEmpty()))
          return;
        const now = Date.now();
        const before = state.batch.rows;
        processEventMessage(state, message, now);
        pending.add(state.batch, state.batch.rows - before);
        resolveOffset(message.offset);
        if (mustCut(state, now) || state.writeError !== undefined) await flush(state);
        if (now - lastBeat > 1_000) {
          lastBeat = now;
          await payload.heartbeat();
        }
      }
    });
  }

  /**
   * Container records: applied to the partition's metadata table (joining rows that wait
   * for them), then written to the containers dimension table. That table is a
   * ReplacingMergeTree read through containers_latest, so the re-reads every assignment
   * does are harmless there; its insert is best effort (the join in memory does not
   * depend on it, and the next assignment writes the records again).
   */
  async function onContainersBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset } = payload;
    const p = batch.partition;
    const metadata = tables.get(p);
    const state = states.get(p);
    if (metadata === undefined || batch.messages.length === 0) return;
    const rows: Row[] = [];
    for (const message of batch.messages) {
      // Tombstones (null value) carry no version; the record's REMOVED state evicts instead.
      if (message.value === null) continue;
      let rec: Record<string, unknown>;
      try {
        rec = codec.decodeContainerRecord(message.value);
      } catch (err) {
        if (state !== undefined) deadLetter(state, topics.containers, message, err);
        else
          warnDeadLetter(
            'container_skipped',
            { err, partition: p, offset: message.offset },
            'undecodable container record skipped',
          );
        continue;
      }
      const meta = containerMetaFromRecord(rec);
      metadata.upsert(meta);
      rows.push(containerRow(rec, identityColumns(meta)));
      stats.metadataRecords++;
      if (state !== undefined)
        stats.lateResolved +=
          meta.containerId === ''
            ? state.batch.resolveHost(meta.node, meta.cgroupId)
            : state.batch.resolve(meta.node, meta.cgroupId, (at) =>
                metadata.lookup(meta.node, meta.cgroupId, at),
              );
    }
    const next = BigInt(batch.lastOffset()) + 1n;
    containersRead.set(p, next);
    const target = restoreTargets.get(p);
    if (target !== undefined && next >= target.high) markRestored(target.state);
    if (rows.length > 0) {
      const token = dedupToken(
        CONTAINERS_TABLE,
        topics.containers,
        p,
        BigInt(batch.firstOffset() ?? '0'),
        next - 1n,
      );
      try {
        await sink.insert(CONTAINERS_TABLE, rows, token);
      } catch (err) {
        log.error(
          { err: (err as Error).message, partition: p },
          'containers dimension insert failed; joins in memory are unaffected',
        );
      }
    }
    for (const message of batch.messages) resolveOffset(message.offset);
  }

  /**
   * Collector stats -> collector_stats, one insert per message: they are a few per node per
   * minute, and a token per offset (collector_stats:topic:partition:o-o) makes every retry
   * after a crash or a rebalance a no-op without any cut bookkeeping. The stats offset is
   * committed after the inserts, only while partition p is still ours.
   */
  async function onStatsBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset } = payload;
    const topic = batch.topic;
    const state = states.get(batch.partition);
    if (state === undefined || !stillOwned(state)) return;
    await state.init;
    for (const message of batch.messages) {
      if (!payload.isRunning() || payload.isStale() || !stillOwned(state)) return;
      const offset = BigInt(message.offset);
      let table = COLLECTOR_STATS_TABLE;
      let row: Row;
      try {
        row = statsRow(codec.decodeCollectorStats(requireValue(message.value)));
      } catch (err) {
        const dl = toDeadLetter(state, topic, message, err);
        await produceDeadLetter(dl);
        table = DEAD_LETTERS_TABLE;
        row = deadLetterRow(dl);
      }
      try {
        const token = (t: string) => dedupToken(t, topic, batch.partition, offset, offset);
        const rejection = await insertByToken(state, table, [row], token(table));
        if (rejection !== undefined) {
          // One message is one row here, and the message is at hand: raw is its bytes.
          const dl = toDeadLetter(state, topic, message, rejection, REASON.insertRejected);
          await produceDeadLetter(dl);
          await withRetry(state, `insert ${DEAD_LETTERS_TABLE}`, () =>
            sink.insert(DEAD_LETTERS_TABLE, [deadLetterRow(dl)], token(DEAD_LETTERS_TABLE)),
          );
        }
        await commitOffsetsOrThrow([{ topic, partition: batch.partition, offset: String(offset + 1n) }]);
      } catch (err) {
        if (err instanceof LostPartitionError) return;
        log.warn({ err: (err as Error).message, partition: batch.partition }, 'stats commit refused');
        return;
      }
      resolveOffset(message.offset);
      await beat();
    }
  }

  /** One dead letter to the topic; a skip (topic down) is counted, the table has the dead letter anyway. */
  async function produceDeadLetter(dl: DeadLetter): Promise<void> {
    const result = await outputs.publish({
      output: 'deadletter',
      topic: topics.deadletter,
      messages: [{ key: null, value: codec.encodeDeadLetter(dl) }],
      events: 1,
      eventsByNode: new Map([['', 1]]),
    });
    if (result.skipped)
      countLoss({
        node: '',
        what: 'topic:deadletter',
        reason: 'output_skipped',
        rows: 1,
        detail: result.reason,
      });
  }

  function tick(): void {
    for (const state of states.values()) cutIfDue(state);
  }

  let lastEviction = 0;
  function evict(): void {
    const now = Date.now();
    if (now - lastEviction < 60_000) return;
    lastEviction = now;
    const nowNs = BigInt(now) * 1_000_000n;
    for (const t of tables.values()) stats.metadataEvictions += t.evictStopped(nowNs);
  }

  return {
    async start() {
      await Promise.all([producer.connect(), admin.connect(), consumer.connect()]);
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        memberId = e.payload.memberId;
        revokeAll('rejoined');
        onAssigned(e.payload.memberAssignment).catch((err) => log.error({ err }, 'assignment setup failed'));
      });
      consumer.on(consumer.events.REBALANCING, () => revokeAll('rebalancing'));
      consumer.on(consumer.events.CRASH, (e) => {
        revokeAll('consumer crashed');
        log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
      });
      // Containers: never committed, so every assignment re-reads the compacted topic from
      // the start; events: from the committed watermark (or the beginning for a new group).
      const subscribed = [topics.events, topics.containers];
      if (topics.stats !== undefined) subscribed.push(topics.stats);
      await consumer.subscribe({ topics: subscribed, fromBeginning: true });
      running = true;
      timer = setInterval(
        () => {
          tick();
          evict();
        },
        Math.max(20, Math.min(200, options.batchMaxMs / 5)),
      );
      timer.unref();
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: options.concurrency ?? 4,
        eachBatch: async (payload) => {
          heartbeat = payload.heartbeat;
          runnerRunning = payload.isRunning;
          if (schemaGate !== undefined && !(await schemaGate.admit(payload.batch))) return;
          if (payload.batch.topic === topics.stats) {
            await onStatsBatch(payload);
            return;
          }
          if (payload.batch.topic === topics.containers) {
            await onContainersBatch(payload);
            return;
          }
          const state = states.get(payload.batch.partition);
          if (state === undefined || !stillOwned(state)) return;
          await onEventsBatch(payload, state);
        },
      });
    },
    stop() {
      stopping ??= (async () => {
        // What the collectors sent before they stopped (an ordered `ktrail stop` stops them
        // first) is written and committed before this member leaves (catch-up.ts).
        const owned = [...states.values()].filter(stillOwned).map((s) => s.partition);
        if ((options.stopCatchUpMs ?? 0) > 0 && owned.length > 0) {
          const committed = topics.stats === undefined ? [topics.events] : [topics.events, topics.stats];
          const r = await catchUpToEnd(admin, options.groupId, committed, owned, options.stopCatchUpMs ?? 0);
          if (r.caughtUp) log.info({ ms: r.ms, partitions: owned }, 'stop: caught up with the end offsets');
          else log.warn({ ms: r.ms, behind: r.behind }, 'stop: not caught up; the next owner reads the rest');
        }
        if (timer !== undefined) clearInterval(timer);
        schemaGate?.close();
        // Pause fetching, flush what each owned partition holds, then leave (LeaveGroup: a
        // restarted member gets the partitions at once, without waiting for a session timeout).
        consumer.pause([{ topic: topics.events }, { topic: topics.containers }]);
        await Promise.all(
          [...states.values()].map((s) =>
            withLock(s, async () => {
              if (stillOwned(s) && s.forcedCut === undefined) await flush(s);
              await drain(s);
            }).catch((err) => log.error({ err, partition: s.partition }, 'final flush failed')),
          ),
        );
        running = false;
        await consumer.disconnect();
        await Promise.all([producer.disconnect(), admin.disconnect()]);
      })();
      return stopping;
    },
    stats: () => {
      const gate = schemaGate?.stats();
      return {
        ...stats,
        schemaRegistryOutages: gate?.outages ?? 0,
        schemaRegistryHeldBatches: gate?.heldBatches ?? 0,
      };
    },
    pending: () => pending.snapshot(),
    losses: () => [...lossCounts.values()].map((c) => ({ ...c })),
    ready: () => running && [...states.values()].every((s) => s.restored),
    memberId: () => memberId,
  };
}
