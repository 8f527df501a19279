// One event table's rows of a batch, held as columns from the moment their message arrives:
// every event field in a typed array (u64 in a BigUint64Array, other numbers in a
// Float64Array) or, for text and anything else, a plain array; the wall-clock time in a
// BigUint64Array; and per row three small indexes: its message (the envelope and Kafka
// coordinates every row of it shares), its place in that message, and its join identity
// (one shared object per container record). WHY: a pending row as an object lives across
// many young-generation collections and is promoted, which costs the GC more than building
// it; columns live outside V8's heap, and the Native block is copied from them
// (clickhouse/native-event-block.ts).
//
// Rows are read as objects only where a rule needs one (alerts, the enriched topic, a
// rejected insert's split, JSON for a server): view(r) is an EventRow whose columns are
// getters into the arrays, and setting its $id re-joins the row in place.
import { isPlainIdentifier } from './clickhouse/identifier.js';
import type { EventRow, Row } from './partition-batch.js';
import {
  type DecodedEvent,
  type JoinIdentity,
  type MessageSource,
  snake,
  UNJOINED,
  u64Value,
} from './rows.js';
import { IDENTITY_COLUMNS } from './workload.js';

/** How one event field is held: u64, another number, text, or anything else as the row carries it. */
export type Storage = 'u64' | 'num' | 'str' | 'any';

/** One event field's column. Only the array of its storage is in use. */
export interface FieldColumn {
  readonly field: string;
  readonly column: string;
  storage: Storage;
  u64: BigUint64Array;
  /** u64's memory as uint32 halves (a reader writes them without making a bigint). */
  u32: Uint32Array;
  num: Float64Array;
  values: unknown[];
}

/** The columns an event row takes from its message, then from its join, before its own fields. */
export const SOURCE_COLUMNS_OF_ROW = ['node', 'boot_id', 'kafka_partition', 'kafka_offset'] as const;
export const JOIN_COLUMNS_OF_ROW = [...IDENTITY_COLUMNS, 'join_state'] as const;
/** Names an event's own fields can't take: EventRow's members and the columns shared through $src and $id. */
const ROW_MEMBERS = new Set([
  'columns',
  'timeNs',
  'bytes',
  'index',
  'event',
  'meta',
  'toJSON',
  'constructor',
  'time',
  ...SOURCE_COLUMNS_OF_ROW,
  ...JOIN_COLUMNS_OF_ROW,
]);

/** What every batch's columns of one event kind share: field names, column order, the view class. */
export interface KindLayout {
  readonly kind: string;
  readonly fields: readonly string[];
  readonly own: readonly string[];
  /** The row's columns in table order (what a Native block and JSON carry). */
  readonly columns: readonly string[];
  /** Storage each field starts with, from the first event of the kind this process saw. */
  readonly storages: readonly Storage[];
  readonly View: new (cols: EventColumns, r: number) => EventRow;
}

const layouts = new Map<string, KindLayout>();

const storageOf = (v: unknown): Storage =>
  typeof v === 'bigint'
    ? v >= 0n
      ? 'u64'
      : 'any'
    : typeof v === 'number'
      ? 'num'
      : typeof v === 'string'
        ? 'str'
        : 'any';

/** An event field as a row carries it: u64 (and arrays of u64: the block latency histogram) as u64Value. */
function columnValue(v: unknown): unknown {
  return typeof v === 'bigint'
    ? u64Value(v)
    : Array.isArray(v) && typeof v[0] === 'bigint'
      ? v.map(u64Value)
      : v;
}

/**
 * The layout of `ev`'s kind, made from the first event of that kind; throws when a field
 * can't be a column (so a message is refused before any of its rows is added).
 */
export function kindLayout(ev: DecodedEvent): KindLayout {
  const known = layouts.get(ev.kind);
  if (known !== undefined) return known;
  const fields = Object.keys(ev).filter((key) => key !== 'kind');
  return layoutOf(
    ev.kind,
    fields,
    fields.map((f) => storageOf(ev[f])),
  );
}

/**
 * The layout of a kind whose fields and their storage are known from a schema; the same
 * object kindLayout gives, whichever comes first. Throws when they disagree with it.
 */
export function layoutOf(kind: string, fields: readonly string[], storages: readonly Storage[]): KindLayout {
  const known = layouts.get(kind);
  if (known !== undefined) {
    if (known.fields.join() !== fields.join() || known.storages.join() !== storages.join())
      throw new Error(`event kind ${kind} seen with fields ${known.fields.join()}, now ${fields.join()}`);
    return known;
  }
  const own = fields.map(snake);
  fields.forEach((field, i) => {
    const column = own[i] as string;
    if (!isPlainIdentifier(field) || !isPlainIdentifier(column) || ROW_MEMBERS.has(column))
      throw new Error(`event field ${kind}.${field} can't be a row column (${column})`);
  });
  const columns = [
    'node',
    'boot_id',
    'time',
    ...JOIN_COLUMNS_OF_ROW,
    'kafka_partition',
    'kafka_offset',
    ...own,
  ];
  const layout: KindLayout = {
    kind,
    fields,
    own,
    columns: Object.freeze(columns),
    storages,
    View: viewClass(kind, own, columns),
  };
  layouts.set(kind, layout);
  return layout;
}

/**
 * The view class of a kind: one class per kind, compiled once, so every view of a kind has
 * one shape (the Native encoder's row pass and the rules read them monomorphically).
 */
function viewClass(kind: string, own: readonly string[], columns: readonly string[]): KindLayout['View'] {
  const value = (c: string): string =>
    (SOURCE_COLUMNS_OF_ROW as readonly string[]).includes(c)
      ? `this.$src.${c}`
      : (JOIN_COLUMNS_OF_ROW as readonly string[]).includes(c)
        ? `this.$id.${c}`
        : `this.${c}`;
  const getters = [
    ...[...SOURCE_COLUMNS_OF_ROW, ...JOIN_COLUMNS_OF_ROW].map((c) => `get ${c}() { return ${value(c)}; }`),
    ...own.map((c, j) => `get ${c}() { return this.$c.value(${j}, this.$r); }`),
  ];
  return new Function(
    'COLUMNS',
    `return class EventRowOf_${isPlainIdentifier(kind) ? kind : 'kind'} {
      constructor(cols, r) { this.$c = cols; this.$r = r; }
      get $src() { return this.$c.sources[this.$c.msg[this.$r]]; }
      get $id() { return this.$c.identity(this.$r); }
      set $id(id) { this.$c.setJoin(this.$r, id); }
      get time() { return this.$c.time[this.$r]; }
      get index() { return this.$c.index[this.$r]; }
      ${getters.join('\n')}
      get columns() { return this; }
      get timeNs() { return this.time; }
      get bytes() { return this.$src.bytes; }
      get event() { const e = this.$src.events; return e === undefined ? undefined : e[this.index]; }
      get meta() { return this.$id.meta; }
      get $columns() { return COLUMNS; }
      toJSON() { return { ${columns.map((c) => `${c}: ${value(c)}`).join(', ')} }; }
    };`,
  )(Object.freeze([...columns])) as KindLayout['View'];
}

type Appender = (fields: readonly FieldColumn[], ev: DecodedEvent, r: number) => number;
const appenders = new Map<string, Appender>();

/** Writes row r's fields; returns -1, or the index of the first field its storage can't hold. */
function appender(layout: KindLayout, storages: readonly Storage[]): Appender {
  const key = `${layout.kind}:${storages.join(',')}`;
  let fn = appenders.get(key);
  if (fn !== undefined) return fn;
  const body = layout.fields.map((field, j) => {
    const read = `v = ev.${field};`;
    switch (storages[j]) {
      case 'u64':
        return `${read} if (typeof v !== 'bigint' || v < 0n) return ${j}; f[${j}].u64[r] = v;`;
      case 'num':
        return `${read} if (typeof v !== 'number') return ${j}; f[${j}].num[r] = v;`;
      case 'str':
        return `${read} if (typeof v !== 'string') return ${j}; f[${j}].values[r] = v;`;
      default:
        return `${read} f[${j}].values[r] = columnValue(v);`;
    }
  });
  fn = new Function(
    'columnValue',
    `return function append(f, ev, r) { let v; ${body.join('\n')} return -1; };`,
  )(columnValue) as Appender;
  appenders.set(key, fn);
  return fn;
}

const FIRST_CAPACITY = 256;

/** One event kind's rows of a batch, as columns (see the top of this file). */
export class EventColumns {
  length = 0;
  private capacity = 0;
  time = new BigUint64Array(0);
  /** time's memory as uint32 halves. */
  timeU32 = new Uint32Array(0);
  /** Per row: its message, an index into `sources`. */
  msg = new Uint32Array(0);
  /** Per row: its event's place in its message. */
  index = new Uint32Array(0);
  /** Per row: its join identity, an index into `identities`. */
  join = new Uint32Array(0);
  readonly sources: MessageSource[] = [];
  readonly identities: JoinIdentity[] = [UNJOINED];
  private readonly identitySlots = new Map<JoinIdentity, number>([[UNJOINED, 0]]);
  readonly fields: FieldColumn[];
  private append: Appender;

  constructor(readonly layout: KindLayout) {
    this.fields = layout.fields.map((field, j) => ({
      field,
      column: layout.own[j] as string,
      storage: layout.storages[j] as Storage,
      u64: new BigUint64Array(0),
      u32: new Uint32Array(0),
      num: new Float64Array(0),
      values: [],
    }));
    this.append = appender(layout, layout.storages);
  }

  /** The row's columns in table order. */
  get columns(): readonly string[] {
    return this.layout.columns;
  }

  /** Adds one event's row (join identity UNJOINED); returns its row number. */
  add(src: MessageSource, ev: DecodedEvent, timeNs: bigint, index: number): number {
    const r = this.openRow(src, index);
    this.time[r] = timeNs;
    for (;;) {
      const misfit = this.append(this.fields, ev, r);
      if (misfit < 0) break;
      this.widen(misfit);
    }
    this.length = r + 1;
    return r;
  }

  /**
   * Row `length`, ready for its fields and time to be written (add, or event-batch-reader.ts):
   * message and place set, join UNJOINED. It counts once length is set past it.
   */
  openRow(src: MessageSource, index: number): number {
    const r = this.length;
    if (r === this.capacity) this.grow(Math.max(FIRST_CAPACITY, 2 * r));
    if (this.sources[this.sources.length - 1] !== src) this.sources.push(src);
    this.msg[r] = this.sources.length - 1;
    this.index[r] = index;
    this.join[r] = 0;
    return r;
  }

  /** Drops the rows from `length` on, all of message `src` (a message refused after its rows were read). */
  truncate(length: number, src: MessageSource): void {
    this.length = length;
    const last = this.sources.length - 1;
    if (this.sources[last] === src && (length === 0 || this.msg[length - 1] !== last)) this.sources.pop();
  }

  /** Joins row r with `id` (one slot per distinct identity in the batch). */
  setJoin(r: number, id: JoinIdentity): void {
    this.join[r] = this.slotOf(id);
  }

  /** The index of `id` in `identities`, added when new. */
  private slotOf(id: JoinIdentity): number {
    let slot = this.identitySlots.get(id);
    if (slot === undefined) {
      slot = this.identities.length;
      this.identities.push(id);
      this.identitySlots.set(id, slot);
    }
    return slot;
  }

  identity(r: number): JoinIdentity {
    return this.identities[this.join[r] as number] as JoinIdentity;
  }

  /** Field j of row r as a row carries it (u64 as u64Value). */
  value(j: number, r: number): unknown {
    const f = this.fields[j] as FieldColumn;
    switch (f.storage) {
      case 'u64':
        return u64Value(f.u64[r] as bigint);
      case 'num':
        return f.num[r];
      default:
        return f.values[r];
    }
  }

  /** Row r as an object (see EventRow): getters into these columns. */
  view(r: number): EventRow {
    return new this.layout.View(this, r);
  }

  /** Every row as a view, in row order. */
  views(): EventRow[] {
    const out: EventRow[] = new Array(this.length);
    for (let r = 0; r < this.length; r++) out[r] = this.view(r);
    return out;
  }

  /** The rows of `views` (views of these columns) as columns of their own, in that order. */
  select(views: readonly object[]): EventColumns {
    const out = new EventColumns(this.layout);
    out.copyRows(
      this,
      views.map((v) => rowOf(this, v)),
    );
    return out;
  }

  /** The rows of `parts` (columns of one kind) one after the other. */
  static concat(parts: readonly EventColumns[]): EventColumns {
    const first = parts[0];
    if (first === undefined) throw new Error('concat of no columns');
    const out = new EventColumns(first.layout);
    for (const part of parts) out.copyRows(part, undefined);
    return out;
  }

  /** Appends rows `rows` (all when undefined) of `from`, a batch of the same kind. */
  private copyRows(from: EventColumns, rows: readonly number[] | undefined): void {
    if (from.layout !== this.layout)
      throw new Error(`columns of ${from.layout.kind} into ${this.layout.kind}`);
    const n = rows === undefined ? from.length : rows.length;
    const base = this.length;
    if (base + n > this.capacity) this.grow(Math.max(FIRST_CAPACITY, base + n, 2 * this.capacity));
    this.fields.forEach((f, j) => {
      if (f.storage !== from.fields[j]?.storage && f.storage !== 'any') this.widen(j);
    });
    const srcBase = this.sources.length;
    for (const src of from.sources) this.sources.push(src);
    const slots = from.identities.map((id) => this.slotOf(id));
    // Whole columns are copied as arrays; chosen rows (a rejected insert's split) one by one.
    const row = rows === undefined ? (k: number) => k : (k: number) => rows[k] as number;
    const copy = <T extends BigUint64Array | Uint32Array | Float64Array>(to: T, of: T) => {
      if (rows === undefined) to.set(of.subarray(0, n) as never, base);
      else for (let k = 0; k < n; k++) to[base + k] = of[row(k)] as never;
    };
    copy(this.time, from.time);
    copy(this.index, from.index);
    for (let k = 0; k < n; k++) {
      const r = row(k);
      this.msg[base + k] = srcBase + (from.msg[r] as number);
      this.join[base + k] = slots[from.join[r] as number] as number;
    }
    this.fields.forEach((f, j) => {
      const g = from.fields[j] as FieldColumn;
      if (f.storage === 'u64') copy(f.u64, g.u64);
      else if (f.storage === 'num') copy(f.num, g.num);
      else
        for (let k = 0; k < n; k++)
          f.values[base + k] = g.storage === f.storage ? g.values[row(k)] : from.value(j, row(k));
    });
    this.length = base + n;
  }

  private grow(capacity: number): void {
    const grown = <T extends BigUint64Array | Uint32Array | Float64Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(capacity);
      b.set(a.subarray(0, this.length) as never);
      return b;
    };
    this.time = grown(this.time, (n) => new BigUint64Array(n));
    this.timeU32 = new Uint32Array(this.time.buffer);
    this.msg = grown(this.msg, (n) => new Uint32Array(n));
    this.index = grown(this.index, (n) => new Uint32Array(n));
    this.join = grown(this.join, (n) => new Uint32Array(n));
    for (const f of this.fields) {
      if (f.storage === 'u64') {
        f.u64 = grown(f.u64, (n) => new BigUint64Array(n));
        f.u32 = new Uint32Array(f.u64.buffer);
      } else if (f.storage === 'num') f.num = grown(f.num, (n) => new Float64Array(n));
    }
    this.capacity = capacity;
  }

  /** Field j takes any value from now on (an event whose field is not of the kind's first type). */
  private widen(j: number): void {
    const f = this.fields[j] as FieldColumn;
    if (f.storage === 'any') throw new Error(`field ${f.field} can't be widened`);
    const values: unknown[] = new Array(this.length);
    for (let r = 0; r < this.length; r++) values[r] = this.value(j, r);
    f.values = values;
    f.storage = 'any';
    f.u64 = new BigUint64Array(0);
    f.u32 = new Uint32Array(0);
    f.num = new Float64Array(0);
    this.append = appender(
      this.layout,
      this.fields.map((x) => x.storage),
    );
  }
}

/** The row number of a view of `cols`. */
function rowOf(cols: EventColumns, view: object): number {
  const v = view as unknown as { $c?: EventColumns; $r?: number };
  if (v.$c !== cols || v.$r === undefined) throw new Error('a row that is not a view of these columns');
  return v.$r;
}

/** A table's rows as a batch holds them: plain rows, or an event kind's columns. */
export type TableRows = readonly Row[] | EventColumns;

/** The rows as objects: views for columns. */
export function asRows(rows: TableRows | readonly object[]): readonly Row[] {
  return rows instanceof EventColumns ? (rows.views() as unknown as Row[]) : (rows as readonly Row[]);
}
