// The row pass of the Native encoder (native-format.ts): one compiled function per column set
// reads each row once, with `row.name` loads, and puts every value into its column's scratch:
// fixed-width values into typed arrays, strings into a byte buffer, LowCardinality values as
// indexes into the column's dictionary. The block is then assembled from the scratch by
// copies. WHY row by row: a column-by-column walk reads every row object once per column
// (two dozen passes over a batch that does not fit the cache), and a bigint goes into a
// BigUint64Array without allocating, where splitting it into bytes allocates.
import { endianness } from 'node:os';
import { isPlainIdentifier } from './identifier.js';
import {
  type Encoder,
  Out,
  parseDigits,
  U64_MAX_TEXT,
  writeDateTime64Text,
  writeGiga,
} from './native-out.js';

/** Typed arrays are written in the platform's byte order, which must be the block's (little-endian). */
export const ROW_PASS = endianness() === 'LE';

const LC_VERSION_SHARED_WITH_ADDITIONAL_KEYS = 1;
const LC_HAS_ADDITIONAL_KEYS = 1 << 9;
const LC_NEED_UPDATE_DICTIONARY = 1 << 10;
const INT64_MAX = 0x7fff_ffff_ffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
const TWO_32 = 0x1_0000_0000;

/** 8-byte values: one ArrayBuffer seen as u32 halves (numbers), as u64 (bigints) and as bytes (text). */
export class Col64 {
  u32 = new Uint32Array(0);
  b64 = new BigUint64Array(0);
  bytes = Buffer.alloc(0);
  reserve(n: number): void {
    if (this.b64.length >= n) return;
    const ab = new ArrayBuffer(8 * Math.max(n, 2 * this.b64.length));
    this.u32 = new Uint32Array(ab);
    this.b64 = new BigUint64Array(ab);
    this.bytes = Buffer.from(ab);
  }
}

/** A u64 as rows carry it (number, bigint, or decimal text past 2^53) into c[i]; false if it isn't one. */
export function putU64(c: Col64, i: number, v: unknown): boolean {
  if (typeof v === 'number') {
    if (!(v >= 0 && Number.isSafeInteger(v))) return false;
    const lo = v % TWO_32;
    c.u32[2 * i] = lo;
    c.u32[2 * i + 1] = (v - lo) / TWO_32;
    return true;
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) return false;
    c.b64[i] = v;
    return true;
  }
  if (typeof v !== 'string') return false;
  const len = v.length;
  if (len <= 15) {
    const n = parseDigits(v, 0, len);
    return n >= 0 && putU64(c, i, n);
  }
  // 16-20 digits: the high part and the last 9 digits, combined exactly.
  if (len > 20 || (len === 20 && v > U64_MAX_TEXT)) return false;
  const high = parseDigits(v, 0, len - 9);
  const low = parseDigits(v, len - 9, len);
  if (high < 0 || low < 0) return false;
  writeGiga(c.bytes, 8 * i, high, low);
  return true;
}

/** DateTime64(9): a bigint of ns, or "seconds.nanoseconds" text (exactly 9 digits after the dot). */
export function putDateTime64(c: Col64, i: number, v: unknown): boolean {
  if (typeof v === 'bigint') {
    if (v < 0n || v > INT64_MAX) return false;
    c.b64[i] = v;
    return true;
  }
  return typeof v === 'string' && writeDateTime64Text(c.bytes, 8 * i, v);
}

export type IntArray = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array;
export const INT_ARRAYS: Record<string, { make: (n: number) => IntArray; width: number }> = {
  UInt8: { make: (n) => new Uint8Array(n), width: 1 },
  Bool: { make: (n) => new Uint8Array(n), width: 1 },
  Int8: { make: (n) => new Int8Array(n), width: 1 },
  UInt16: { make: (n) => new Uint16Array(n), width: 2 },
  Int16: { make: (n) => new Int16Array(n), width: 2 },
  UInt32: { make: (n) => new Uint32Array(n), width: 4 },
  Int32: { make: (n) => new Int32Array(n), width: 4 },
};

/** The values an integer wire type of INT_ARRAYS holds: [min, max]. */
export function intRange(wireType: string): [number, number] {
  const bits = 8 * (INT_ARRAYS[wireType]?.width ?? 0);
  return wireType.startsWith('Int') ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

/** One column's scratch, reused by every block with this column set (encoding is synchronous). */
class Scratch {
  ints: IntArray;
  c64 = new Col64();
  out = new Out(1024);
  dict = new Map<string, number>();
  index = new Uint32Array(0);
  end = 0;
  /** Whether the column takes 8 bytes a row (UInt64, DateTime64, an array's offsets): the others never touch c64. */
  readonly wide: boolean;
  constructor(readonly enc: Encoder) {
    this.ints = INT_ARRAYS[enc.wireType]?.make(0) ?? new Uint8Array(0);
    this.wide = enc.inner !== undefined || enc.wireType === 'UInt64' || enc.wireType.startsWith('DateTime64');
  }
  reset(n: number): void {
    const int = INT_ARRAYS[this.enc.wireType];
    if (int !== undefined && this.ints.length < n) this.ints = int.make(2 * n);
    if (this.wide) this.c64.reserve(n);
    this.out.pos = 0;
    this.end = 0;
    if (this.enc.dictionary === true) {
      this.dict.clear();
      this.dict.set('', 0);
      if (this.index.length < n) this.index = new Uint32Array(2 * n);
    }
  }
}

type RowPass = (rows: readonly Record<string, unknown>[], s: readonly Scratch[]) => boolean;

/** The statement that checks and stores row r's value `v` of column i. */
function store(enc: Encoder, i: number): string {
  const int = INT_ARRAYS[enc.wireType];
  if (enc.dictionary === true)
    return `if (typeof v !== 'string') return false;
      let k = d${i}.get(v); if (k === undefined) { k = d${i}.size; d${i}.set(v, k); } x${i}[r] = k;`;
  if (enc.inner !== undefined)
    return `if (!Array.isArray(v)) return false; s${i}.end += v.length; if (!putU64(s${i}.c64, r, s${i}.end)) return false;
      for (let j = 0; j < v.length; j++) if (!e${i}.value(o${i}, v[j])) return false;`;
  if (int !== undefined) {
    const [min, max] = intRange(enc.wireType);
    return `if (typeof v === 'boolean') v = v ? 1 : 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < ${min} || v > ${max}) return false; a${i}[r] = v;`;
  }
  if (enc.wireType === 'UInt64') return `if (!putU64(c${i}, r, v)) return false;`;
  if (enc.wireType.startsWith('DateTime64')) return `if (!putDateTime64(c${i}, r, v)) return false;`;
  return `if (typeof v !== 'string') return false; o${i}.string(v);`; // String, Enum8/16
}

const passes = new Map<string, { pass: RowPass; scratch: Scratch[] }>();

function compile(
  columns: readonly string[],
  plan: readonly Encoder[],
): { pass: RowPass; scratch: Scratch[] } {
  const key = columns.map((c, i) => `${c}:${plan[i]?.wireType}`).join(',');
  let compiled = passes.get(key);
  if (compiled !== undefined) return compiled;
  const head: string[] = [];
  const body: string[] = [];
  columns.forEach((column, i) => {
    if (!isPlainIdentifier(column)) throw new Error(`column ${column} is not a plain identifier`);
    head.push(
      `const s${i} = s[${i}], a${i} = s${i}.ints, c${i} = s${i}.c64, o${i} = s${i}.out, d${i} = s${i}.dict, x${i} = s${i}.index, e${i} = s${i}.enc.inner;`,
    );
    body.push(`{ let v = row.${column}; ${store(plan[i] as Encoder, i)} }`);
  });
  const make = new Function(
    'putU64',
    'putDateTime64',
    `return function rowPass(rows, s) {
      ${head.join('\n')}
      for (let r = 0; r < rows.length; r++) { const row = rows[r];
        ${body.join('\n')}
      }
      return true;
    };`,
  );
  compiled = {
    pass: make(putU64, putDateTime64) as RowPass,
    scratch: plan.map((enc) => new Scratch(enc)),
  };
  passes.set(key, compiled);
  return compiled;
}

/** Copies `n` bytes of a typed array's memory into `out`. */
export function copyBytes(out: Out, view: ArrayBufferView, n: number): void {
  out.ensure(n);
  Buffer.from(view.buffer, view.byteOffset, n).copy(out.buf, out.pos);
  out.pos += n;
}

/**
 * LowCardinality(String), as the engine writes it (native-format.ts lowCardinalityColumn):
 * `dict` maps each key to its index, in insertion order ('' first), `index` is each row's key.
 */
export function writeDictionary(out: Out, dict: Map<string, number>, index: Uint32Array, n: number): void {
  const keys = dict.size;
  const width = keys <= 0x100 ? 1 : keys <= 0x1_0000 ? 2 : 4;
  out.u64(LC_VERSION_SHARED_WITH_ADDITIONAL_KEYS);
  out.u64(LC_HAS_ADDITIONAL_KEYS | LC_NEED_UPDATE_DICTIONARY | (width >> 1)); // 0, 1, 2: UInt8/16/32
  out.u64(keys);
  for (const key of dict.keys()) out.string(key);
  out.u64(n);
  out.ensure(n * width);
  const buf = out.buf;
  let pos = out.pos;
  if (width === 1) for (let i = 0; i < n; i++) buf[pos++] = index[i] as number;
  else if (width === 2)
    for (let i = 0; i < n; i++, pos += 2) {
      const k = index[i] as number;
      buf[pos] = k;
      buf[pos + 1] = k >>> 8;
    }
  else copyBytes(out, index, 4 * n);
  if (width !== 4) out.pos = pos;
}

/**
 * Writes the columns of `rows` (name, type, data each) after the block header in `out`; false
 * when a value does not fit its column (the caller looks for the misfit).
 */
export function writeColumnsRowPass(
  out: Out,
  rows: readonly Record<string, unknown>[],
  columns: readonly string[],
  plan: readonly Encoder[],
): boolean {
  const n = rows.length;
  const { pass, scratch } = compile(columns, plan);
  for (const s of scratch) s.reset(n);
  if (!pass(rows, scratch)) return false;
  columns.forEach((column, i) => {
    const s = scratch[i] as Scratch;
    const enc = s.enc;
    out.string(column);
    out.string(enc.wireType);
    const int = INT_ARRAYS[enc.wireType];
    if (enc.dictionary === true) writeDictionary(out, s.dict, s.index, n);
    else if (enc.inner !== undefined) {
      copyBytes(out, s.c64.b64, 8 * n);
      copyBytes(out, s.out.buf, s.out.pos);
    } else if (int !== undefined) copyBytes(out, s.ints, int.width * n);
    else if (enc.wireType === 'UInt64' || enc.wireType.startsWith('DateTime64'))
      copyBytes(out, s.c64.b64, 8 * n);
    else copyBytes(out, s.out.buf, s.out.pos);
  });
  return true;
}
