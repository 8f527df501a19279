// The processor's public types: what it needs (a row store, a codec, its topics and
// options) and what it reports (stats, losses, hooks).
import type { TopicNames } from '../../common/kafka-topics.js';
import { createThrottledWarn, type Logger } from '../../common/log.js';
import type { DeadLetter } from '../../schemas/types.js';
import type { Alert, AlertRules } from './alerts.js';
import type { EnrichedBatch } from './enriched.js';
import type { TableRows } from './event-columns.js';
import type { PendingSnapshot } from './pending-budget.js';
import { type DecodedEventBatch, DUPLICATE_MESSAGE, type LossRow } from './rows.js';
import type { OutputOptions } from './side-outputs.js';

/** Where rows go: one insert per (table, batch), deduplicated by token. Throws KtrailError. */
export interface RowSink {
  /**
   * `shareable`: the insert may go in one statement with other partitions' inserts into the
   * table (clickhouse/insert-combiner.ts); true only where a retry checks which rows landed.
   */
  insert(table: string, rows: TableRows, dedupToken: string, shareable?: boolean): Promise<void>;
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
    rows: TableRows,
  ): Promise<Set<string>>;
}

/** Avro in and out (schemas/). Decoders throw PoisonError on bytes they can't read. */
export interface ProcessorCodec {
  /**
   * With `eventBytes` (the enriched topic is on), the batch also says where its events' bytes
   * lie (DecodedEventBatch.eventBytes), when the writer's schema allows copying them.
   */
  decodeEventBatch(value: Buffer, eventBytes?: boolean): DecodedEventBatch;
  /**
   * Where the Avro body of an EventBatch written with the current schema starts, when
   * event-batch-reader.ts may read it (with `eventBytes`: and keep its events' bytes);
   * undefined: decode it with decodeEventBatch.
   */
  eventBatchBody?(value: Buffer, eventBytes: boolean): number | undefined;
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
  /** A batch still under batchTrickleRows at batchSmallMaxMs is cut at batchTrickleMaxMs (default: never). */
  batchTrickleRows?: number;
  batchTrickleMaxMs?: number;
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
  /**
   * Every table's rows of the cut [first, last] are in ClickHouse (synchronous inserts:
   * queryable from now on); its dead letters, side outputs and commit follow.
   */
  onStored?(info: { partition: number; first: bigint; last: bigint }): void;
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
  /** Events of messages Kafka held twice, left out so they are written once (see losses()). */
  duplicateEvents: number;
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
  /** A member of the group whose partitions are all restored: what it owns, it reads. */
  ready(): boolean;
  memberId(): string;
}

/** Every counter at zero. */
export function emptyStats(): ProcessorStats {
  return {
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
    duplicateEvents: 0,
    alreadyWritten: 0,
    alertStateFailures: 0,
    schemaRegistryOutages: 0,
    schemaRegistryHeldBatches: 0,
  };
}

/** The processor's counters and committed losses, and the sampled log of dead letters. */
export class Accounts {
  readonly stats = emptyStats();
  private readonly lossCounts = new Map<string, LossCount>();
  /** Dead letters are in their table and topic; the log gets a sample per reason, not a line each. */
  readonly warnSampled: ReturnType<typeof createThrottledWarn>;

  constructor(log: Logger) {
    this.warnSampled = createThrottledWarn(log);
  }

  /** Counts a committed loss (stats, metrics). */
  readonly countLoss = (loss: LossRow): void => {
    const key = `${loss.what}\u0000${loss.reason}`;
    const c = this.lossCounts.get(key);
    if (c === undefined) this.lossCounts.set(key, { what: loss.what, reason: loss.reason, rows: loss.rows });
    else c.rows += loss.rows;
    if (loss.reason === 'older_than_ttl') this.stats.expiredRows += loss.rows;
    else if (loss.reason === DUPLICATE_MESSAGE) this.stats.duplicateEvents += loss.rows;
    else this.stats.outputSkipped += loss.rows;
  };

  /** Counts a dead letter and logs a sample per reason. */
  readonly noteDeadLetter = (reason: string, fields: Record<string, unknown>): void => {
    this.stats.deadLetters++;
    this.warnSampled(reason, { ...fields, reason }, 'dead letter');
  };

  losses(): LossCount[] {
    return [...this.lossCounts.values()].map((c) => ({ ...c }));
  }
}

// --- what a partition pipeline meets (partition-pipeline.ts) ---------------------------------

/**
 * restoring: waiting for the containers topic to be read (takes no messages);
 * open: taking messages, no write in flight; writing: a cut is being written while the next
 * batch fills; failed: a write failed, rethrown by the next drain; revoked: no longer ours.
 */
export type PipelineState = 'restoring' | 'open' | 'writing' | 'failed' | 'revoked';

/**
 * Commits an events partition's offset; throws a retriable error (common/errors.ts) when the
 * coordinator could not be reached, any other when this member may no longer commit it.
 */
export interface OffsetCommitter {
  commit(partition: number, offset: bigint, metadata: string | null): Promise<void>;
  /** Keeps group membership alive during long writes; never throws. */
  heartbeat(): Promise<void>;
}

/** A message as the pipeline needs it. */
export interface InMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

/** What the source of a batch of messages offers while they are handled. */
export interface BatchControl {
  /** False once the batch is stale (rebalance, stop): the rest is left unresolved. */
  active(): boolean;
  resolveOffset(offset: string): void;
  heartbeat(): Promise<void>;
}
