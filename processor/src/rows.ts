// Event -> ClickHouse row. Column names follow docs/events.md: Avro camelCase field ->
// ClickHouse snake_case column; every row also carries the node, boot id, wall-clock time
// and the join columns. Kind -> table is one table per event kind.
import { PoisonError } from '../../common/errors.js';
import type { EventBytes } from '../../schemas/codec.js';
import type { DeadLetter } from '../../schemas/types.js';
import { isPlainIdentifier } from './clickhouse/identifier.js';
import type { ContainerMeta } from './metadata-table.js';
import type { EventRow, Row } from './partition-batch.js';
import { IDENTITY_COLUMNS, type IdentityColumns } from './workload.js';

/** One decoded event of an EventBatch (schemas/events/*.avsc), tagged with its kind. */
export interface DecodedEvent {
  kind: string;
  tsNs: bigint;
  cgroupId: bigint;
  pid: number;
  tgid: number;
  [field: string]: unknown;
}

/** The EventBatch envelope (schemas/EventBatch.avsc). */
export interface DecodedEventBatch {
  node: string;
  bootId: string;
  collectorVersion: string;
  sequence: bigint;
  producedAtNs: bigint;
  bootEpochNs: bigint | null;
  events: DecodedEvent[];
  /** Where the events' Avro bytes lie in the message (written with the current schema only). */
  eventBytes?: EventBytes;
}

export const DEAD_LETTERS_TABLE = 'dead_letters';
export const EVENT_BATCHES_TABLE = 'event_batches';
export const CONTAINERS_TABLE = 'containers';
export const COLLECTOR_STATS_TABLE = 'collector_stats';
export const INGEST_LOSSES_TABLE = 'ingest_losses';

/**
 * Where a table's rows say which source message they came from: the partition and offset
 * columns, and the wall-clock `time` column when the table has one (it bounds the search
 * to the parts of those days). A batch re-processed after its writer died looks its
 * messages up there before writing again (processor.ts, pendingRows).
 */
export interface SourceColumns {
  partition: string;
  offset: string;
  /** The source topic, where a table holds rows of several topics. */
  topic?: string;
  time?: string;
}

const EVENT_SOURCE: SourceColumns = { partition: 'kafka_partition', offset: 'kafka_offset', time: 'time' };
const SOURCE_COLUMNS: Record<string, SourceColumns> = {
  [DEAD_LETTERS_TABLE]: { partition: 'source_partition', offset: 'source_offset', topic: 'source_topic' },
  [INGEST_LOSSES_TABLE]: { partition: 'source_partition', offset: 'first_offset' },
};

/** The source columns of a table the events path writes (event tables, event_batches, dead letters, losses). */
export function sourceColumns(table: string): SourceColumns {
  return SOURCE_COLUMNS[table] ?? EVENT_SOURCE;
}

/** Loss reason of a message left out because Kafka held it twice (what = 'events'). */
export const DUPLICATE_MESSAGE = 'duplicate_message';

/**
 * Something a batch knowingly did not deliver in full (deploy/clickhouse/migrations/0006):
 * `what` is a raw table (reason older_than_ttl), `topic:<output>` (reason output_skipped,
 * `detail` the Kafka error) or `events` (reason duplicate_message: a copy left out).
 */
export interface LossRow {
  node: string;
  what: string;
  reason: string;
  rows: number;
  detail: string;
}

/** An ingest_losses row for one batch [first, last] of a partition. */
export function lossRow(loss: LossRow, partition: number, first: bigint, last: bigint, nowMs: number): Row {
  return {
    node: loss.node,
    what: loss.what,
    reason: loss.reason,
    rows: loss.rows,
    source_partition: partition,
    first_offset: String(first),
    last_offset: String(last),
    detail: loss.detail,
    recorded_at_ns: String(BigInt(nowMs) * 1_000_000n),
  };
}

const snakeCache = new Map<string, string>();

/** camelCase -> snake_case, computed once per field name. */
export function snake(name: string): string {
  let s = snakeCache.get(name);
  if (s === undefined) {
    s = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    snakeCache.set(name, s);
  }
  return s;
}

/** The table an event kind goes to (one per kind; the kind names are the catalog's). */
export function tableForKind(kind: string): string {
  return kind;
}

/**
 * Wall-clock ns of an event: the collector measures the boot epoch per batch; without it
 * (old collectors) the batch's produce time is the best bound we have.
 */
export function wallClockNs(batch: DecodedEventBatch, tsNs: bigint): bigint {
  return batch.bootEpochNs === null ? batch.producedAtNs : batch.bootEpochNs + tsNs;
}

const NS_PER_S = 1_000_000_000n;

/** Unix ns -> DateTime64(9) text ("seconds.nanoseconds"), exact for any u64. */
export function dateTime64(ns: bigint): string {
  // One bigint -> text conversion, cut at the 9th digit from the right; below 1 s, padded.
  if (ns >= NS_PER_S) {
    const text = String(ns);
    return `${text.slice(0, -9)}.${text.slice(-9)}`;
  }
  const frac = String(ns);
  return `0.${'000000000'.slice(frac.length)}${frac}`;
}

/**
 * The row builder of an event kind, compiled once per kind: one object literal with every
 * column, so each row is a single allocation of its final shape (columns added one by one
 * after a literal spill into a separate, regrown property store). Own keys only: avsc record
 * instances inherit enumerable methods (clone, toBuffer, ...). Field names come from our
 * schemas; a name that is not a plain identifier makes the kind use the generic builder.
 */
type RowBuilder = (
  batch: DecodedEventBatch,
  ev: DecodedEvent,
  time: bigint,
  partition: number,
  offset: string,
) => Row;
const builders = new Map<string, RowBuilder>();
function rowBuilder(ev: DecodedEvent): RowBuilder {
  let build = builders.get(ev.kind);
  if (build !== undefined) return build;
  const fields = Object.keys(ev).filter((key) => key !== 'kind');
  const columns = fields.map(snake);
  build = [...fields, ...columns].every(isPlainIdentifier)
    ? (new Function(
        'v',
        `return function buildRow(batch, ev, time, partition, offset) { return {
          node: batch.node, boot_id: batch.bootId, time,
          ${IDENTITY_COLUMNS.map((c) => `${c}: ''`).join(', ')},
          join_state: 'pending', kafka_partition: partition, kafka_offset: offset,
          ${fields.map((f, i) => `${columns[i]}: v(ev.${f})`).join(',\n')}
        }; };`,
      )(columnValue) as RowBuilder)
    : (batch, e, time, partition, offset) => genericRow(batch, e, time, partition, offset, fields, columns);
  builders.set(ev.kind, build);
  return build;
}

/** An event field as a row carries it: u64 (and arrays of u64: the block latency histogram) as u64Value. */
function columnValue(v: unknown): unknown {
  return typeof v === 'bigint'
    ? u64Value(v)
    : Array.isArray(v) && typeof v[0] === 'bigint'
      ? v.map(u64Value)
      : v;
}

function genericRow(
  batch: DecodedEventBatch,
  ev: DecodedEvent,
  time: bigint,
  partition: number,
  offset: string,
  fields: string[],
  columns: string[],
): Row {
  const row: Row = { node: batch.node, boot_id: batch.bootId, time };
  for (const c of IDENTITY_COLUMNS) row[c] = '';
  row.join_state = 'pending';
  row.kafka_partition = partition;
  row.kafka_offset = offset;
  fields.forEach((f, i) => {
    row[columns[i] as string] = columnValue(ev[f]);
  });
  return row;
}

/**
 * Builds the row with every event field plus envelope, Kafka coordinates and join columns
 * (empty, join_state 'pending', until the join). `offset` is the message's offset as decimal
 * text (converted once per message, not per event). The `time` column is the wall-clock ns
 * themselves, a bigint: the Native block takes it as it is, and JSON gets its DateTime64 text
 * (clickhouse/writer.ts toJsonEachRow): text per row would be most of a row's allocations.
 */
export function buildRow(
  batch: DecodedEventBatch,
  ev: DecodedEvent,
  timeNs: bigint,
  partition: number,
  offset: string,
): Row {
  return rowBuilder(ev)(batch, ev, timeNs, partition, offset);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A 64-bit value as rows carry it: a number while a double holds it exactly (counters, ids,
 * boot-time ns for the first 104 days), its decimal text beyond. Both go to JSON exactly
 * without a replacer, and to a Native column without parsing; a number is no allocation,
 * where the text was one string per u64 field, most of a sample row. Measured on 50k-row
 * batches (min of 120 passes): row building -15%, Native encoding -25%, JSONEachRow -8%.
 */
export function u64Value(v: bigint): number | string {
  return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : String(v);
}

/**
 * The largest wall-clock time a row can carry: DateTime64(9) is an Int64 of ns, so
 * 2262-04-11T23:47:16.854775807Z. A node with a bad clock sends later times, which
 * ClickHouse refuses (DECIMAL_OVERFLOW) for the whole insert.
 */
export const MAX_TIME_NS = 0x7fff_ffff_ffff_ffffn;

/** Throws PoisonError (reason out_of_range) for a wall-clock time no row can hold. */
export function checkTimeNs(timeNs: bigint, what: string): void {
  if (timeNs > MAX_TIME_NS)
    throw new PoisonError(`${what} ${timeNs} ns is past 2262-04-11, the last time ClickHouse can store`, {
      context: { reason: 'out_of_range' },
    });
}

/**
 * Every row of one EventBatch message, or a PoisonError for the whole message: a message
 * lands whole or goes to the dead letters whole, never in part. `rows[i]` is built from
 * `batch.events[i]` (what the enriched topic sends of it kept while `keepEvent`); the
 * event_batches row is separate.
 */
export function buildMessageRows(
  batch: DecodedEventBatch,
  partition: number,
  offset: string,
  keepEvent: boolean,
): { envelope: Row; rows: EventRow[] } {
  checkTimeNs(batch.producedAtNs, 'producedAtNs');
  const envelope = batchRow(batch, partition, offset);
  const rows: EventRow[] = new Array(batch.events.length);
  const bytes = batch.eventBytes;
  for (let i = 0; i < batch.events.length; i++) {
    const ev = batch.events[i] as DecodedEvent;
    const timeNs = wallClockNs(batch, ev.tsNs);
    checkTimeNs(timeNs, `${ev.kind} event time`);
    const columns = buildRow(batch, ev, timeNs, partition, offset);
    rows[i] = {
      columns,
      timeNs,
      bytes: keepEvent ? bytes : undefined,
      index: i,
      event: keepEvent && bytes === undefined ? ev : undefined,
      meta: undefined,
    };
  }
  return { envelope, rows };
}

/** One event_batches row per EventBatch message: the sequence numbers completeness is computed from. */
export function batchRow(batch: DecodedEventBatch, partition: number, offset: string): Row {
  return {
    node: batch.node,
    boot_id: batch.bootId,
    sequence: String(batch.sequence),
    time: dateTime64(batch.producedAtNs),
    events: batch.events.length,
    collector_version: batch.collectorVersion,
    kafka_partition: partition,
    kafka_offset: offset,
  };
}

/**
 * ContainerRecord -> containers dimension row: the record's fields, snake_case (nulls kept
 * where the column is Nullable), plus the identity columns the record's events carry that are
 * not a field of it (workload.ts: the workload, compose labels, Kubernetes container name).
 */
export function containerRow(rec: Record<string, unknown>, identity: IdentityColumns): Row {
  const row: Row = {
    k8s_container_name: identity.k8s_container_name,
    compose_project: identity.compose_project,
    compose_service: identity.compose_service,
    containerd_namespace: identity.containerd_namespace,
    workload: identity.workload,
  };
  for (const key of Object.keys(rec)) {
    const v = rec[key];
    // Null in a non-Nullable column: the column's default (''), written out so every row
    // has the same columns.
    row[snake(key)] =
      v === null && !NULLABLE_CONTAINER_COLUMNS.has(key) ? '' : typeof v === 'bigint' ? String(v) : v;
  }
  return row;
}

/** CollectorStats -> collector_stats row: snake_case, u64 (also inside the maps) as decimal text. */
export function statsRow(rec: Record<string, unknown>): Row {
  const row: Row = {};
  for (const key of Object.keys(rec)) {
    const v = rec[key];
    if (typeof v === 'bigint') row[snake(key)] = String(v);
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const m: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v as Record<string, unknown>))
        m[k] = typeof x === 'bigint' ? String(x) : x;
      row[snake(key)] = m;
    } else row[snake(key)] = v;
  }
  return row;
}

/** A dead letter as a dead_letters row (raw bytes as base64). */
export function deadLetterRow(dl: DeadLetter): Row {
  return {
    source_topic: dl.sourceTopic,
    source_partition: dl.sourcePartition,
    source_offset: String(dl.sourceOffset),
    reason: dl.reason,
    error: dl.error,
    raw: dl.raw.toString('base64'),
    consumer_group: dl.consumerGroup ?? '',
    failed_at_ns: String(dl.failedAtNs),
    raw_size: String(dl.rawSize),
    raw_sha256: dl.rawSha256 ?? '',
  };
}

const NULLABLE_CONTAINER_COLUMNS = new Set([
  'cpuRequestMillis',
  'cpuLimitMillis',
  'memoryRequestBytes',
  'memoryLimitBytes',
  'startedAtNs',
  'stoppedAtNs',
]);

/** ContainerRecord (Avro) -> what the join needs; null-able fields become ''/0. */
export function containerMetaFromRecord(rec: Record<string, unknown>): ContainerMeta {
  return {
    node: String(rec.node),
    cgroupId: BigInt(rec.cgroupId as bigint | number),
    containerId: String(rec.containerId ?? ''),
    runtime: String(rec.runtime ?? ''),
    cgroupPath: String(rec.cgroupPath ?? ''),
    name: String(rec.name ?? ''),
    image: String(rec.image ?? ''),
    labels: (rec.labels as Record<string, string> | undefined) ?? {},
    pod: String(rec.podName ?? ''),
    podUid: String(rec.podUid ?? ''),
    namespace: String(rec.namespace ?? ''),
    workloadKind: String(rec.workloadKind ?? ''),
    workload: String(rec.workloadName ?? ''),
    runtimeNamespace: String(rec.runtimeNamespace ?? ''),
    startedAtNs: toBig(rec.startedAtNs),
    stoppedAtNs: toBig(rec.stoppedAtNs),
    updatedAtNs: toBig(rec.updatedAtNs),
    state: String(rec.state ?? 'UNKNOWN'),
  };
}

function toBig(v: unknown): bigint {
  if (v === null || v === undefined) return 0n;
  return typeof v === 'bigint' ? v : BigInt(v as number);
}
