// The byte-level pieces of the Native encoder (native-format.ts, native-columns.ts): a growable
// output buffer with ClickHouse's varuint, String and UInt64 encodings, and exact 64-bit
// arithmetic with doubles.

export type Encoder = {
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
export class Out {
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

export const U64_MAX_TEXT = '18446744073709551615';

/** The decimal number in s[from, to) (at most 15 digits: exact), or -1 if it isn't one. */
export function parseDigits(s: string, from: number, to: number): number {
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

/** The last second an Int64 of ns can hold (2262-04-11). */
const MAX_SECONDS = 9_223_372_035;

/**
 * DateTime64(9) text "seconds.nanoseconds" (exactly 9 digits after the dot, rows.ts) written
 * as Int64 ns at buf[pos]; false, and nothing written, when it is not that form or past 2262.
 */
export function writeDateTime64Text(buf: Buffer, pos: number, v: string): boolean {
  const dot = v.length - 10;
  if (dot < 1 || v.charCodeAt(dot) !== 46) return false;
  const seconds = parseDigits(v, 0, dot);
  const nanos = parseDigits(v, dot + 1, v.length);
  if (seconds < 0 || nanos < 0 || seconds > MAX_SECONDS) return false;
  writeGiga(buf, pos, seconds, nanos);
  return true;
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
