// The enriched events topic: every event row that landed in ClickHouse, as the typed kernel
// event it arrived as (schemas/events/*.avsc) plus its container, grouped by node. Typed
// rather than the row's columns as text: downstream jobs get numbers as numbers, and the
// encoding is ~5x cheaper and ~6x smaller (docs/processor.md). Containers travel once per
// message, in a list the events index: the container's strings (a 64-character id, image,
// pod) would otherwise be most of every event's bytes.
import type { EventBytes } from '../../schemas/codec.js';
import type * as Avro from '../../schemas/types.js';
import type { EnrichedContainer, JoinState } from '../../schemas/types.js';
import type { EventRow, Row } from './partition-batch.js';
import type { DecodedEvent, JoinIdentity } from './rows.js';

export type { EnrichedContainer, JoinState };

/**
 * The schema's EnrichedEvent, its kernel event as the processor decoded it, or its bytes as
 * they arrived (event `index` of a message written with the current schema).
 */
export type EnrichedEvent = Omit<Avro.EnrichedEvent, 'event'> &
  ({ event: DecodedEvent; bytes?: undefined } | { event?: undefined; bytes: EventBytes; index: number });

/** The schema's EnrichedBatch (schemas/EnrichedBatch.avsc) of such events. */
export type EnrichedBatch = Omit<Avro.EnrichedBatch, 'events'> & { events: EnrichedEvent[] };

/** Under Kafka's default 1,000,000-byte message, with room for the record's own framing. */
export const MAX_ENRICHED_MESSAGE_BYTES = 900_000;

/** Events per message tried first; a message over the byte bound is halved until it fits. */
const EVENTS_PER_MESSAGE = 2_000;

export type EnrichedSource = { partition: number; firstOffset: bigint; lastOffset: bigint };

export interface EnrichedOutput {
  messages: { key: string; value: Buffer }[];
  events: number;
  eventsByNode: Map<string, number>;
  /** Source messages (by kafka_offset) whose events could not be encoded: left out, with the error. */
  failed: Map<string, { error: Error; rows: Row[] }>;
}

/**
 * The enriched messages of one cut batch (key = node), and how many events they carry, from
 * the batch's event rows (each holds its event's bytes, or the decoded event, while the
 * enriched topic is on). When an event can't be encoded, every event of its source
 * message is left out and named in `failed`; the other messages go out as usual.
 */
export function enrichedMessages(
  tables: ReadonlyMap<string, EventRow[]>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
  maxBytes = MAX_ENRICHED_MESSAGE_BYTES,
): EnrichedOutput {
  const byNode = new Map<string, EventRow[]>();
  for (const rows of tables.values()) {
    for (const row of rows) {
      const node = row.columns.node as string;
      let list = byNode.get(node);
      if (list === undefined) {
        list = [];
        byNode.set(node, list);
      }
      list.push(row);
    }
  }
  try {
    return { ...encodeByNode(byNode, source, encode, maxBytes), failed: new Map() };
  } catch {
    // The rare path: find the events that fail alone, then leave out their whole messages.
    const failed = unencodableMessages(byNode, source, encode);
    for (const [node, rows] of byNode) {
      const kept = rows.filter((r) => !failed.has(r.columns.kafka_offset as string));
      if (kept.length > 0) byNode.set(node, kept);
      else byNode.delete(node);
    }
    return { ...encodeByNode(byNode, source, encode, maxBytes), failed };
  }
}

function encodeByNode(
  byNode: Map<string, EventRow[]>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
  maxBytes: number,
): Omit<EnrichedOutput, 'failed'> {
  const out: { key: string; value: Buffer }[] = [];
  const eventsByNode = new Map<string, number>();
  let events = 0;
  for (const [node, rows] of byNode) {
    events += rows.length;
    eventsByNode.set(node, rows.length);
    for (let i = 0; i < rows.length; i += EVENTS_PER_MESSAGE) {
      encodeFitting(node, rows.slice(i, i + EVENTS_PER_MESSAGE), i, source, encode, maxBytes, out);
    }
  }
  return { messages: out, events, eventsByNode };
}

/** Source messages with an event that fails to encode on its own, with all their rows. */
function unencodableMessages(
  byNode: Map<string, EventRow[]>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
): Map<string, { error: Error; rows: Row[] }> {
  const failed = new Map<string, { error: Error; rows: Row[] }>();
  for (const [node, rows] of byNode)
    for (const row of rows) {
      try {
        encode(toEnrichedBatch(node, [row], 0, source));
      } catch (err) {
        const offset = row.columns.kafka_offset as string;
        if (!failed.has(offset)) failed.set(offset, { error: err as Error, rows: [] });
      }
    }
  for (const rows of byNode.values())
    for (const row of rows) failed.get(row.columns.kafka_offset as string)?.rows.push(row.columns);
  return failed;
}

/** Encodes rows as one message, or as two halves (recursively) while over maxBytes. */
function encodeFitting(
  node: string,
  rows: EventRow[],
  firstEvent: number,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
  maxBytes: number,
  out: { key: string; value: Buffer }[],
): void {
  const value = encode(toEnrichedBatch(node, rows, firstEvent, source));
  // One event always fits: it came in a collector message under the same 1 MB bound.
  if (value.length <= maxBytes || rows.length === 1) {
    out.push({ key: node, value });
    return;
  }
  const half = rows.length >>> 1;
  encodeFitting(node, rows.slice(0, half), firstEvent, source, encode, maxBytes, out);
  encodeFitting(node, rows.slice(half), firstEvent + half, source, encode, maxBytes, out);
}

function toEnrichedBatch(
  node: string,
  rows: EventRow[],
  firstEvent: number,
  source: EnrichedSource,
): EnrichedBatch {
  const containers: EnrichedContainer[] = [];
  // By id; more than one entry when the container's record changed within the batch (its
  // name arrived, say): each event keeps the version it was joined with.
  const byId = new Map<string, number[]>();
  // Rows joined with one record share one identity object (partition-batch.ts applyJoin).
  const byIdentity = new Map<JoinIdentity, number>();
  const events: EnrichedEvent[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as EventRow;
    const identity = row.$id;
    const joinState = identity.join_state;
    let container = -1;
    if (joinState === 'joined') {
      const known = byIdentity.get(identity);
      container = known ?? containerIndex(row.columns, containers, byId);
      if (known === undefined) byIdentity.set(identity, container);
    }
    events[i] =
      row.bytes !== undefined
        ? { timeNs: row.timeNs, joinState, container, bytes: row.bytes, index: row.index }
        : { timeNs: row.timeNs, joinState, container, event: row.event as DecodedEvent };
  }
  return {
    node,
    sourcePartition: source.partition,
    firstOffset: source.firstOffset,
    lastOffset: source.lastOffset,
    firstEvent,
    containers,
    events,
  };
}

function containerIndex(row: Row, containers: EnrichedContainer[], byId: Map<string, number[]>): number {
  const id = row.container_id as string;
  let candidates = byId.get(id);
  if (candidates === undefined) {
    candidates = [];
    byId.set(id, candidates);
  }
  for (const index of candidates)
    if (sameContainer(containers[index] as EnrichedContainer, row)) return index;
  const index = containers.length;
  candidates.push(index);
  containers.push({
    containerId: id,
    containerName: row.container_name as string,
    image: row.image as string,
    pod: row.pod as string,
    namespace: row.namespace as string,
    workload: row.workload as string,
    containerRuntime: row.container_runtime as string,
    podUid: row.pod_uid as string,
    k8sContainerName: row.k8s_container_name as string,
    workloadKind: row.workload_kind as string,
    workloadName: row.workload_name as string,
    composeProject: row.compose_project as string,
    composeService: row.compose_service as string,
    containerdNamespace: row.containerd_namespace as string,
  });
  return index;
}

function sameContainer(c: EnrichedContainer, row: Row): boolean {
  return (
    c.containerName === row.container_name &&
    c.image === row.image &&
    c.pod === row.pod &&
    c.namespace === row.namespace &&
    c.workload === row.workload &&
    c.containerRuntime === row.container_runtime &&
    c.podUid === row.pod_uid &&
    c.k8sContainerName === row.k8s_container_name &&
    c.workloadKind === row.workload_kind &&
    c.workloadName === row.workload_name &&
    c.composeProject === row.compose_project &&
    c.composeService === row.compose_service &&
    c.containerdNamespace === row.containerd_namespace
  );
}
