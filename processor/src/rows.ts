// Event -> ClickHouse row. Column names follow docs/events.md: Avro camelCase field ->
// ClickHouse snake_case column; every row also carries the node, boot id, wall-clock time
// and the join columns. Kind -> table is one table per event kind.
import type { ContainerMeta } from './metadata-table.js';
import type { Row } from './partition-batch.js';

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
}

export const DEAD_LETTERS_TABLE = 'dead_letters';

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

/** Builds the row with every event field plus envelope and empty join columns. */
export function buildRow(batch: DecodedEventBatch, ev: DecodedEvent, timeNs: bigint): Row {
  const row: Row = {
    node: batch.node,
    boot_id: batch.bootId,
    time_ns: timeNs,
    container_id: '',
    container_name: '',
    image: '',
    pod: '',
    namespace: '',
    join_state: 'pending',
  };
  for (const key in ev) {
    if (key === 'kind') continue;
    row[snake(key)] = ev[key];
  }
  return row;
}

/** ContainerRecord (Avro) -> what the join needs; null-able fields become ''/0. */
export function containerMetaFromRecord(rec: Record<string, unknown>): ContainerMeta {
  return {
    node: String(rec.node),
    cgroupId: BigInt(rec.cgroupId as bigint | number),
    containerId: String(rec.containerId ?? ''),
    name: String(rec.name ?? ''),
    image: String(rec.image ?? ''),
    labels: (rec.labels as Record<string, string> | undefined) ?? {},
    pod: String(rec.podName ?? ''),
    namespace: String(rec.namespace ?? ''),
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
