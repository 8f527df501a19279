// Avro items of EventBatch.events written straight from ring-buffer records, with no event
// object in between: the decoder leaves a record of a kind handled here as its byte offset
// in the batch (a RawRecord), and the batcher writes it through this writer while that
// batch is current. An object per event, with its strings and bigints, is most of what
// decoding allocates; written from the bytes, an event leaves the garbage collector nothing.
//
// The plan per kind is compiled from the Avro record schema (field order and types) and
// layout.ts (offsets, checked against BTF): a field whose schema type or layout this file
// does not know leaves its kind to the decoder and avsc; each plan becomes one generated
// function (generateWriter). The bytes equal avsc's encoding
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

/** Writes the record at byte `off` of the batch as an item at `pos` of `out`: its end. */
type WriteItemAt = (
  src: Utf8Buffer,
  dwords: Uint32Array<ArrayBufferLike>,
  hwords: Uint16Array<ArrayBufferLike>,
  out: Utf8Buffer,
  pos: number,
  off: number,
) => number;

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

// Each byte's decimal text: its digits at DIGITS[b * 3], its length in DIGITS_LEN[b] (a table,
// not divisions: every TCP record writes two addresses).
const DIGITS = new Uint8Array(256 * 3);
const DIGITS_LEN = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  const text = String(b);
  DIGITS_LEN[b] = text.length;
  for (let i = 0; i < text.length; i++) DIGITS[b * 3 + i] = text.charCodeAt(i);
}

function decimal(out: Buffer, pos: number, b: number): number {
  const len = DIGITS_LEN[b] as number;
  const at = b * 3;
  out[pos] = DIGITS[at] as number;
  if (len > 1) {
    out[pos + 1] = DIGITS[at + 1] as number;
    if (len > 2) out[pos + 2] = DIGITS[at + 2] as number;
  }
  return pos + len;
}

function ip(src: Utf8Buffer, out: Utf8Buffer, pos: number, at: number, family: number): number {
  if (family === 2) {
    const a = src[at] as number;
    const b = src[at + 1] as number;
    const c = src[at + 2] as number;
    const d = src[at + 3] as number;
    out[pos++] =
      (3 +
        (DIGITS_LEN[a] as number) +
        (DIGITS_LEN[b] as number) +
        (DIGITS_LEN[c] as number) +
        (DIGITS_LEN[d] as number)) *
      2;
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

/**
 * The plan as straight-line code, one function per kind: each field's offset a constant and
 * its op chosen once, here, instead of a loop that switches on every field of every record
 * (the generated code is what avsc does for its own records, too). Offsets are aligned to
 * their field's size and records start 8-aligned, so word indexes are constants past off.
 */
function generateWriter(plan: Plan): WriteItemAt {
  const lines = [`out[pos++] = ${plan.branchByte};`, 'const d = off >>> 2;', 'const h = off >>> 1;'];
  const ops = plan.ops;
  const aligned = (offset: number, size: number): number => {
    if (offset % size !== 0) throw new Error(`${plan.kind}: field at ${offset} is not ${size}-aligned`);
    return offset / size;
  };
  for (let i = 0; i < ops.length; i += 3) {
    const at = ops[i + 1] as number;
    const aux = ops[i + 2] as number;
    switch (ops[i]) {
      case OP_U64: {
        const word = aligned(at, 8) * 2;
        lines.push(
          `pos = writeLongHalves(out, pos, dwords[d + ${word + LO}], dwords[d + ${word + 1 - LO}]);`,
        );
        break;
      }
      case OP_U32:
        lines.push(
          `n = dwords[d + ${aligned(at, 4)}];`,
          'pos = writeVarint64(out, pos, (n << 1) >>> 0, n >>> 31);',
        );
        break;
      case OP_INT:
        lines.push(`pos = writeVarint64(out, pos, hwords[h + ${aligned(at, 2)}] * 2, 0);`);
        break;
      case OP_CSTR:
        lines.push(`pos = cstr(src, out, pos, off + ${at}, ${aux});`);
        break;
      case OP_IP:
        lines.push(`pos = ip(src, out, pos, off + ${at}, hwords[h + ${aligned(aux, 2)}]);`);
        break;
      default:
        lines.push(`pos = argv(src, out, pos, off + ${at}, dwords[d + ${aligned(aux, 4)}]);`);
    }
  }
  const body = `return function write_${plan.kind.replace(/\W/g, '_')}(src, dwords, hwords, out, pos, off) {\n  let n = 0;\n  ${lines.join('\n  ')}\n  return pos;\n};`;
  return new Function('writeLongHalves', 'writeVarint64', 'cstr', 'ip', 'argv', body)(
    writeLongHalves,
    writeVarint64,
    cstr,
    ip,
    argv,
  ) as WriteItemAt;
}

/** A writer for those of `kinds` whose schema and layout it can map (see RecordWriter.types). */
export function createRecordWriter(kinds: readonly string[]): RecordWriter {
  const union = (
    catalog().current.EventBatch.type as unknown as {
      fields: Array<{ name: string; type: { itemsType?: { types: RecordBranch[] } } }>;
    }
  ).fields.at(-1)?.type.itemsType;
  // By kernel type: the kind's generated writer and the most bytes its item can take.
  const writers: Array<WriteItemAt | undefined> = [];
  const maxBytes: number[] = [];
  const kindByType: string[] = [];
  let scratchBytes = 0;
  for (const [kind, type] of Object.entries(EVENT_TYPE)) {
    kindByType[type] = kind;
    if (!kinds.includes(kind)) continue;
    const index = union?.types.findIndex((b) => kindOfRecord(b.name ?? '') === kind) ?? -1;
    const branch = union?.types[index];
    const plan = branch === undefined ? undefined : compile(kind, branch, index);
    if (plan === undefined) continue;
    writers[type] = generateWriter(plan);
    maxBytes[type] = plan.maxBytes;
    scratchBytes = Math.max(scratchBytes, plan.maxBytes);
  }
  const types = writers.flatMap((w, type) => (w === undefined ? [] : [type]));
  // An item near the end of the batch buffer is written here first, to learn its size.
  const scratch = Buffer.alloc(scratchBytes) as Utf8Buffer;

  let src = EMPTY as Utf8Buffer;
  let dwords: Uint32Array<ArrayBufferLike> = new Uint32Array(NO_BYTES);
  let hwords: Uint16Array<ArrayBufferLike> = new Uint16Array(NO_BYTES);

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
      const type = hwords[off >>> 1] as number;
      const writeAt = writers[type] as WriteItemAt;
      if (out.length - pos >= (maxBytes[type] as number))
        return writeAt(src, dwords, hwords, out as Utf8Buffer, pos, off);
      const end = writeAt(src, dwords, hwords, scratch, 0, off);
      if (pos + end > out.length) return out.length - (pos + end);
      return pos + scratch.copy(out, pos, 0, end);
    },
  };
}
