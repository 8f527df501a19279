// Reads an EventBatch written with the current schema straight from its Avro bytes into the
// batch's columns: no object per event and no bigint per u64 field (a u64 goes into its
// column's memory as two uint32 halves). WHY: avsc's decode makes an object per event and a
// bigint per u64 field that live only until they are copied into the columns, a large part
// of the processor's own work (docs/processor.md).
//
// Only a message whose writer schema is the current EventBatch itself takes this path
// (codec currentBody); any other version goes through avsc's resolving decoder. Its promise
// is narrow: when it returns a message, the rows it added are the ones avsc's decode and
// EventColumns.add would have made. On anything unusual (truncation, trailing bytes, a value
// out of its type's range, a varint longer than ten bytes, a time no row can hold, a column
// widened by an earlier event) it takes its rows back and returns undefined: the caller then
// decodes the message with avsc, which gives the exact value, error or dead letter.
import { type FieldReading, fieldReading, HI, kindOfRecord, LO } from '../../schemas/avro-types.js';
import type { EventBytes } from '../../schemas/codec.js';
import { catalog } from '../../schemas/codec.js';
import {
  type EventColumns,
  type FieldColumn,
  type KindLayout,
  layoutOf,
  type Storage,
} from './event-columns.js';
import type { PartitionBatch } from './partition-batch.js';
import { type EventBatchHead, MAX_TIME_NS, type MessageSource, tableForKind, u64Value } from './rows.js';

const TWO_32 = 2 ** 32;
/** The high half of the latest time a row can hold (rows.ts MAX_TIME_NS). */
const MAX_TIME_HI = Number(MAX_TIME_NS >> 32n);

/** The reading position in one message; every read reports a malformed value, never throws. */
class Cursor {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  /** The last long64's 64 bits (two's complement of the signed long), as uint32 halves. */
  lo = 0;
  hi = 0;

  /** A long of up to ten varint bytes into lo/hi; false when malformed or past the end. */
  long64(): boolean {
    const buf = this.buf;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    let b = 0;
    let i = 0;
    // A byte past the end reads undefined: (undefined & x) is 0 and (undefined < 0x80) false,
    // so the loops run out and fail.
    for (; i < 4; i++) {
      b = buf[pos++] as number;
      lo |= (b & 0x7f) << (7 * i);
      if (b < 0x80) break;
    }
    if (i === 4) {
      b = buf[pos++] as number;
      lo |= (b & 0x0f) << 28;
      hi = (b & 0x7f) >>> 4;
      for (i = 0; !(b < 0x80); i++) {
        if (i === 5) return false;
        b = buf[pos++] as number;
        if (i === 4 && b > 1) return false; // bits past the 64th
        hi |= (b & 0x7f) << (3 + 7 * i);
      }
    }
    if (pos > buf.length) return false;
    const sign = -(lo & 1); // zigzag: (zz >>> 1) ^ -(zz & 1) over 64 bits
    this.lo = (((lo >>> 1) | (hi << 31)) ^ sign) >>> 0;
    this.hi = ((hi >>> 1) ^ sign) >>> 0;
    this.pos = pos;
    return true;
  }

  /** A long of at most five varint bytes (|value| < 2^34), or NaN. */
  small(): number {
    const buf = this.buf;
    let pos = this.pos;
    let zz = 0;
    let mul = 1;
    for (let i = 0; i < 5; i++) {
      const b = buf[pos++] as number;
      zz += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        return zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2;
      }
      mul *= 128;
    }
    return Number.NaN;
  }

  string(): string | undefined {
    const len = this.small();
    if (!(len >= 0)) return undefined;
    const start = this.pos;
    const end = start + len;
    if (end > this.buf.length) return undefined;
    this.pos = end;
    return this.buf.toString('utf8', start, end);
  }

  /** An array block's item count (a negative count is followed by the block's size); NaN when corrupt. */
  blockCount(): number {
    let n = this.small();
    if (n < 0) {
      n = -n;
      if (Number.isNaN(this.small())) return Number.NaN;
    }
    // Every item takes a byte at least (avro-types.ts readBlockCount).
    return n <= this.buf.length - this.pos ? n : Number.NaN;
  }

  /** An array of u64 as a row carries it (u64Value: a number while exact, else decimal text). */
  u64s(): (number | string)[] | undefined {
    const out: (number | string)[] = [];
    for (let n = this.blockCount(); n !== 0; n = this.blockCount()) {
      if (Number.isNaN(n)) return undefined;
      for (; n > 0; n--) {
        if (!this.long64()) return undefined;
        out.push(u64Value(this.bigint()));
      }
    }
    return out;
  }

  strings(): string[] | undefined {
    const out: string[] = [];
    for (let n = this.blockCount(); n !== 0; n = this.blockCount()) {
      if (Number.isNaN(n)) return undefined;
      for (; n > 0; n--) {
        const s = this.string();
        if (s === undefined) return undefined;
        out.push(s);
      }
    }
    return out;
  }

  /** The last long64 as a bigint. */
  bigint(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }
}

/** Reads one event record's fields into row r of its columns' fields; false when malformed. */
type RecordReader = (c: Cursor, f: readonly FieldColumn[], r: number) => boolean;

const STORAGE: Record<FieldReading, Storage> = {
  u64: 'u64',
  u32: 'num',
  int: 'num',
  str: 'str',
  u64s: 'any',
  strs: 'any',
};

/** The code reading field j of each kind: checks as avro-types.ts' types, then the column store. */
const READ_FIELD: Record<FieldReading, (j: number) => string> = {
  u64: (j) =>
    `if (!c.long64()) return false; f[${j}].u32[2 * r + ${LO}] = c.lo; f[${j}].u32[2 * r + ${HI}] = c.hi;`,
  u32: (j) => `v = c.small(); if (!(v >= 0 && v <= 4294967295)) return false; f[${j}].num[r] = v;`,
  int: (j) => `v = c.small(); if (v !== (v | 0)) return false; f[${j}].num[r] = v;`,
  str: (j) => `v = c.string(); if (v === undefined) return false; f[${j}].values[r] = v;`,
  u64s: (j) => `v = c.u64s(); if (v === undefined) return false; f[${j}].values[r] = v;`,
  strs: (j) => `v = c.strings(); if (v === undefined) return false; f[${j}].values[r] = v;`,
};

/** One record reader per kind, compiled once, so each field's read and store is inline. */
function recordReader(readings: readonly FieldReading[]): RecordReader {
  const body = readings.map((reading, j) => READ_FIELD[reading](j));
  return new Function(`return function readRecord(c, f, r) { let v; ${body.join('\n')} return true; };`)();
}

/** One branch of the event union: its kind's table, layout and record reader. */
interface KindReader {
  readonly table: string;
  readonly layout: KindLayout;
  readonly read: RecordReader;
  /** Per read: the read that last touched this kind, its columns then, and their length before it. */
  readId: number;
  cols: EventColumns | undefined;
  start: number;
  created: boolean;
}

/** The rows one read added, in message order: columns and row number (scratch, reused). */
export interface AddedRows {
  cols: EventColumns[];
  rows: number[];
  length: number;
}

/** A message read into the batch: its envelope, event count and rows (valid until the next read). */
export interface ReadMessage {
  head: EventBatchHead;
  src: MessageSource;
  events: number;
  added: AddedRows;
  /** Takes the message's rows back out of the batch (a copy of a message already seen). */
  rollback(): void;
}

type Field = { name: string; type: { typeName: string } & Record<string, unknown> };
const ENVELOPE = ['node', 'bootId', 'collectorVersion', 'sequence', 'producedAtNs', 'bootEpochNs', 'events'];

/** Where tsNs and cgroupId are in every event record (the join reads them back from the columns). */
export const TS_FIELD = 0;
export const CGROUP_FIELD = 1;

/** The one reader of the process (null: not made yet); reads are synchronous, so it is shared. */
let shared: EventBatchReader | undefined | null = null;

export class EventBatchReader {
  private readonly c = new Cursor();
  private readonly added: AddedRows = { cols: [], rows: [], length: 0 };
  private readonly touched: KindReader[] = [];
  private readId = 0;

  private constructor(private readonly kinds: readonly KindReader[]) {}

  /**
   * The reader of the current EventBatch schema, or undefined when its shape is not the one
   * this reader knows (every message then takes avsc's path; a unit test keeps it known).
   */
  static forCurrentSchema(): EventBatchReader | undefined {
    if (shared === null) shared = EventBatchReader.make();
    return shared;
  }

  private static make(): EventBatchReader | undefined {
    const type = catalog().current.EventBatch.type as unknown as { fields: Field[] };
    const fields = type.fields;
    if (fields.map((f) => f.name).join() !== ENVELOPE.join()) return undefined;
    const events = fields[6]?.type as unknown as { itemsType?: { types?: unknown[] } };
    const branches = events.itemsType?.types as { name?: string; fields?: Field[] }[] | undefined;
    if (branches === undefined) return undefined;
    const kinds: KindReader[] = [];
    for (const branch of branches) {
      const kind = kindOfRecord(branch.name ?? '');
      const recordFields = branch.fields ?? [];
      const readings = recordFields.map((f) => fieldReading(f.type as never));
      if (kind === undefined || readings.some((r) => r === undefined)) return undefined;
      const names = recordFields.map((f) => f.name);
      if (names[TS_FIELD] !== 'tsNs' || names[CGROUP_FIELD] !== 'cgroupId') return undefined;
      if (readings[TS_FIELD] !== 'u64' || readings[CGROUP_FIELD] !== 'u64') return undefined;
      const known = readings as FieldReading[];
      let layout: KindLayout;
      try {
        layout = layoutOf(
          kind,
          names,
          known.map((r) => STORAGE[r]),
        );
      } catch {
        return undefined; // the kind was first seen with other fields (a test's own events)
      }
      const reader = recordReader(known);
      kinds.push({
        table: tableForKind(kind),
        layout,
        read: reader,
        readId: 0,
        cols: undefined,
        start: 0,
        created: false,
      });
    }
    return new EventBatchReader(kinds);
  }

  /**
   * Reads the message `bytes` (Avro body from `bodyStart`) into `batch`'s columns, each row
   * from source `partition`/`offset`; with `keepBytes`, the source keeps the events' bytes
   * for the enriched topic. Undefined when avsc must read it (see the top of this file).
   */
  read(
    bytes: Buffer,
    bodyStart: number,
    batch: PartitionBatch,
    partition: number,
    offset: string,
    keepBytes: boolean,
  ): ReadMessage | undefined {
    const c = this.c;
    c.buf = bytes;
    c.pos = bodyStart;
    const head = this.readHead();
    if (head === undefined) return undefined;
    const src: { -readonly [K in keyof MessageSource]: MessageSource[K] } = {
      node: head.node,
      boot_id: head.bootId,
      kafka_partition: partition,
      kafka_offset: offset,
      bytes: undefined,
      events: undefined,
    };
    const spans: number[] | undefined = keepBytes ? [] : undefined;
    const events = this.readEvents(batch, src, head, bodyStart, spans);
    if (events < 0 || c.pos !== bytes.length) {
      this.rollback(batch, src);
      return undefined;
    }
    if (spans !== undefined && events > 0)
      src.bytes = { body: Buffer.from(bytes.subarray(bodyStart)), spans } satisfies EventBytes;
    batch.rows += events;
    return { head, src, events, added: this.added, rollback: () => this.rollback(batch, src, events) };
  }

  private readHead(): EventBatchHead | undefined {
    const c = this.c;
    const node = c.string();
    const bootId = c.string();
    const collectorVersion = c.string();
    if (node === undefined || bootId === undefined || collectorVersion === undefined || !c.long64())
      return undefined;
    const sequence = c.bigint();
    if (!c.long64() || c.hi > MAX_TIME_HI) return undefined;
    const producedAtNs = c.bigint();
    const union = c.small();
    if (union !== 0 && (union !== 1 || !c.long64())) return undefined;
    const bootEpochNs = union === 0 ? null : c.bigint();
    return { node, bootId, collectorVersion, sequence, producedAtNs, bootEpochNs };
  }

  /** Reads the events array into the columns; its event count, or -1 when malformed. */
  private readEvents(
    batch: PartitionBatch,
    src: MessageSource,
    head: EventBatchHead,
    bodyStart: number,
    spans: number[] | undefined,
  ): number {
    const c = this.c;
    const added = this.added;
    added.length = 0;
    this.touched.length = 0;
    const readId = ++this.readId;
    // Each row's time: the boot epoch plus its tsNs, or the produce time for all (wallClockNs).
    const epoch = head.bootEpochNs ?? head.producedAtNs;
    const epochLo = Number(epoch & 0xffff_ffffn);
    const epochHi = Number(epoch >> 32n);
    const perEvent = head.bootEpochNs !== null;
    let count = 0;
    for (let n = c.blockCount(); n !== 0; n = c.blockCount()) {
      if (Number.isNaN(n)) return -1;
      for (; n > 0; n--) {
        const start = c.pos;
        const kr = this.kinds[c.small()];
        if (kr === undefined) return -1;
        let cols = kr.cols;
        if (kr.readId !== readId) {
          kr.created = !batch.tables.has(kr.table);
          cols = batch.eventColumns(kr.table, kr.layout);
          kr.readId = readId;
          kr.cols = cols;
          kr.start = cols.length;
          this.touched.push(kr);
          if (!sameStorage(cols, kr.layout)) return -1;
        }
        const columns = cols as EventColumns;
        const r = columns.openRow(src, count);
        const f = columns.fields;
        if (!kr.read(c, f, r)) return -1;
        let lo = epochLo;
        let hi = epochHi;
        if (perEvent) {
          const ts = (f[TS_FIELD] as FieldColumn).u32;
          lo += ts[2 * r + LO] as number;
          hi += (ts[2 * r + HI] as number) + (lo >= TWO_32 ? 1 : 0);
        }
        if (hi > MAX_TIME_HI) return -1; // past 2262: avsc's path refuses the message (checkMessage)
        columns.timeU32[2 * r + LO] = lo >>> 0;
        columns.timeU32[2 * r + HI] = hi;
        columns.length = r + 1;
        added.cols[count] = columns;
        added.rows[count] = r;
        count++;
        spans?.push(start - bodyStart, c.pos - bodyStart);
      }
    }
    added.length = count;
    return count;
  }

  private rollback(batch: PartitionBatch, src: MessageSource, counted = 0): void {
    for (const kr of this.touched) {
      const cols = kr.cols as EventColumns;
      cols.truncate(kr.start, src);
      if (kr.created) batch.tables.delete(kr.table);
      kr.cols = undefined;
    }
    this.touched.length = 0;
    this.added.length = 0;
    batch.rows -= counted;
  }
}

/** Whether the columns still hold every field the way the schema reads it (no field widened). */
function sameStorage(cols: EventColumns, layout: KindLayout): boolean {
  const fields = cols.fields;
  for (let j = 0; j < fields.length; j++)
    if ((fields[j] as FieldColumn).storage !== layout.storages[j]) return false;
  return true;
}
