// Event rows as the processor builds them (a batch's columns, read as views), for tests of
// what reads them: the envelope and Kafka coordinates come from a message, the join columns
// from a join.
import { EventColumns } from '../../processor/src/event-columns.js';
import {
  type BatchLimits,
  type EventRow,
  PartitionBatch,
  type Row,
} from '../../processor/src/partition-batch.js';
import {
  batchRow,
  checkMessage,
  type DecodedEvent,
  type DecodedEventBatch,
  messageSource,
  tableForKind,
  wallClockNs,
} from '../../processor/src/rows.js';
import { sampleEvents } from '../../schemas/samples.js';

export interface TestRowOptions {
  node?: string;
  bootId?: string;
  /** The event's wall-clock ns (the `time` column). */
  timeNs?: bigint;
  partition?: number;
  offset?: string;
}

/** Limits under which a test's batch never cuts on its own. */
export const ONE_MESSAGE: BatchLimits = {
  maxRows: Number.MAX_SAFE_INTEGER,
  maxMs: 0,
  smallRows: 0,
  smallMaxMs: 0,
  trickleRows: 0,
  trickleMaxMs: 0,
  lateWaitMs: 0,
  lateMaxRows: 0,
};

/**
 * Every row of one EventBatch message as the pipeline adds it (partition-pipeline.ts add,
 * without the join): `rows[i]` is built from `batch.events[i]`; what the enriched topic sends
 * of it is kept while `keepEvents`. Throws as the pipeline refuses a message (checkMessage).
 */
export function buildMessageRows(
  batch: DecodedEventBatch,
  partition: number,
  offset: string,
  keepEvents: boolean,
): { envelope: Row; rows: EventRow[] } {
  checkMessage(batch);
  const src = messageSource(batch, partition, offset, keepEvents);
  const rows = new PartitionBatch(ONE_MESSAGE);
  return {
    envelope: batchRow(batch, batch.events.length, partition, offset),
    rows: batch.events.map((ev, i) => {
      const cols = rows.addEvent(tableForKind(ev.kind), src, ev, wallClockNs(batch, ev.tsNs), i);
      return cols.view(cols.length - 1);
    }),
  };
}

/** A one-event message of kind `kind`: the schema's sample event with `fields` (camelCase) over it. */
function testMessage(kind: string, fields: Record<string, unknown>, opts: TestRowOptions): DecodedEventBatch {
  const timeNs = opts.timeNs ?? 1_000_000_000n;
  const sample = sampleEvents().find((e) => e.kind === kind);
  if (sample === undefined) throw new Error(`no sample event of kind ${kind}`);
  const event = { ...sample, tsNs: 0n, ...fields } as unknown as DecodedEvent;
  return {
    node: opts.node ?? 'n1',
    bootId: opts.bootId ?? 'boot-1',
    collectorVersion: 'test',
    sequence: 1n,
    producedAtNs: timeNs,
    bootEpochNs: timeNs - event.tsNs,
    events: [event],
  };
}

/**
 * One event row of kind `kind`: the schema's sample event of that kind with `fields`
 * (camelCase, as decoded) over it, joined with nothing.
 */
export function testEventRow(
  kind: string,
  fields: Record<string, unknown> = {},
  opts: TestRowOptions = {},
): EventRow {
  const built = buildMessageRows(
    testMessage(kind, fields, opts),
    opts.partition ?? 0,
    opts.offset ?? '0',
    false,
  );
  return built.rows[0] as EventRow;
}

/** Adds that event's row to `batch` (table `table`) as the pipeline does; returns its row. */
export function addTestEvent(
  batch: PartitionBatch,
  table: string,
  kind: string,
  fields: Record<string, unknown> = {},
  opts: TestRowOptions = {},
): EventRow {
  const message = testMessage(kind, fields, opts);
  const src = messageSource(message, opts.partition ?? 0, opts.offset ?? '0', false);
  const ev = message.events[0] as DecodedEvent;
  const cols = batch.addEvent(table, src, ev, wallClockNs(message, ev.tsNs), 0);
  return cols.view(cols.length - 1);
}

/** Rows given as views, by table, as the columns a cut holds (each table's views, in their order). */
export function columnsOf(tables: ReadonlyMap<string, readonly EventRow[]>): Map<string, EventColumns> {
  const out = new Map<string, EventColumns>();
  for (const [table, rows] of tables) {
    // Views of one batch's columns at a time, joined in order (rows of several messages or nodes).
    const parts: EventColumns[] = [];
    let run: EventRow[] = [];
    let of: EventColumns | undefined;
    for (const row of rows) {
      const cols = (row as unknown as { $c?: EventColumns }).$c;
      if (cols === undefined) throw new Error(`table ${table}: a row that is not a view of columns`);
      if (cols !== of && of !== undefined) {
        parts.push(of.select(run));
        run = [];
      }
      of = cols;
      run.push(row);
    }
    if (of !== undefined) parts.push(of.select(run));
    out.set(table, EventColumns.concat(parts));
  }
  return out;
}
