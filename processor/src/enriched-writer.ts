// The EnrichedBatch body, written field by field so that an event whose message was written
// with the current EventBatch schema is copied as it arrived (its union branch index and
// record: the enriched event union has the same branches in the same order) instead of being
// decoded into an object, kept until the cut and encoded again. The bytes are those avsc
// writes for the same batch (test/unit/enriched-writer.test.ts compares them).
import type avsc from 'avsc';
import { writeIntVarint, writeU64Varint } from '../../schemas/avro-types.js';
import type { EnrichedBatch, EnrichedEvent } from './enriched.js';

type Field = { name: string; type: avsc.Type };
type RecordLike = avsc.Type & { fields: Field[] };

const BATCH_FIELDS = [
  'node',
  'sourcePartition',
  'firstOffset',
  'lastOffset',
  'firstEvent',
  'containers',
  'events',
];
const EVENT_FIELDS = ['timeNs', 'joinState', 'container', 'event'];

/** Writes `value` at `pos` of `buf`: its end, or a negative number when `buf` is too small. */
export type BodyWriter<T> = (value: T, buf: Buffer, pos: number) => number;

/** The union of event records, as a schema compiles it (branch schemas in order). */
function unionBranches(union: avsc.Type): string[] {
  return (union as avsc.Type & { types: avsc.Type[] }).types.map((t) => JSON.stringify(t.schema()));
}

/** The EventBatch schema's event union: copied bytes are only valid if the enriched one is the same. */
export function eventBatchUnion(eventBatch: avsc.Type): avsc.Type {
  const events = (eventBatch as RecordLike).fields.find((f) => f.name === 'events');
  if (events === undefined) throw new Error('EventBatch has no events field');
  return (events.type as avsc.Type & { itemsType: avsc.Type }).itemsType;
}

/**
 * The body writer of an EnrichedBatch schema, and whether events of `eventBatch` messages may
 * be copied as they arrived: only while the enriched event union has the EventBatch union's
 * branches. Throws at start-up if the schema's fields are not the ones it writes, so a schema
 * change fails every test rather than miswriting.
 */
export function enrichedBodyWriter(
  type: avsc.Type,
  eventBatch: avsc.Type,
): { write: BodyWriter<EnrichedBatch>; eventUnion: avsc.Type; copiesEvents: boolean } {
  const fields = (type as RecordLike).fields;
  checkFields('EnrichedBatch', fields, BATCH_FIELDS);
  const headerFields = fields.slice(0, -1);
  const item = ((fields.at(-1) as Field).type as avsc.Type & { itemsType: RecordLike }).itemsType;
  checkFields('EnrichedEvent', item.fields, EVENT_FIELDS);
  const symbols = ((item.fields[1] as Field).type as avsc.Type & { symbols: string[] }).symbols;
  const joinIndex = new Map(symbols.map((s, i) => [s, i]));
  const eventUnion = (item.fields[3] as Field).type;
  const copiesEvents =
    unionBranches(eventUnion).join('\n') === unionBranches(eventBatchUnion(eventBatch)).join('\n');

  function writeEvent(e: EnrichedEvent, buf: Buffer, pos: number): number {
    // timeNs (<= 10 bytes), joinState and container (<= 5 each), then the event.
    if (pos + 20 > buf.length) return -1;
    let at = writeU64Varint(buf, pos, e.timeNs);
    const join = joinIndex.get(e.joinState);
    if (join === undefined) throw new Error(`invalid joinState ${String(e.joinState)}`);
    at = writeIntVarint(buf, at, join);
    at = writeIntVarint(buf, at, e.container);
    if (e.bytes === undefined) return eventUnion.encode(e.event, buf, at);
    const start = e.bytes.spans[2 * e.index] as number;
    const end = e.bytes.spans[2 * e.index + 1] as number;
    if (at + end - start > buf.length) return -1;
    return at + e.bytes.body.copy(buf, at, start, end);
  }

  const write: BodyWriter<EnrichedBatch> = (batch, buf, pos) => {
    let at = pos;
    for (const f of headerFields) {
      at = f.type.encode((batch as unknown as Record<string, unknown>)[f.name], buf, at);
      if (at < 0) return at;
    }
    const events = batch.events;
    if (events.length > 0) {
      if (at + 5 > buf.length) return -1;
      at = writeIntVarint(buf, at, events.length);
      for (let i = 0; i < events.length; i++) {
        at = writeEvent(events[i] as EnrichedEvent, buf, at);
        if (at < 0) return at;
      }
    }
    if (at + 1 > buf.length) return -1;
    buf[at] = 0; // the array's end block
    return at + 1;
  };
  return { write, eventUnion, copiesEvents };
}

function checkFields(record: string, fields: Field[], expected: string[]): void {
  const names = fields.map((f) => f.name);
  if (names.join() !== expected.join())
    throw new Error(
      `enriched writer: ${record} has fields ${names.join(', ')}, expected ${expected.join(', ')}`,
    );
}
