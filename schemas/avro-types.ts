// The avsc type options every ktrail schema is compiled with. Three choices live here:
//  1. `long` is BigInt-backed and unsigned: u64 kernel values (ns timestamps, cgroup ids,
//     socket cookies, byte counters) keep all 64 bits. Values >= 2^63 travel as the same
//     64 bits a signed Avro long has, so other Avro readers see them as negative numbers.
//  2. `{"type": "long", "ktrail.js": "number"}` is a plain JS number (u32 kernel fields such as
//     pid or uid: Avro int is signed 32-bit, so they need a long on the wire, but they always
//     fit a double). The attribute is ignored by other Avro implementations and by the
//     canonical form, so it does not change fingerprints.
//  3. The union of event records is not wrapped ({"io.ktrail.v1.ProcExec": {...}}): it picks
//     its branch from the event's `kind` and sets `kind` when reading, so a decoded kernel
//     event goes into an EventBatch as is and comes out with the same shape.
import avsc from 'avsc';
import { fullName } from './fingerprint.js';

type Tap = { buf: Buffer; pos: number; readLong(): number; writeLong(n: number): void };
type AvroType = avsc.Type;

const TWO_64 = 1n << 64n;
const SCRATCH = Buffer.alloc(8);
// One u64 seen as two uint32 halves (host byte order: pick the low half's index).
const SPLIT_U64 = new BigUint64Array(1);
const SPLIT_U32 = new Uint32Array(SPLIT_U64.buffer);
/** Index of a u64's low and high uint32 half in a Uint32Array view of its memory (host byte order). */
export const LO = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1;
export const HI = 1 - LO;

const isU64 = (n: unknown): n is bigint => typeof n === 'bigint' && n >= 0n && n < TWO_64;

// avsc's documented hook for custom longs (LongType.__with) moves every value through an
// 8-byte Buffer, which halves the encode rate of a batch. This type keeps the same
// contract (it IS an avsc AbstractLongType, so resolution with int/long works) but reads
// and writes the varint directly: doubles for values below 2^52, bigint math above.
const AbstractLongType = Object.getPrototypeOf(
  avsc.types.LongType.__with({
    fromBuffer: () => 0n,
    toBuffer: () => SCRATCH,
    fromJSON: () => 0n,
    toJSON: () => '0',
    isValid: () => true,
    compare: () => 0,
  }),
).constructor as new (
  noUnpack: boolean,
) => AvroType;

/** Writes the varint of a 64-bit value given as two uint32 halves at `pos`: its end. */
export function writeVarint64(buf: Buffer, pos: number, lo: number, hi: number): number {
  while (hi !== 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

/** Writes 64 bits given as uint32 halves as an Avro long (read as signed, zigzag) at `pos`: its end. */
export function writeLongHalves(buf: Buffer, pos: number, lo: number, hi: number): number {
  // zigzag of the 64 bits read as a signed long: (v << 1) ^ (v >> 63), per half.
  const sign = hi >> 31; // 0, or -1 (all ones) for values >= 2^63
  return writeVarint64(buf, pos, ((lo << 1) ^ sign) >>> 0, (((hi << 1) | (lo >>> 31)) ^ sign) >>> 0);
}

/**
 * Writes a u64 (0 <= val < 2^64, checked by the caller) as an Avro long at `pos`: its end.
 * The 64 bits go through a typed-array view as two uint32 halves: no Number(bigint) and no
 * bigint arithmetic, which are runtime calls in V8.
 */
export function writeU64Varint(buf: Buffer, pos: number, val: bigint): number {
  SPLIT_U64[0] = val;
  return writeLongHalves(buf, pos, SPLIT_U32[LO] as number, SPLIT_U32[HI] as number);
}

/** Writes a 32-bit int (Avro int or enum index) as a zigzag varint at `pos`: its end. */
export function writeIntVarint(buf: Buffer, pos: number, n: number): number {
  return writeVarint64(buf, pos, ((n << 1) ^ (n >> 31)) >>> 0, 0);
}

class U64LongType extends AbstractLongType {
  constructor() {
    super(false);
    Object.freeze(this);
  }

  _read(tap: Tap): bigint {
    const buf = tap.buf;
    let pos = tap.pos;
    let zz = 0;
    let mul = 1;
    let b = 0;
    // Up to 7 varint bytes (49 bits) are exact in a double.
    for (let i = 0; i < 7; i++) {
      b = buf[pos++] as number;
      zz += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) break;
    }
    if ((b & 0x80) === 0) {
      tap.pos = pos;
      // zigzag: even -> non-negative, odd -> negative (a u64 >= 2^63 written by another writer)
      return zz % 2 === 0 ? BigInt(zz / 2) : BigInt.asUintN(64, BigInt(-(zz + 1) / 2));
    }
    let big = BigInt(zz);
    let shift = 49n;
    do {
      b = buf[pos++] as number; // undefined past the end -> NaN -> the tap reports truncation
      big |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80 && shift < 70n);
    tap.pos = pos;
    const signed = (big >> 1n) ^ -(big & 1n);
    return BigInt.asUintN(64, signed);
  }

  _write(tap: Tap, val: unknown): void {
    if (typeof val !== 'bigint' || val < 0n || val >= TWO_64)
      throw new Error(`invalid "long" (unsigned 64-bit bigint): ${String(val)}`);
    tap.pos = writeU64Varint(tap.buf, tap.pos, val);
  }

  _fromBuffer(buf: Buffer): bigint {
    return buf.readBigUInt64LE(0);
  }

  _toBuffer(n: bigint): Buffer {
    SCRATCH.writeBigUInt64LE(n);
    return SCRATCH;
  }

  _fromJSON(json: unknown): bigint {
    return BigInt.asUintN(64, BigInt(json as string | number | bigint));
  }

  _toJSON(n: bigint): string {
    return n.toString();
  }

  _isValid(n: unknown): boolean {
    return isU64(n);
  }

  override compare(a: bigint, b: bigint): number {
    return a === b ? 0 : a < b ? -1 : 1;
  }
}

/** Unsigned 64-bit long as bigint (see 1. above). */
export const U64_LONG: AvroType = new U64LongType();

/** Which kind (`proc_exec`, ...) each event record full name stands for ("ktrail.kind" attribute). */
const KIND_BY_RECORD = new Map<string, string>();

/** Records the `ktrail.kind` attributes of a schema (any version) so unions can label events. */
export function registerKinds(schema: unknown): void {
  if (Array.isArray(schema)) {
    for (const s of schema) registerKinds(s);
    return;
  }
  if (schema === null || typeof schema !== 'object') return;
  const s = schema as Record<string, unknown>;
  const kind = s['ktrail.kind'];
  if (typeof kind === 'string' && typeof s.name === 'string') {
    KIND_BY_RECORD.set(fullName(s.name, typeof s.namespace === 'string' ? s.namespace : undefined), kind);
  }
  for (const key of ['type', 'fields', 'items', 'values'] as const) registerKinds(s[key]);
}

export function kindOfRecord(fullName: string): string | undefined {
  return KIND_BY_RECORD.get(fullName);
}

function isEventUnion(schema: unknown): boolean {
  if (!Array.isArray(schema) || schema.length === 0) return false;
  return schema.every((branch) => {
    const name =
      typeof branch === 'string'
        ? branch
        : typeof branch === 'object' && branch !== null && typeof branch['ktrail.kind'] === 'string'
          ? fullName(branch.name, branch.namespace)
          : undefined;
    return name !== undefined && KIND_BY_RECORD.has(name);
  });
}

/** Where the event unions being read note each event's byte span; set only by readEventSpans. */
let spanSink: number[] | undefined;

/**
 * Runs `read` (one synchronous decode with no resolver) and appends to `spans` the start and
 * end of every event union value it reads: the branch index and the record, in the decoded
 * buffer's positions. The enriched topic copies those bytes instead of encoding the events
 * again. Under a resolver the writer's bytes are not the reader's, so none are noted.
 */
export function readEventSpans<T>(spans: number[], read: () => T): T {
  spanSink = spans;
  try {
    return read();
  } finally {
    spanSink = undefined;
  }
}

type UnionBase = Omit<AvroType, 'random'> & { readonly types: AvroType[] };
const { WrappedUnionType } = avsc.types as unknown as {
  WrappedUnionType: new (schema: unknown, opts: unknown) => UnionBase;
};

// The instance is frozen by avsc's constructor, so per-union tables live in this closure.
function createEventUnion(schema: unknown, opts: unknown): AvroType {
  const kinds: string[] = [];
  const indexByKind = new Map<string, number>();

  class EventUnionType extends WrappedUnionType {
    _check(
      val: unknown,
      flags: unknown,
      hook?: (val: unknown, type: unknown) => void,
      path?: string[],
    ): boolean {
      const index =
        typeof val === 'object' && val !== null
          ? indexByKind.get((val as { kind?: string }).kind ?? '')
          : undefined;
      if (index === undefined) {
        hook?.(val, this);
        return false;
      }
      const branch = this.types[index] as unknown as { _check(...args: unknown[]): boolean };
      return branch._check(val, flags, hook, path);
    }

    _read(tap: Tap): unknown {
      const start = tap.pos;
      const index = tap.readLong();
      const branch = this.types[index];
      if (branch === undefined) throw new Error(`invalid event union index ${index}`);
      const event = (branch as unknown as { _read(t: Tap): Record<string, unknown> })._read(tap);
      event.kind = kinds[index];
      spanSink?.push(start, tap.pos);
      return event;
    }

    _write(tap: Tap, val: { kind: string }): void {
      const index = indexByKind.get(val.kind);
      if (index === undefined) throw new Error(`unknown event kind: ${String(val.kind)}`);
      tap.writeLong(index);
      (this.types[index] as unknown as { _write(t: Tap, v: unknown): void })._write(tap, val);
    }

    random(): unknown {
      const index = Math.floor(Math.random() * this.types.length);
      const event = (this.types[index] as AvroType).random() as unknown as Record<string, unknown>;
      event.kind = kinds[index];
      return event;
    }

    // Reading one branch of a writer's union: the reader branch with the same name (or an
    // alias) resolves it. A kind this reader has never heard of is still decoded with the
    // writer's own type and keeps its kind, so old processors can skip it instead of
    // rejecting the whole batch.
    _update(resolver: { _read?: (tap: Tap) => unknown }, writer: AvroType, resolveOpts: unknown): void {
      const writerName = writer.name ?? '';
      const index = this.types.findIndex(
        (t) => t.name === writerName || (t.aliases ?? []).includes(writerName),
      );
      if (index >= 0) {
        // A field change inside a known kind must fail loudly here, not fall back.
        const branchResolver = (this.types[index] as AvroType).createResolver(
          writer,
          resolveOpts as never,
        ) as unknown as {
          _read(tap: Tap): Record<string, unknown>;
        };
        const kind = kinds[index];
        resolver._read = (tap) => {
          const event = branchResolver._read(tap);
          event.kind = kind;
          return event;
        };
        return;
      }
      if (writer.typeName !== 'record') return; // unreadable: createResolver reports it
      const kind = kindOfRecord(writerName) ?? writerName;
      const writerRead = writer as unknown as { _read(tap: Tap): Record<string, unknown> };
      resolver._read = (tap) => {
        const event = writerRead._read(tap);
        event.kind = kind;
        return event;
      };
    }
  }

  const type = new EventUnionType(schema, opts);
  type.types.forEach((branch, i) => {
    const kind = kindOfRecord(branch.name ?? '');
    if (kind === undefined) throw new Error(`event record ${branch.name} has no ktrail.kind`);
    kinds[i] = kind;
    indexByKind.set(kind, i);
  });
  return type as unknown as AvroType;
}

// avsc trusts the block counts of arrays and maps: a corrupted count makes it loop for
// billions of items. Every item of ours takes at least one byte, so a count larger than
// the bytes left is corruption, reported before the loop starts.
type BlockReader = { itemsType?: { _read(tap: Tap): unknown }; valuesType?: { _read(tap: Tap): unknown } };

function readBlockCount(tap: Tap): number {
  let n = tap.readLong();
  if (n < 0) {
    n = -n;
    tap.readLong(); // block size in bytes, unused
  }
  if (n > tap.buf.length - tap.pos) {
    throw new Error(`corrupt block count ${n} with ${tap.buf.length - tap.pos} bytes left`);
  }
  return n;
}

const { ArrayType, MapType } = avsc.types as unknown as {
  ArrayType: new (schema: unknown, opts: unknown) => AvroType;
  MapType: new (schema: unknown, opts: unknown) => AvroType;
};

class GuardedArrayType extends ArrayType {
  // `this` is the type, or a resolver that avsc gives the same method (with itemsType set).
  _read(this: BlockReader, tap: Tap): unknown[] {
    const items = this.itemsType as { _read(tap: Tap): unknown };
    const out: unknown[] = [];
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n-- > 0) out.push(items._read(tap));
    }
    return out;
  }
}

class GuardedMapType extends MapType {
  _read(this: BlockReader, tap: Tap & { readString(): string }): Record<string, unknown> {
    const values = this.valuesType as { _read(tap: Tap): unknown };
    const out: Record<string, unknown> = {};
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n-- > 0) {
        const key = tap.readString();
        out[key] = values._read(tap);
      }
    }
    return out;
  }
}

/**
 * A decoded value outside its type's range. avsc reads an `int` varint of any length, so a
 * writer can put 2^40 in an int field; ClickHouse would then store 0 or a wrapped value and
 * the enriched encoder would throw. The codec reports this as dead-letter reason out_of_range.
 */
export class OutOfRangeError extends RangeError {}

const { IntType, LongType } = avsc.types as unknown as {
  IntType: new () => AvroType;
  LongType: new () => AvroType;
};

class CheckedIntType extends IntType {
  _read(tap: Tap): number {
    const n = tap.readLong();
    if (n !== (n | 0)) throw new OutOfRangeError(`int out of 32-bit range: ${n}`);
    return n;
  }
}

/** `long` marked as a JS number: u32 kernel fields (pid, uid, exit code), range-checked on read. */
class U32NumberLongType extends LongType {
  _read(tap: Tap): number {
    const n = tap.readLong();
    if (!(n >= 0 && n <= 0xffff_ffff)) throw new OutOfRangeError(`u32 field out of range: ${n}`);
    return n;
  }
}

const CHECKED_INT: AvroType = new CheckedIntType();
const U32_NUMBER_LONG: AvroType = new U32NumberLongType();

const NUMBER_LONG_MARK = 'ktrail.js';

const isObject = (s: unknown): s is Record<string, unknown> =>
  typeof s === 'object' && s !== null && !Array.isArray(s);

function typeHook(schema: unknown, opts: unknown): AvroType | undefined {
  if (
    typeof schema === 'object' &&
    schema !== null &&
    !Array.isArray(schema) &&
    (schema as Record<string, unknown>).type === 'long' &&
    (schema as Record<string, unknown>)[NUMBER_LONG_MARK] === 'number'
  ) {
    return U32_NUMBER_LONG;
  }
  if (schema === 'int' || (isObject(schema) && schema.type === 'int' && schema.logicalType === undefined))
    return CHECKED_INT;
  if (isEventUnion(schema)) return createEventUnion(schema, opts);
  if (typeof schema === 'object' && schema !== null && !Array.isArray(schema)) {
    const type = (schema as Record<string, unknown>).type;
    if (type === 'array') return new GuardedArrayType(schema, opts);
    if (type === 'map') return new GuardedMapType(schema, opts);
  }
  return undefined;
}

/** Compiles one self-contained schema with ktrail's long and union handling. */
export function compileSchema(schema: unknown): AvroType {
  registerKinds(schema);
  return avsc.Type.forSchema(schema as avsc.Schema, {
    registry: { long: U64_LONG, int: CHECKED_INT },
    typeHook: typeHook as never,
    wrapUnions: 'auto',
  });
}

/**
 * How a field of one of our compiled types is read, for readers that decode the current
 * schema's bytes themselves (processor/src/event-batch-reader.ts): u64 bigint, u32 number,
 * checked int, string, or an array of u64 or of strings. Undefined for anything else.
 */
export type FieldReading = 'u64' | 'u32' | 'int' | 'str' | 'u64s' | 'strs';

export function fieldReading(type: AvroType): FieldReading | undefined {
  if (type === U64_LONG) return 'u64';
  if (type === U32_NUMBER_LONG) return 'u32';
  if (type === CHECKED_INT) return 'int';
  if (type.typeName === 'string') return 'str';
  if (type instanceof GuardedArrayType) {
    const items = (type as unknown as { itemsType: AvroType }).itemsType;
    return items === U64_LONG ? 'u64s' : items.typeName === 'string' ? 'strs' : undefined;
  }
  return undefined;
}
