// The enriched events topic: every event row that landed in ClickHouse, as the typed kernel
// event it arrived as (schemas/events/*.avsc) plus its container, grouped by node. Typed
// rather than the row's columns as text: downstream jobs get numbers as numbers, and the
// encoding is ~5x cheaper and ~6x smaller (docs/processor.md). Containers travel once per
// message, in a list the events index: the container's strings (a 64-character id, image,
// pod) would otherwise be most of every event's bytes.
import type { EventBytes } from '../../schemas/codec.js';
import type * as Avro from '../../schemas/types.js';
import type { EnrichedContainer, JoinState } from '../../schemas/types.js';
import type { EventColumns } from './event-columns.js';
import type { Row } from './partition-batch.js';
import type { DecodedEvent, JoinIdentity, MessageSource } from './rows.js';

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

/** Where row r of `t` came from: its message's envelope, Kafka coordinates and event bytes. */
const sourceOf = (t: EventColumns, r: number) => t.sources[t.msg[r] as number] as MessageSource;

/** One node's events, in cut order: row rows[i] of table tables[i]. */
interface NodeEvents {
  tables: EventColumns[];
  rows: number[];
}

/**
 * The enriched messages of one cut batch (key = node), and how many events they carry, from
 * the batch's event rows (each holds its event's bytes, or the decoded event, while the
 * enriched topic is on). When an event can't be encoded, every event of its source
 * message is left out and named in `failed`; the other messages go out as usual.
 */
export function enrichedMessages(
  tables: ReadonlyMap<string, EventColumns>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
  maxBytes = MAX_ENRICHED_MESSAGE_BYTES,
): EnrichedOutput {
  const byNode = new Map<string, NodeEvents>();
  for (const table of tables.values()) {
    for (let r = 0; r < table.length; r++) {
      const node = sourceOf(table, r).node;
      let list = byNode.get(node);
      if (list === undefined) {
        list = { tables: [], rows: [] };
        byNode.set(node, list);
      }
      list.tables.push(table);
      list.rows.push(r);
    }
  }
  try {
    return { ...encodeByNode(byNode, source, encode, maxBytes), failed: new Map() };
  } catch {
    // The rare path: find the events that fail alone, then leave out their whole messages.
    const failed = unencodableMessages(byNode, source, encode);
    for (const [node, list] of byNode) {
      const kept: NodeEvents = { tables: [], rows: [] };
      list.rows.forEach((r, i) => {
        const t = list.tables[i] as EventColumns;
        if (failed.has(sourceOf(t, r).kafka_offset)) return;
        kept.tables.push(t);
        kept.rows.push(r);
      });
      if (kept.rows.length > 0) byNode.set(node, kept);
      else byNode.delete(node);
    }
    return { ...encodeByNode(byNode, source, encode, maxBytes), failed };
  }
}

function encodeByNode(
  byNode: Map<string, NodeEvents>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
  maxBytes: number,
): Omit<EnrichedOutput, 'failed'> {
  const out: { key: string; value: Buffer }[] = [];
  const eventsByNode = new Map<string, number>();
  let events = 0;
  for (const [node, list] of byNode) {
    const n = list.rows.length;
    events += n;
    eventsByNode.set(node, n);
    for (let i = 0; i < n; i += EVENTS_PER_MESSAGE)
      encodeFitting({ node, list, source, encode, maxBytes, out }, i, Math.min(n, i + EVENTS_PER_MESSAGE));
  }
  return { messages: out, events, eventsByNode };
}

/** Source messages with an event that fails to encode on its own, with all their rows. */
function unencodableMessages(
  byNode: Map<string, NodeEvents>,
  source: EnrichedSource,
  encode: (batch: EnrichedBatch) => Buffer,
): Map<string, { error: Error; rows: Row[] }> {
  const failed = new Map<string, { error: Error; rows: Row[] }>();
  for (const [node, list] of byNode)
    for (let i = 0; i < list.rows.length; i++) {
      try {
        encode(toEnrichedBatch(node, list, i, i + 1, source));
      } catch (err) {
        const offset = sourceOf(list.tables[i] as EventColumns, list.rows[i] as number).kafka_offset;
        if (!failed.has(offset)) failed.set(offset, { error: err as Error, rows: [] });
      }
    }
  for (const list of byNode.values())
    list.rows.forEach((r, i) => {
      const t = list.tables[i] as EventColumns;
      failed.get(sourceOf(t, r).kafka_offset)?.rows.push(t.view(r).columns);
    });
  return failed;
}

interface Encoding {
  node: string;
  list: NodeEvents;
  source: EnrichedSource;
  encode: (batch: EnrichedBatch) => Buffer;
  maxBytes: number;
  out: { key: string; value: Buffer }[];
}

/** Encodes a node's events [lo, hi) as one message, or as two halves (recursively) while over maxBytes. */
function encodeFitting(e: Encoding, lo: number, hi: number): void {
  const value = e.encode(toEnrichedBatch(e.node, e.list, lo, hi, e.source));
  // One event always fits: it came in a collector message under the same 1 MB bound.
  if (value.length <= e.maxBytes || hi - lo === 1) {
    e.out.push({ key: e.node, value });
    return;
  }
  const half = lo + ((hi - lo) >>> 1);
  encodeFitting(e, lo, half);
  encodeFitting(e, half, hi);
}

/** The EnrichedBatch of a node's events [lo, hi): `firstEvent` is lo. */
function toEnrichedBatch(
  node: string,
  list: NodeEvents,
  lo: number,
  hi: number,
  source: EnrichedSource,
): EnrichedBatch {
  const containers: EnrichedContainer[] = [];
  // By id; more than one entry when the container's record changed within the batch (its
  // name arrived, say): each event keeps the version it was joined with.
  const byId = new Map<string, number[]>();
  // Rows joined with one record share one identity object (join-identity.ts).
  const byIdentity = new Map<JoinIdentity, number>();
  const events: EnrichedEvent[] = new Array(hi - lo);
  for (let i = lo; i < hi; i++) {
    const t = list.tables[i] as EventColumns;
    const r = list.rows[i] as number;
    const identity = t.identity(r);
    const joinState = identity.join_state;
    let container = -1;
    if (joinState === 'joined') {
      const known = byIdentity.get(identity);
      container = known ?? containerIndex(identity as unknown as Row, containers, byId);
      if (known === undefined) byIdentity.set(identity, container);
    }
    const timeNs = t.time[r] as bigint;
    const src = sourceOf(t, r);
    const index = t.index[r] as number;
    events[i - lo] =
      src.bytes !== undefined
        ? { timeNs, joinState, container, bytes: src.bytes, index }
        : { timeNs, joinState, container, event: src.events?.[index] as DecodedEvent };
  }
  return {
    node,
    sourcePartition: source.partition,
    firstOffset: source.firstOffset,
    lastOffset: source.lastOffset,
    firstEvent: lo,
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
