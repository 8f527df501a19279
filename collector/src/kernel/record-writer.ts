// Avro items of EventBatch.events written straight from ring-buffer records, with no event
// object in between: the decoder leaves a record of a kind handled here as its byte offset
// in the batch (a RawRecord), and the batcher writes it through this writer while that
// batch is current. An object per event, with its strings and bigints, is most of what
// decoding allocates; written from the bytes, an event leaves the garbage collector nothing.
//
// The plan per kind is compiled from the Avro record schema (field order and types) and
// layout.ts (offsets, checked against BTF): a field whose schema type or layout this file
// does not know leaves its kind to the decoder and avsc. The bytes equal avsc's encoding
// of the decoded event (test/unit/record-writer.test.ts compares them on every kind).
import type avsc from 'avsc';
import { kindOfRecord, U64_LONG, writeLongHalves, writeVarint64 } from '../../../schemas/avro-types.js';
import { catalog } from '../../../schemas/codec.js';
import type { RawRecord } from '../collector.js';
import { ipText } from './decode.js';
import { ARGS_LEN, EVENT_TYPE, KT_HEADER, RECORD_LAYOUT } from './layout.js';

export type { RawRecord };

const OP_U64 = 0; // unsigned 64-bit long (bigint in the decoded event)
const OP_U32 = 1; // u32 as an Avro long (a JS number in the decoded event)
const OP_INT = 2; // u16 as an Avro int
const OP_CSTR = 3; // NUL-terminated text in a fixed-size field
const OP_IP = 4; // 16 address bytes as text; aux = offset of the family field
const OP_ARGV = 5; // NUL-separated argv; aux = offset of its byte count

interface Plan {
  kind: string;
  /** The union branch's index, as its zigzag varint (always one byte: < 64 branches). */
  branchByte: number;
  /** Triples: op, field offset, aux (a length or another field's offset). */
  ops: Int32Array;
  /** Bytes the item can take at most. */
  maxBytes: number;
}

export interface RecordWriter {
  /** Kernel type numbers written here; the decoder leaves these as RawRecords. */
  readonly types: readonly number[];
  /** Makes `buf` the batch that RawRecords point into (until the next call). */
  setBatch(buf: Buffer): void;
  /** The event kind of the record at `off` of the current batch. */
  kindOf(off: RawRecord): string;
  /** Its kernel type number (a small integer: counting by it needs no Map per record). */
  typeOf(off: RawRecord): number;
  /** The event kind of a kernel type number that typeOf returned. */
  kindOfType(type: number): string;
  /** Writes the record at `off` as an EventBatch item at `pos`: its end, or minus the bytes missing. */
  write(off: RawRecord, out: Buffer, pos: number): number;
}

type FieldType = avsc.Type & { typeName: string; itemsType?: { typeName: string } };
type RecordBranch = avsc.Type & { fields: Array<{ name: string; type: FieldType }> };

const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The ops of one kind, or undefined when a field has no op here. */
function compile(kind: string, branch: RecordBranch, index: number): Plan | undefined {
  const layout = RECORD_LAYOUT[EVENT_TYPE[kind as keyof typeof EVENT_TYPE]];
  if (layout === undefined || index >= 64) return undefined;
  const fields = { ...KT_HEADER.fields, ...layout.fields } as Record<
    string,
    { offset: number; size: number }
  >;
  const ops: number[] = [];
  let maxBytes = 1;
  for (const field of branch.fields) {
    const at = fields[snake(field.name)];
    if (at === undefined) return undefined;
    const t = field.type;
    if (t === U64_LONG && at.size === 8) {
      ops.push(OP_U64, at.offset, 0);
      maxBytes += 10;
    } else if (t.typeName === 'long' && at.size === 4) {
      ops.push(OP_U32, at.offset, 0);
      maxBytes += 5;
    } else if (t.typeName === 'int' && at.size === 2) {
      ops.push(OP_INT, at.offset, 0);
      maxBytes += 3;
    } else if (t.typeName === 'string' && field.name.endsWith('addr') && fields.family?.size === 2) {
      ops.push(OP_IP, at.offset, fields.family.offset);
      maxBytes += 1 + 45;
    } else if (t.typeName === 'string' && at.size > 8) {
      ops.push(OP_CSTR, at.offset, at.size);
      maxBytes += 5 + 3 * at.size; // invalid UTF-8 bytes become U+FFFD, 3 bytes each
    } else if (t.typeName === 'array' && t.itemsType?.typeName === 'string' && fields.args_size?.size === 4) {
      ops.push(OP_ARGV, at.offset, fields.args_size.offset);
      // Every byte a NUL at worst: a one-byte length per piece, plus the count and end.
      maxBytes += 10 + 4 * Math.min(at.size, ARGS_LEN);
    } else return undefined;
  }
  return { kind, branchByte: index * 2, ops: Int32Array.from(ops), maxBytes };
}

const LO = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1;
const NO_BYTES = new ArrayBuffer(0);
const EMPTY = Buffer.alloc(0);

type Utf8Buffer = Buffer & {
  utf8Slice(start: number, end: number): string;
  utf8Write(s: string, at: number): number;
};

/** Avro string from the bytes [start, end) of the batch; raw bytes when they are ASCII. */
function text(src: Utf8Buffer, out: Utf8Buffer, pos: number, start: number, end: number): number {
  let high = 0;
  for (let i = start; i < end; i++) high |= src[i] as number;
  const len = end - start;
  if (high < 0x80) {
    pos = writeVarint64(out, pos, len * 2, 0);
    if (len < 32) for (let i = start; i < end; i++) out[pos++] = src[i] as number;
    else pos += src.copy(out, pos, start, end);
    return pos;
  }
  // The decoder's string (malformed UTF-8 replaced), encoded as avsc would.
  const s = src.utf8Slice(start, end);
  const bytes = Buffer.byteLength(s);
  pos = writeVarint64(out, pos, bytes * 2, 0);
  return pos + out.utf8Write(s, pos);
}

function cstr(src: Utf8Buffer, out: Utf8Buffer, pos: number, start: number, max: number): number {
  const limit = start + max;
  let nul = start;
  while (nul < limit && src[nul] !== 0) nul++;
  return text(src, out, pos, start, nul);
}

function decimalBytes(b: number): number {
  return b < 10 ? 1 : b < 100 ? 2 : 3;
}

function decimal(out: Buffer, pos: number, b: number): number {
  if (b >= 100) out[pos++] = 48 + Math.floor(b / 100);
  if (b >= 10) out[pos++] = 48 + (Math.floor(b / 10) % 10);
  out[pos++] = 48 + (b % 10);
  return pos;
}

function ip(src: Utf8Buffer, out: Utf8Buffer, pos: number, at: number, family: number): number {
  if (family === 2) {
    const a = src[at] as number;
    const b = src[at + 1] as number;
    const c = src[at + 2] as number;
    const d = src[at + 3] as number;
    out[pos++] = (3 + decimalBytes(a) + decimalBytes(b) + decimalBytes(c) + decimalBytes(d)) * 2;
    pos = decimal(out, pos, a);
    out[pos++] = 46;
    pos = decimal(out, pos, b);
    out[pos++] = 46;
    pos = decimal(out, pos, c);
    out[pos++] = 46;
    return decimal(out, pos, d);
  }
  const s = ipText(src, at, family); // IPv6 (or '' for an unknown family): rare
  out[pos++] = s.length * 2;
  return pos + out.write(s, pos, 'latin1');
}

function argv(src: Utf8Buffer, out: Utf8Buffer, pos: number, start: number, size: number): number {
  const end = start + Math.min(size, ARGS_LEN);
  let pieces = 0;
  for (let p = start; p < end; p++) if (src[p] === 0 || p === end - 1) pieces++;
  if (pieces > 0) {
    pos = writeVarint64(out, pos, pieces * 2, 0);
    let p = start;
    while (p < end) {
      let nul = p;
      while (nul < end && src[nul] !== 0) nul++;
      pos = text(src, out, pos, p, nul);
      p = nul + 1;
    }
  }
  out[pos++] = 0;
  return pos;
}

/** A writer for those of `kinds` whose schema and layout it can map (see RecordWriter.types). */
export function createRecordWriter(kinds: readonly string[]): RecordWriter {
  const union = (
    catalog().current.EventBatch.type as unknown as {
      fields: Array<{ name: string; type: { itemsType?: { types: RecordBranch[] } } }>;
    }
  ).fields.at(-1)?.type.itemsType;
  const plans: Array<Plan | undefined> = [];
  const kindByType: string[] = [];
  let scratchBytes = 0;
  for (const [kind, type] of Object.entries(EVENT_TYPE)) {
    kindByType[type] = kind;
    if (!kinds.includes(kind)) continue;
    const index = union?.types.findIndex((b) => kindOfRecord(b.name ?? '') === kind) ?? -1;
    const branch = union?.types[index];
    const plan = branch === undefined ? undefined : compile(kind, branch, index);
    if (plan === undefined) continue;
    plans[type] = plan;
    scratchBytes = Math.max(scratchBytes, plan.maxBytes);
  }
  const types = plans.flatMap((p, type) => (p === undefined ? [] : [type]));
  // An item near the end of the batch buffer is written here first, to learn its size.
  const scratch = Buffer.alloc(scratchBytes) as Utf8Buffer;

  let src = EMPTY as Utf8Buffer;
  let dwords: Uint32Array<ArrayBufferLike> = new Uint32Array(NO_BYTES);
  let hwords: Uint16Array<ArrayBufferLike> = new Uint16Array(NO_BYTES);

  function writeAt(plan: Plan, off: number, out: Utf8Buffer, pos: number): number {
    out[pos++] = plan.branchByte;
    const ops = plan.ops;
    for (let i = 0; i < ops.length; i += 3) {
      const at = off + (ops[i + 1] as number);
      switch (ops[i]) {
        case OP_U64: {
          pos = writeLongHalves(
            out,
            pos,
            dwords[(at >>> 2) + LO] as number,
            dwords[(at >>> 2) + 1 - LO] as number,
          );
          break;
        }
        case OP_U32: {
          const n = dwords[at >>> 2] as number;
          pos = writeVarint64(out, pos, (n << 1) >>> 0, n >>> 31);
          break;
        }
        case OP_INT:
          pos = writeVarint64(out, pos, (hwords[at >>> 1] as number) * 2, 0);
          break;
        case OP_CSTR:
          pos = cstr(src, out, pos, at, ops[i + 2] as number);
          break;
        case OP_IP:
          pos = ip(src, out, pos, at, hwords[(off + (ops[i + 2] as number)) >>> 1] as number);
          break;
        default:
          pos = argv(src, out, pos, at, dwords[(off + (ops[i + 2] as number)) >>> 2] as number);
      }
    }
    return pos;
  }

  return {
    types,
    setBatch(buf) {
      let backing: ArrayBufferLike = buf.buffer;
      let at = buf.byteOffset;
      src = buf as Utf8Buffer;
      if ((at & 7) !== 0) {
        // The decoder read an aligned copy too; read the same bytes.
        const copy = Buffer.alloc((buf.length + 7) & ~7);
        buf.copy(copy);
        src = copy as Utf8Buffer;
        backing = copy.buffer;
        at = copy.byteOffset;
      }
      dwords = new Uint32Array(backing, at, buf.length >>> 2);
      hwords = new Uint16Array(backing, at, buf.length >>> 1);
    },
    kindOf(off) {
      return kindByType[hwords[off >>> 1] as number] as string;
    },
    typeOf(off) {
      return hwords[off >>> 1] as number;
    },
    kindOfType(type) {
      return kindByType[type] as string;
    },
    write(off, out, pos) {
      const plan = plans[hwords[off >>> 1] as number] as Plan;
      if (out.length - pos >= plan.maxBytes) return writeAt(plan, off, out as Utf8Buffer, pos);
      const end = writeAt(plan, off, scratch, 0);
      if (pos + end > out.length) return out.length - (pos + end);
      return pos + scratch.copy(out, pos, 0, end);
    },
  };
}
