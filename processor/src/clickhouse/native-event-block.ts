// An event table's columns (event-columns.ts) -> a Native block's columns, copied from the
// arrays: a u64 field or the time is one memcpy, a number field one checked loop into the
// wire type, a text field written string by string, and the columns a row takes from its
// message or its join are encoded once per message or identity and repeated per row.
// Anything else (an array field, a value that does not fit its column) returns false, and
// the caller encodes the rows as views through the row pass instead (native-format.ts),
// which decides, as for any rows, between a misfit error and the JSON path.
import { type EventColumns, JOIN_COLUMNS_OF_ROW, SOURCE_COLUMNS_OF_ROW } from '../event-columns.js';
import {
  Col64,
  copyBytes,
  INT_ARRAYS,
  type IntArray,
  intRange,
  putU64,
  writeDictionary,
} from './native-columns.js';
import { type Encoder, Out } from './native-out.js';

const FROM_MESSAGE = new Set<string>(SOURCE_COLUMNS_OF_ROW);
const FROM_JOIN = new Set<string>(JOIN_COLUMNS_OF_ROW);
const INT64_SIGN = 0x8000_0000;

// Scratch reused by every block (encoding is synchronous).
let index = new Uint32Array(0);
const ints = new Map<string, IntArray>();
const wide = new Col64();

function indexScratch(n: number): Uint32Array {
  if (index.length < n) index = new Uint32Array(2 * n);
  return index;
}

function intScratch(wireType: string, n: number): IntArray | undefined {
  const kind = INT_ARRAYS[wireType];
  if (kind === undefined) return undefined;
  let a = ints.get(wireType);
  if (a === undefined || a.length < n) {
    a = kind.make(2 * n);
    ints.set(wireType, a);
  }
  return a;
}

/**
 * Writes every column of `cols` (name, type, data) after the block header in `out`, `plan`
 * giving each column's encoder in `cols.columns` order; false when a column can't be
 * copied this way (nothing of the block is usable then).
 */
export function writeEventColumns(out: Out, cols: EventColumns, plan: readonly Encoder[]): boolean {
  const n = cols.length;
  const columns = cols.columns;
  const firstField = columns.length - cols.fields.length;
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i] as string;
    const enc = plan[i] as Encoder;
    out.string(column);
    out.string(enc.wireType);
    let ok: boolean;
    if (FROM_MESSAGE.has(column))
      ok = writeRepeated(
        out,
        enc,
        cols.sources.map((s) => s[column as keyof typeof s]),
        cols.msg,
        n,
      );
    else if (FROM_JOIN.has(column))
      ok = writeRepeated(
        out,
        enc,
        cols.identities.map((id) => id[column as keyof typeof id]),
        cols.join,
        n,
      );
    else if (column === 'time') ok = writeU64s(out, enc, cols.time, n);
    else {
      const f = cols.fields[i - firstField];
      if (f === undefined) return false;
      ok =
        f.storage === 'u64'
          ? writeU64s(out, enc, f.u64, n)
          : f.storage === 'num'
            ? writeNumbers(out, enc, f.num, n)
            : writeValues(out, enc, f.values, n);
    }
    if (!ok) return false;
  }
  return true;
}

/** The LowCardinality key of `v` in `dict` (added when new), or -1 when `v` is not text. */
function keyOf(dict: Map<string, number>, v: unknown): number {
  if (typeof v !== 'string') return -1;
  let key = dict.get(v);
  if (key === undefined) {
    key = dict.size;
    dict.set(v, key);
  }
  return key;
}

/** A column whose row r holds values[slots[r]]: each value encoded once, its bytes repeated. */
function writeRepeated(out: Out, enc: Encoder, values: unknown[], slots: Uint32Array, n: number): boolean {
  if (enc.inner !== undefined) return false;
  if (enc.dictionary === true) {
    const dict = new Map<string, number>([['', 0]]);
    const keys = new Uint32Array(values.length);
    for (let k = 0; k < values.length; k++) {
      const key = keyOf(dict, values[k]);
      if (key < 0) return false;
      keys[k] = key;
    }
    const idx = indexScratch(n);
    for (let r = 0; r < n; r++) idx[r] = keys[slots[r] as number] as number;
    writeDictionary(out, dict, idx, n);
    return true;
  }
  const once = new Out(64);
  const ends = new Uint32Array(values.length + 1);
  let widest = 0;
  for (let k = 0; k < values.length; k++) {
    if (!enc.value(once, values[k])) return false;
    ends[k + 1] = once.pos;
    widest = Math.max(widest, once.pos - (ends[k] as number));
  }
  out.ensure(widest * n);
  const bytes = once.buf;
  const buf = out.buf;
  let pos = out.pos;
  for (let r = 0; r < n; r++) {
    const s = slots[r] as number;
    const end = ends[s + 1] as number;
    for (let p = ends[s] as number; p < end; p++) buf[pos++] = bytes[p] as number;
  }
  out.pos = pos;
  return true;
}

/** u64 values (a u64 field, the time) into UInt64, DateTime64(9) or a narrower integer column. */
function writeU64s(out: Out, enc: Encoder, values: BigUint64Array, n: number): boolean {
  const halves = new Uint32Array(values.buffer, values.byteOffset, 2 * n);
  if (enc.wireType === 'UInt64') {
    copyBytes(out, values, 8 * n);
    return true;
  }
  if (enc.wireType.startsWith('DateTime64')) {
    for (let r = 0; r < n; r++) if (((halves[2 * r + 1] as number) & INT64_SIGN) !== 0) return false;
    copyBytes(out, values, 8 * n);
    return true;
  }
  const a = intScratch(enc.wireType, n);
  if (a === undefined) return false;
  const [, max] = intRange(enc.wireType);
  for (let r = 0; r < n; r++) {
    const lo = halves[2 * r] as number;
    if (halves[2 * r + 1] !== 0 || lo > max) return false;
    a[r] = lo;
  }
  copyBytes(out, a, (INT_ARRAYS[enc.wireType]?.width ?? 0) * n);
  return true;
}

/** Numbers (not u64) into an integer column, or UInt64. */
function writeNumbers(out: Out, enc: Encoder, values: Float64Array, n: number): boolean {
  if (enc.wireType === 'UInt64') {
    wide.reserve(n);
    for (let r = 0; r < n; r++) if (!putU64(wide, r, values[r])) return false;
    copyBytes(out, wide.b64, 8 * n);
    return true;
  }
  const a = intScratch(enc.wireType, n);
  if (a === undefined) return false;
  const [min, max] = intRange(enc.wireType);
  for (let r = 0; r < n; r++) {
    const v = values[r] as number;
    if (!Number.isInteger(v) || v < min || v > max) return false;
    a[r] = v;
  }
  copyBytes(out, a, (INT_ARRAYS[enc.wireType]?.width ?? 0) * n);
  return true;
}

/** Text (or any value as a row carries it) value by value; arrays are left to the row pass. */
function writeValues(out: Out, enc: Encoder, values: unknown[], n: number): boolean {
  if (enc.inner !== undefined) return false;
  if (enc.dictionary === true) {
    const dict = new Map<string, number>([['', 0]]);
    const idx = indexScratch(n);
    for (let r = 0; r < n; r++) {
      const key = keyOf(dict, values[r]);
      if (key < 0) return false;
      idx[r] = key;
    }
    writeDictionary(out, dict, idx, n);
    return true;
  }
  for (let r = 0; r < n; r++) if (!enc.value(out, values[r])) return false;
  return true;
}
