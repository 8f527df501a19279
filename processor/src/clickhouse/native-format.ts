// Rows -> ClickHouse's Native format (one columnar block), for the types the event tables
// use. WHY: chDB parses JSONEachRow at ~60-100k rows/s on this class of machine, the
// dominant cost of the whole processor; a Native block is copied into columns almost
// without parsing (measured 3-6x faster, MVs included: docs/benchmarks.md, Processor).
//
// Layout (a block as NativeWriter writes it for format Native, no block info):
//   varuint columns, varuint rows, then per column: name, type name (both varuint length +
//   UTF-8), and the column's data in bulk:
//     fixed-width ints / DateTime64: little-endian values, row after row;
//     String: varuint length + bytes per row;
//     Array(T): cumulative UInt64 end offsets for every row, then the flattened T data;
//     LowCardinality(String): the block's own dictionary, then an index per row (see
//     lowCardinalityColumn).
// Enum8 columns are written as String: the INSERT casts them. A type outside this set (Map,
// Nullable: containers and collector stats, which are small) makes encodeNativeBlock return
// undefined, and the writer uses JSONEachRow for that insert.

import { KtrailError } from '../../../common/errors.js';
import { isPlainIdentifier } from './identifier.js';

export type ColumnTypes = ReadonlyMap<string, string>;

type Encoder = {
  /** The type name written in the block (what the engine parses the bytes as). */
  wireType: string;
  /** Writes one value; false when it doesn't fit the type (the block is then abandoned). */
  value(out: Out, v: unknown): boolean;
  /** Array(inner): written by the column loop as offsets, then the elements. */
  inner?: Encoder;
  /** LowCardinality(String): the column loop hands its values to writeLowCardinality. */
  dictionary?: true;
};

/** A growable byte buffer: writes go straight into one Buffer, doubled when full. */
class Out {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  varuint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  string(s: string): void {
    const len = s.length;
    this.ensure(len * 3 + 10);
    const buf = this.buf;
    if (len < 128) {
      // Short ASCII (nearly every value: names, ids, paths) in a JS loop: cheaper than a
      // call into C++ per value. The 1-byte length prefix fits while bytes < 128.
      const start = this.pos + 1;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[start + i] = c;
      }
      if (i === len) {
        buf[this.pos] = len;
        this.pos = start + len;
        return;
      }
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.varuint(n);
    this.pos += this.buf.write(s, this.pos);
  }
  u64(v: unknown): boolean {
    this.ensure(8);
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) return false;
      // Byte stores: Buffer.writeUInt32LE's own checks cost more than the write (~4x).
      const lo = v % 0x1_0000_0000;
      const hi = (v - lo) / 0x1_0000_0000;
      const buf = this.buf;
      const pos = this.pos;
      buf[pos] = lo;
      buf[pos + 1] = lo >>> 8;
      buf[pos + 2] = lo >>> 16;
      buf[pos + 3] = lo >>> 24;
      buf[pos + 4] = hi;
      buf[pos + 5] = hi >>> 8;
      buf[pos + 6] = hi >>> 16;
      buf[pos + 7] = 0; // hi < 2^21
    } else if (typeof v === 'bigint') {
      // Most u64 fit a double exactly: converting once allocates nothing, unlike the
      // BigInt shifts and masks of writeBigUInt64LE.
      if (v >= 0n && v <= MAX_SAFE) return this.u64(Number(v));
      if (v < 0n || v > 0xffff_ffff_ffff_ffffn) return false;
      this.buf.writeBigUInt64LE(v, this.pos);
    } else if (typeof v === 'string') {
      // Rows carry u64 beyond 2^53 as decimal text (rows.ts u64Value): up to 15 digits is exact
      // in a double.
      const len = v.length;
      if (len <= 15) {
        const n = parseDigits(v, 0, len);
        return n >= 0 && this.u64(n);
      }
      // 16-20 digits: high part and the last 9 digits, combined exactly like DateTime64.
      if (len > 20 || (len === 20 && v > U64_MAX_TEXT)) return false;
      const high = parseDigits(v, 0, len - 9);
      const low = parseDigits(v, len - 9, len);
      if (high < 0 || low < 0) return false;
      writeGiga(this.buf, this.pos, high, low);
    } else return false;
    this.pos += 8;
    return true;
  }
}

const U64_MAX_TEXT = '18446744073709551615';

/** The decimal number in s[from, to) (at most 15 digits: exact), or -1 if it isn't one. */
function parseDigits(s: string, from: number, to: number): number {
  if (to <= from) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Integers up to 32 bits: a JS number must be an integer in range. */
function intColumn(type: string, bytes: 1 | 2 | 4, signed: boolean): Encoder {
  const min = signed ? -(2 ** (bytes * 8 - 1)) : 0;
  const max = signed ? 2 ** (bytes * 8 - 1) - 1 : 2 ** (bytes * 8) - 1;
  return {
    wireType: type,
    value(out, v) {
      if (typeof v === 'boolean') v = v ? 1 : 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return false;
      out.ensure(4);
      const buf = out.buf;
      if (bytes === 1) signed ? buf.writeInt8(v, out.pos) : buf.writeUInt8(v, out.pos);
      else if (bytes === 2) signed ? buf.writeInt16LE(v, out.pos) : buf.writeUInt16LE(v, out.pos);
      else signed ? buf.writeInt32LE(v, out.pos) : buf.writeUInt32LE(v, out.pos);
      out.pos += bytes;
      return true;
    },
  };
}

const uint64Column: Encoder = { wireType: 'UInt64', value: (out, v) => out.u64(v) };

const stringColumn: Encoder = {
  wireType: 'String',
  value(out, v) {
    if (typeof v !== 'string') return false;
    out.string(v);
    return true;
  },
};

/** The last second an Int64 of ns can hold (2262-04-11). */
const MAX_SECONDS = 9_223_372_035;

/**
 * DateTime64(9): Int64 ns since the epoch. Rows hold it as "seconds.nanoseconds" text (what
 * rows.ts writes for the JSON path) or as a bigint of ns.
 */
function dateTime64Column(type: string): Encoder {
  return {
    wireType: type,
    value(out, v) {
      if (typeof v === 'bigint') return v <= 0x7fff_ffff_ffff_ffffn && out.u64(v);
      if (typeof v !== 'string') return false;
      // "seconds.nanoseconds": exactly 9 digits after the dot (rows.ts dateTime64).
      const dot = v.length - 10;
      if (dot < 1 || v.charCodeAt(dot) !== 46) return false;
      const seconds = parseDigits(v, 0, dot);
      const nanos = parseDigits(v, dot + 1, v.length);
      if (seconds < 0 || nanos < 0 || seconds > MAX_SECONDS) return false;
      out.ensure(8);
      writeGiga(out.buf, out.pos, seconds, nanos);
      out.pos += 8;
      return true;
    },
  };
}

/**
 * Writes high * 1e9 + low (low < 1e9) as a little-endian 64-bit integer, exactly, with
 * doubles only: the product passes 2^53, so high is split in 16-bit halves and every partial
 * product stays exact. Seconds + nanoseconds, and u64 text of 16-20 digits, both come here.
 * The caller keeps the value below 2^64.
 */
export function writeGiga(buf: Buffer, pos: number, high: number, low: number): void {
  const a = Math.floor(high / 65_536);
  const b = high % 65_536;
  const x = a * 1_000_000_000; // < 2^51
  const xHigh = Math.floor(x / 65_536);
  const z = (x % 65_536) * 65_536 + b * 1_000_000_000 + low; // < 2^48
  buf.writeUInt32LE(z % 0x1_0000_0000, pos);
  buf.writeUInt32LE(xHigh + Math.floor(z / 0x1_0000_0000), pos + 4);
}

/** Array(T) is two streams: every row's end offset (UInt64), then all the elements. */
function arrayColumn(inner: Encoder): Encoder {
  // value() is never called for arrays: compileColumns writes both streams itself.
  return { wireType: `Array(${inner.wireType})`, value: () => false, inner };
}

/**
 * LowCardinality(String), as the engine itself writes it in a Native block (checked against
 * chDB's own output): UInt64 serialization version 1 (shared dictionaries with additional
 * keys), UInt64 flags (has additional keys | update dictionary | index width), UInt64 key
 * count and the keys as Strings, the empty string first, then UInt64 row count and one
 * index per row, 1, 2 or 4 bytes wide. WHY: sent as String, every row carried the container
 * id, name, image, pod... in full (~180 bytes), written in JS and hashed back into a
 * dictionary by the engine; a batch has a few dozen distinct values per column.
 */
const lowCardinalityColumn: Encoder = {
  wireType: 'LowCardinality(String)',
  value: () => false,
  dictionary: true,
};

const LC_VERSION_SHARED_WITH_ADDITIONAL_KEYS = 1;
const LC_HAS_ADDITIONAL_KEYS = 1 << 9;
const LC_NEED_UPDATE_DICTIONARY = 1 << 10;

// Reused by every column: the dictionary of the column being written (key -> index, in
// insertion order, so its keys are the dictionary as written) and each row's index.
const lcIndex = new Map<string, number>();
let lcRows = new Uint32Array(1024);

function writeLowCardinality(out: Out, values: readonly unknown[], n: number): boolean {
  lcIndex.clear();
  lcIndex.set('', 0);
  if (lcRows.length < n) lcRows = new Uint32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v !== 'string') return false;
    let k = lcIndex.get(v);
    if (k === undefined) {
      k = lcIndex.size;
      lcIndex.set(v, k);
    }
    lcRows[i] = k;
  }
  const keys = lcIndex.size;
  const width = keys <= 0x100 ? 1 : keys <= 0x1_0000 ? 2 : 4;
  out.u64(LC_VERSION_SHARED_WITH_ADDITIONAL_KEYS);
  out.u64(LC_HAS_ADDITIONAL_KEYS | LC_NEED_UPDATE_DICTIONARY | (width >> 1)); // 0, 1, 2: UInt8/16/32
  out.u64(keys);
  for (const key of lcIndex.keys()) out.string(key);
  out.u64(n);
  out.ensure(n * width);
  const buf = out.buf;
  let pos = out.pos;
  if (width === 1) for (let i = 0; i < n; i++) buf[pos++] = lcRows[i] as number;
  else if (width === 2) for (let i = 0; i < n; i++, pos += 2) buf.writeUInt16LE(lcRows[i] as number, pos);
  else for (let i = 0; i < n; i++, pos += 4) buf.writeUInt32LE(lcRows[i] as number, pos);
  out.pos = pos;
  return true;
}

/** What a compiled column loop calls for a LowCardinality column (it gathers the values with named loads). */
const lowCardinality = {
  gathered: [] as unknown[],
  values(n: number): unknown[] {
    if (this.gathered.length < n) this.gathered = new Array(n * 2);
    return this.gathered;
  },
  write: writeLowCardinality,
};

const SIMPLE: Record<string, Encoder> = {
  UInt8: intColumn('UInt8', 1, false),
  UInt16: intColumn('UInt16', 2, false),
  UInt32: intColumn('UInt32', 4, false),
  Int8: intColumn('Int8', 1, true),
  Int16: intColumn('Int16', 2, true),
  Int32: intColumn('Int32', 4, true),
  Bool: intColumn('Bool', 1, false),
  UInt64: uint64Column,
  String: stringColumn,
};

const encoders = new Map<string, Encoder | undefined>();

/** The encoder for a ClickHouse type name, or undefined when this module can't write it. */
export function encoderFor(type: string): Encoder | undefined {
  if (encoders.has(type)) return encoders.get(type);
  let enc: Encoder | undefined = SIMPLE[type];
  if (enc === undefined) {
    if (type === 'LowCardinality(String)') enc = lowCardinalityColumn;
    else if (/^Enum(8|16)\(/.test(type)) enc = stringColumn;
    else if (/^DateTime64\(9(, *'[^']*')?\)$/.test(type)) enc = dateTime64Column(type);
    else {
      const array = /^Array\((.+)\)$/.exec(type);
      const inner = array?.[1] === undefined ? undefined : encoderFor(array[1]);
      if (inner !== undefined && inner.inner === undefined) enc = arrayColumn(inner);
    }
  }
  encoders.set(type, enc);
  return enc;
}

type ColumnWriter = (out: Out, rows: readonly Record<string, unknown>[]) => boolean;

const compiled = new Map<string, ColumnWriter>();

/**
 * One function per column set that walks the rows column by column with `row.name` loads:
 * named loads on rows of one shape stay monomorphic, where `row[column]` with a variable
 * name is a dictionary lookup per value (measured 5x slower). Names are plain identifiers
 * (checked), so they can be written into the source.
 */
function compileColumns(columns: readonly string[], plan: readonly Encoder[]): ColumnWriter {
  const key = columns.map((c, i) => `${c}:${plan[i]?.wireType}`).join(',');
  let fn = compiled.get(key);
  if (fn !== undefined) return fn;
  const body: string[] = ['const n = rows.length;'];
  columns.forEach((column, i) => {
    const enc = plan[i] as Encoder;
    body.push(`out.string(${JSON.stringify(column)}); out.string(${JSON.stringify(enc.wireType)});`);
    if (enc.dictionary === true) {
      body.push(
        `{ const values = lc.values(n); for (let i = 0; i < n; i++) values[i] = rows[i].${column};
          if (!lc.write(out, values, n)) return false; }`,
      );
    } else if (enc.inner === undefined) {
      body.push(
        `{ const w = plan[${i}]; for (let i = 0; i < n; i++) if (!w.value(out, rows[i].${column})) return false; }`,
      );
    } else {
      body.push(`{ const w = plan[${i}].inner; let end = 0;
        for (let i = 0; i < n; i++) { const v = rows[i].${column}; if (!Array.isArray(v)) return false; end += v.length; if (!out.u64(end)) return false; }
        for (let i = 0; i < n; i++) { const v = rows[i].${column}; for (let j = 0; j < v.length; j++) if (!w.value(out, v[j])) return false; } }`);
    }
  });
  body.push('return true;');
  const make = new Function(
    'plan',
    'lc',
    `return function writeColumns(out, rows) {\n${body.join('\n')}\n};`,
  );
  fn = make(plan, lowCardinality) as ColumnWriter;
  compiled.set(key, fn);
  return fn;
}

/** A present value that doesn't fit its column (an int past UInt16, a time past 2262): bad data. */
export class NativeValueError extends KtrailError {
  constructor(
    readonly column: string,
    readonly row: number,
    readonly value: unknown,
  ) {
    super(
      `value ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value)?.slice(0, 80)} of row ${row} does not fit column ${column}`,
    );
  }
}

/**
 * One Native block of `rows` with the columns of the first row, typed by `types` (the
 * table's columns). Rows of one insert share their keys: rows.ts builds every row of a table
 * from the same reader schema. Undefined when the rows can't be written exactly through this
 * module: a column the table lacks, a type it doesn't write, or a missing key (the caller
 * then sends JSONEachRow, and the engine fills defaults or reports the problem), or a value of
 * another form (ISO time text). A number that doesn't fit its numeric column throws
 * NativeValueError: the JSON path would not refuse it (the engine wraps an integer that
 * overflows its column), so it is bad data.
 */
export function encodeNativeBlock(
  rows: readonly Record<string, unknown>[],
  types: ColumnTypes,
): { block: Buffer; columns: string[] } | undefined {
  const first = rows[0];
  if (first === undefined) return undefined;
  const columns = Object.keys(first);
  const plan: Encoder[] = [];
  for (const column of columns) {
    const type = types.get(column);
    const enc = type === undefined || !isPlainIdentifier(column) ? undefined : encoderFor(type);
    if (enc === undefined) return undefined;
    plan.push(enc);
  }
  const out = new Out(Math.max(4096, rows.length * columns.length * 12));
  out.varuint(columns.length);
  out.varuint(rows.length);
  if (!compileColumns(columns, plan)(out, rows)) {
    const misfit = findMisfit(rows, columns, plan);
    if (misfit !== undefined) throw misfit;
    return undefined;
  }
  return { block: out.buf.subarray(0, out.pos), columns };
}

/** A number, or the decimal text of one (how rows carry u64 past 2^53). */
const isNumeric = (v: unknown): boolean =>
  typeof v === 'number' || typeof v === 'bigint' || (typeof v === 'string' && /^-?\d+$/.test(v));

/**
 * The first number that doesn't fit its numeric column (the slow path, after a block
 * failed), or undefined when what failed is a value of another form (ISO time text, a word
 * in a number column, a number in a String column): the JSON path takes those, and the
 * engine parses or refuses them itself.
 */
function findMisfit(
  rows: readonly Record<string, unknown>[],
  columns: string[],
  plan: Encoder[],
): NativeValueError | undefined {
  const scratch = new Out(64);
  const fits = (enc: Encoder, v: unknown): boolean => {
    scratch.pos = 0;
    if (enc.dictionary === true) return typeof v === 'string';
    if (enc.inner === undefined) return enc.value(scratch, v);
    return Array.isArray(v) && v.every((x) => fits(enc.inner as Encoder, x));
  };
  for (let c = 0; c < columns.length; c++) {
    const column = columns[c] as string;
    for (let r = 0; r < rows.length; r++) {
      const v = (rows[r] as Record<string, unknown>)[column];
      if (v === undefined) return undefined;
      if (fits(plan[c] as Encoder, v)) continue;
      const enc = plan[c] as Encoder;
      const numericColumn = /^(U?Int|DateTime64)/.test((enc.inner ?? enc).wireType);
      const numbers = Array.isArray(v) ? v : [v];
      return numericColumn && numbers.every(isNumeric) ? new NativeValueError(column, r, v) : undefined;
    }
  }
  return undefined;
}
