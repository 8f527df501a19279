// One events message into a partition's open batch: decoded and turned into rows as a whole
// (any failure makes the whole message a dead letter, never a part of it), checked against
// the node's sequence (a copy Kafka holds twice is only counted), then each row joined with
// its container record, marked the host's, or left waiting for a record still to come.
// A message of the current schema is read straight into the columns
// (event-batch-reader.ts); any other, and any the reader refuses, is decoded by avsc.
import { isContainerCgroupPath } from '../../collector/src/containers/cgroup-path.js';
import { loadCodecAddon } from '../../common/native-codec.js';
import type { Alert, AlertEngine } from './alerts.js';
import { requireValue } from './dead-letters.js';
import { CGROUP_FIELD, EventBatchReader } from './event-batch-reader.js';
import type { EventColumns, FieldColumn } from './event-columns.js';
import { HOST_JOIN, joinedIdentity, pendingIdentity } from './join-identity.js';
import type { MetadataTable } from './metadata-table.js';
import type { PartitionBatch } from './partition-batch.js';
import type { PipelineDeps } from './partition-pipeline.js';
import type { InMessage } from './processor-types.js';
import {
  batchRow,
  checkMessage,
  type DecodedEvent,
  type DecodedEventBatch,
  EVENT_BATCHES_TABLE,
  type EventBatchHead,
  messageSource,
  tableForKind,
  wallClockNs,
} from './rows.js';

/** What a message is added to: the partition's open batch, its metadata and alert rules. */
export interface Intake {
  batch: PartitionBatch;
  metadata: MetadataTable;
  alerts: AlertEngine;
  /** Alerts raised while adding (a gap in a node's sequence). */
  raised: Alert[];
  partition: number;
  deps: Pick<PipelineDeps, 'codec' | 'stats' | 'enrichedTopic' | 'rawTtlDays'>;
  /** Sends a message that can't be added to the dead-letter path. */
  deadLetter(message: InMessage, err: unknown): void;
}

/** Adds one events message; rows already older than their table's TTL are still written and counted. */
export function addMessage(i: Intake, message: InMessage, now: number): void {
  const { deps: d, batch } = i;
  const offset = BigInt(message.offset);
  batch.addMessage(offset, now);
  d.stats.messages++;
  if (message.value !== null && addRead(i, message.value, offset, now)) return;
  let decoded: DecodedEventBatch;
  try {
    decoded = d.codec.decodeEventBatch(requireValue(message.value), d.enrichedTopic);
  } catch (err) {
    i.deadLetter(message, err);
    return;
  }
  if (isDuplicate(i, decoded, offset, message.value as Buffer, decoded.events.length)) return;
  try {
    checkMessage(decoded);
  } catch (err) {
    i.deadLetter(message, err);
    return;
  }
  const kafkaOffset = String(offset);
  const src = messageSource(decoded, i.partition, kafkaOffset, d.enrichedTopic);
  batch.addRow(EVENT_BATCHES_TABLE, batchRow(decoded, decoded.events.length, i.partition, kafkaOffset));
  const events = decoded.events;
  const expiredBefore = expiredBeforeNs(i, now);
  for (let k = 0; k < events.length; k++) {
    const ev = events[k] as DecodedEvent;
    const timeNs = wallClockNs(decoded, ev.tsNs);
    const cols = batch.addEvent(tableForKind(ev.kind), src, ev, timeNs, k);
    joinRow(i, cols, cols.length - 1, decoded.node, ev.cgroupId, timeNs, ev.path, expiredBefore, now);
  }
  d.stats.events += events.length;
}

/** A message of the current schema read straight into the columns; false: avsc must decode it (nothing kept). */
function addRead(i: Intake, value: Buffer, offset: bigint, now: number): boolean {
  const { deps: d, batch } = i;
  const body = d.codec.eventBatchBody?.(value, d.enrichedTopic);
  const reader = body === undefined ? undefined : EventBatchReader.forCurrentSchema();
  if (reader === undefined) return false;
  batch.reserveTable(EVENT_BATCHES_TABLE); // the envelope's table stays ahead of the event tables
  const kafkaOffset = String(offset);
  const read = reader.read(value, body as number, batch, i.partition, kafkaOffset, d.enrichedTopic);
  if (read === undefined) return false;
  const { head, events, added } = read;
  if (isDuplicate(i, head, offset, value, events)) {
    read.rollback();
    return true;
  }
  batch.addRow(EVENT_BATCHES_TABLE, batchRow(head, events, i.partition, kafkaOffset));
  const expiredBefore = expiredBeforeNs(i, now);
  for (let k = 0; k < added.length; k++) {
    const cols = added.cols[k] as EventColumns;
    const r = added.rows[k] as number;
    const path =
      cols.layout.kind === 'cgroup_mkdir' ? cols.value(cols.layout.fields.indexOf('path'), r) : undefined;
    const cgroupId = (cols.fields[CGROUP_FIELD] as FieldColumn).u64[r] as bigint;
    joinRow(i, cols, r, head.node, cgroupId, cols.time[r] as bigint, path, expiredBefore, now);
  }
  d.stats.events += events;
  return true;
}

/** Checks the envelope's sequence (alerts.ts); a copy of a message already seen is only counted. */
function isDuplicate(
  i: Intake,
  head: EventBatchHead,
  offset: bigint,
  value: Buffer,
  events: number,
): boolean {
  const seen = { node: head.node, bootId: head.bootId, sequence: head.sequence, offset };
  const checksum = loadCodecAddon().crc32c(value);
  const verdict = i.alerts.observeSequence({ ...seen, producedAtNs: head.producedAtNs, checksum }, i.raised);
  if (verdict.duplicate) i.batch.countDuplicate(seen, events);
  return verdict.duplicate;
}

/** Rows with a time before this are already past the raw tables' TTL (-1: no TTL). */
function expiredBeforeNs(i: Intake, now: number): bigint {
  const days = i.deps.rawTtlDays;
  return days === undefined ? -1n : BigInt(now - days * 86_400_000) * 1_000_000n;
}

/**
 * Joins row r of `cols` (cgroup `cgroupId` of `node`) with its container record, or marks
 * it the host's, or lets it wait for a record that has not arrived yet.
 */
function joinRow(
  i: Intake,
  cols: EventColumns,
  r: number,
  node: string,
  cgroupId: bigint,
  timeNs: bigint,
  path: unknown,
  expiredBefore: bigint,
  now: number,
): void {
  const { batch, metadata: table } = i;
  if (timeNs < expiredBefore) batch.countExpired(node, tableForKind(cols.layout.kind));
  if (
    cols.layout.kind === 'cgroup_mkdir' &&
    typeof path === 'string' &&
    !isContainerCgroupPath(path) &&
    !table.hasRecord(node, cgroupId)
  ) {
    table.markHost(node, cgroupId);
    batch.resolveHost(node, cgroupId);
  }
  if (table.isHost(node, cgroupId)) {
    cols.setJoin(r, HOST_JOIN);
    return;
  }
  const meta = table.lookup(node, cgroupId, timeNs);
  if (meta !== undefined) cols.setJoin(r, joinedIdentity(meta));
  else {
    // Not described yet: waits for the runtime's record, keeping what its path gave.
    const known = table.newest(node, cgroupId);
    if (known !== undefined) cols.setJoin(r, pendingIdentity(known));
    if (!batch.addWaiting(cols.view(r), node, cgroupId, timeNs, now)) i.deps.stats.lateOverflow++;
  }
}
