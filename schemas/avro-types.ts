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

type Tap = { buf: Buffer; pos: number; readLong(): number; writeLong(n: number): void };
type AvroType = avsc.Type;

const TWO_64 = 1n << 64n;
const SCRATCH = Buffer.alloc(8);

/** Unsigned 64-bit long as bigint (see 1. above). */
export const U64_LONG: AvroType = avsc.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigUInt64LE(0),
  // packLongBytes copies the 8 bytes right away, so one scratch buffer serves every write.
  toBuffer: (n: bigint) => {
    SCRATCH.writeBigUInt64LE(n);
    return SCRATCH;
  },
  fromJSON: (json: unknown) => BigInt.asUintN(64, BigInt(json as string | number | bigint)),
  toJSON: (n: bigint) => n.toString(),
  isValid: (n: unknown) => typeof n === 'bigint' && n >= 0n && n < TWO_64,
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

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
    const full =
      s.name.includes('.') || typeof s.namespace !== 'string' ? s.name : `${s.namespace}.${s.name}`;
    KIND_BY_RECORD.set(full, kind);
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
          ? branch.namespace
            ? `${branch.namespace}.${branch.name}`
            : branch.name
          : undefined;
    return name !== undefined && KIND_BY_RECORD.has(name);
  });
}

type UnionBase = AvroType & { readonly types: AvroType[] };
const { WrappedUnionType } = avsc.types as unknown as {
  WrappedUnionType: new (schema: unknown, opts: unknown) => UnionBase;
};

// The instance is frozen by avsc's constructor, so per-union tables live in this closure.
function createEventUnion(schema: unknown, opts: unknown): AvroType {
  const kinds: string[] = [];
  const indexByKind = new Map<string, number>();

  class EventUnionType extends WrappedUnionType {
    _check(val: unknown, _flags: unknown, hook?: (val: unknown, type: unknown) => void): boolean {
      const index =
        typeof val === 'object' && val !== null
          ? indexByKind.get((val as { kind?: string }).kind ?? '')
          : undefined;
      const branch = index === undefined ? undefined : this.types[index];
      const ok = branch?.isValid(val, hook ? { errorHook: hook as never } : undefined);
      if (!ok && hook && branch === undefined) hook(val, this);
      return ok === true;
    }

    _read(tap: Tap): unknown {
      const index = tap.readLong();
      const branch = this.types[index];
      if (branch === undefined) throw new Error(`invalid event union index ${index}`);
      const event = (branch as unknown as { _read(t: Tap): Record<string, unknown> })._read(tap);
      event.kind = kinds[index];
      return event;
    }

    _write(tap: Tap, val: { kind: string }): void {
      const index = indexByKind.get(val.kind);
      if (index === undefined) throw new Error(`unknown event kind: ${String(val.kind)}`);
      tap.writeLong(index);
      (this.types[index] as unknown as { _write(t: Tap, v: unknown): void })._write(tap, val);
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
  return type;
}

const NUMBER_LONG_MARK = 'ktrail.js';

function typeHook(schema: unknown, opts: unknown): AvroType | undefined {
  if (
    typeof schema === 'object' &&
    schema !== null &&
    !Array.isArray(schema) &&
    (schema as Record<string, unknown>).type === 'long' &&
    (schema as Record<string, unknown>)[NUMBER_LONG_MARK] === 'number'
  ) {
    return avsc.Type.forSchema('long', { registry: {} }); // avsc's own number long
  }
  if (isEventUnion(schema)) return createEventUnion(schema, opts);
  return undefined;
}

/** Compiles one self-contained schema with ktrail's long and union handling. */
export function compileSchema(schema: unknown): AvroType {
  registerKinds(schema);
  return avsc.Type.forSchema(schema as avsc.Schema, {
    registry: { long: U64_LONG },
    typeHook: typeHook as never,
    wrapUnions: 'auto',
  });
}
