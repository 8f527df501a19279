// The wire codec. Every message names its writer schema:
//  - single-object encoding (default): C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | body
//  - Confluent wire format (when a schema registry is configured): 00 | 4-byte big-endian id | body
// Writers encode into one reused buffer per schema and hand out an owned copy. Readers find
// the writer schema by fingerprint (or registry id) among ALL known versions, resolve it to
// the current reader schema once per writer, and report anything unreadable as PoisonError.
// Registry ids are fetched before decoding (prepare), so decoding itself stays synchronous.
import type avsc from 'avsc';
import { KtrailError, PoisonError } from '../common/errors.js';
import { OutOfRangeError, readEventSpans } from './avro-types.js';
import {
  type Catalog,
  describeVersion,
  loadCatalog,
  type SchemaName,
  type SchemaVersion,
} from './catalog.js';
import type { SchemaRegistryClient } from './registry-client.js';
import type { KtrailEvent, SchemaTypes } from './types.js';

export const SINGLE_OBJECT_MAGIC = Buffer.from([0xc3, 0x01]);
export const SINGLE_OBJECT_HEADER_BYTES = 10;
export const CONFLUENT_MAGIC = 0x00;
export const CONFLUENT_HEADER_BYTES = 5;
/**
 * The id a Confluent-framed message carries until its writer knows the registry's id (the
 * registry may be down when it is encoded): registries number schemas from 1, and the
 * writer sets the real id before the message leaves (setSchemaId).
 */
export const PENDING_SCHEMA_ID = 0;
/** How long an id the registry did not have is not asked for again (its messages dead-letter meanwhile). */
const UNKNOWN_ID_RETRY_MS = 60_000;

let sharedCatalog: Catalog | undefined;

/** All schemas, compiled once per process on first use. */
export function catalog(): Catalog {
  sharedCatalog ??= loadCatalog();
  return sharedCatalog;
}

export function singleObjectHeader(fingerprint: bigint): Buffer {
  const header = Buffer.alloc(SINGLE_OBJECT_HEADER_BYTES);
  SINGLE_OBJECT_MAGIC.copy(header, 0);
  header.writeBigUInt64LE(fingerprint, 2);
  return header;
}

export function confluentHeader(schemaId: number): Buffer {
  const header = Buffer.alloc(CONFLUENT_HEADER_BYTES);
  header[0] = CONFLUENT_MAGIC;
  header.writeUInt32BE(schemaId, 1);
  return header;
}

/** Whether `bytes` starts with a single-object header (magic and fingerprint). */
const isSingleObject = (bytes: Buffer) =>
  bytes.length >= SINGLE_OBJECT_HEADER_BYTES && bytes[0] === 0xc3 && bytes[1] === 0x01;

/** Whether `bytes` starts with a Confluent header (magic and schema id). */
const isConfluent = (bytes: Buffer) => bytes.length >= CONFLUENT_HEADER_BYTES && bytes[0] === CONFLUENT_MAGIC;

/**
 * Writes the registry's id into a message framed with PENDING_SCHEMA_ID (in place); other
 * messages are left as they are. True when the message carries a real id afterwards.
 */
export function setSchemaId(message: Buffer, schemaId: number): boolean {
  if (!isConfluent(message)) return false;
  if (message.readUInt32BE(1) === PENDING_SCHEMA_ID) message.writeUInt32BE(schemaId, 1);
  return true;
}

export type WireFormat = { format: 'single-object' } | { format: 'confluent'; schemaId: number };

export interface Encoder<T> {
  readonly schema: SchemaName;
  readonly fingerprint: bigint;
  readonly wire: WireFormat;
  /** Header + Avro body, in a new Buffer the caller owns. Throws KtrailError on an invalid value. */
  encode(value: T): Buffer;
}

/** Where the first error of an invalid value is, e.g. `events.3.tsNs: -1` (slow path, errors only). */
function describeInvalid(type: avsc.Type, value: unknown): string {
  const problems: string[] = [];
  type.isValid(value, {
    errorHook: (path: string[], any: unknown) => {
      const shown =
        typeof any === 'bigint'
          ? `${any}n`
          : JSON.stringify(any, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
      problems.push(`${path.join('.') || '(root)'}: ${shown?.slice(0, 80)}`);
    },
  });
  return problems.slice(0, 5).join('; ');
}

/** An encoder for the current version of `schema`; single-object unless a registry id is given. */
export function createEncoder<N extends SchemaName>(
  schema: N,
  wire: WireFormat = { format: 'single-object' },
): Encoder<SchemaTypes[N]> {
  const version = catalog().current[schema];
  const type = version.type;
  const header =
    wire.format === 'confluent' ? confluentHeader(wire.schemaId) : singleObjectHeader(version.fingerprint);
  const headerBytes = header.length;
  // One scratch buffer, header written once; it only grows.
  let scratch = Buffer.alloc(64 * 1024);
  header.copy(scratch, 0);

  return {
    schema,
    fingerprint: version.fingerprint,
    wire,
    encode(value) {
      let end: number;
      try {
        end = type.encode(value, scratch, headerBytes);
        if (end < 0) {
          // avsc returns minus the missing bytes: grow once to fit (with headroom) and redo.
          const grown = Buffer.alloc(Math.max(scratch.length * 2, Math.ceil((scratch.length - end) * 1.25)));
          header.copy(grown, 0);
          scratch = grown;
          end = type.encode(value, scratch, headerBytes);
        }
      } catch (cause) {
        throw new KtrailError(`cannot encode ${schema}: ${describeInvalid(type, value) || String(cause)}`, {
          cause,
          context: { schema },
        });
      }
      const out = Buffer.allocUnsafe(end);
      scratch.copy(out, 0, 0, end);
      return out;
    },
  };
}

/**
 * EventBatch written in two steps, so a collector can encode each event when it arrives
 * and hold bytes rather than objects until the batch closes (objects held for a batch's
 * lifetime outlive V8's young generation at low rates, and promoting them cost more CPU
 * than encoding them). The bytes equal `createEncoder('EventBatch').encode` of the same
 * batch: `events` is the envelope's last field, so a framed message is the envelope with
 * an empty array, minus that array's end marker, then one block (count, items) and the
 * end marker again.
 */
export interface EventBatchFramer {
  readonly fingerprint: bigint;
  readonly wire: WireFormat;
  /**
   * Writes one event (an item of EventBatch.events) at `pos` of `buf`. Returns where it
   * ends, or a negative number, minus the bytes that did not fit. Throws KtrailError on an
   * invalid event (nothing after `pos` is meaningful then).
   */
  writeEvent(event: KtrailEvent, buf: Buffer, pos: number): number;
  /** Header + EventBatch: the envelope, then `count` events written by writeEvent as `items`. */
  frame(envelope: Omit<SchemaTypes['EventBatch'], 'events'>, items: Uint8Array, count: number): Buffer;
}

export function createEventBatchFramer(wire: WireFormat = { format: 'single-object' }): EventBatchFramer {
  const envelopeEncoder = createEncoder('EventBatch', wire);
  const type = catalog().current.EventBatch.type as unknown as {
    fields: Array<{ name: string; type: { itemsType?: avsc.Type } }>;
  };
  const last = type.fields.at(-1);
  const itemType = last?.type.itemsType;
  if (last?.name !== 'events' || itemType === undefined)
    throw new KtrailError('EventBatch must end with its `events` array for the framer to append items');
  const countBytes = Buffer.alloc(10);
  return {
    fingerprint: envelopeEncoder.fingerprint,
    wire,
    writeEvent(event, buf, pos) {
      try {
        return itemType.encode(event, buf, pos);
      } catch (cause) {
        throw new KtrailError(
          `cannot encode ${event.kind} event: ${describeInvalid(itemType, event) || String(cause)}`,
          {
            cause,
            context: { kind: event.kind },
          },
        );
      }
    },
    frame(envelope, items, count) {
      const head = envelopeEncoder.encode({ ...envelope, events: [] }); // ends with 0x00: no items
      if (count === 0) return head;
      // The block count: an Avro long, zigzag varint of a positive number.
      let n = count * 2;
      let c = 0;
      while (n > 0x7f) {
        countBytes[c++] = (n & 0x7f) | 0x80;
        n = Math.floor(n / 128);
      }
      countBytes[c++] = n;
      const out = Buffer.allocUnsafe(head.length - 1 + c + items.length + 1);
      let at = head.copy(out, 0, 0, head.length - 1);
      at += countBytes.copy(out, at, 0, c);
      out.set(items, at);
      out[at + items.length] = 0;
      return out;
    },
  };
}

export interface Decoded<N extends SchemaName = SchemaName> {
  schema: N;
  value: SchemaTypes[N];
  /** The writer's version: a history number, 'current', or 'registry' for schemas only the registry knew. */
  writerVersion: number | 'current' | 'registry';
  writerFingerprint: bigint;
  /** The Avro body (the message past its header). */
  body: Buffer;
}

interface ReaderPlan {
  writer: SchemaVersion;
  writerVersion: number | 'current' | 'registry';
  reader: SchemaVersion;
  resolver: avsc.Resolver | undefined;
}

export interface SchemaResolver {
  /** Decodes a single-object message, or a Confluent one whose id is already known. Throws PoisonError. */
  decode(bytes: Buffer): Decoded;
  /** Like decode, but also expects `schema` (e.g. EventBatch on the events topic). */
  decodeAs<N extends SchemaName>(schema: N, bytes: Buffer): SchemaTypes[N];
  /**
   * decodeAs('EventBatch'), plus where its events' bytes lie when the message was written
   * with the current schema (undefined otherwise, or with no events).
   */
  decodeEventBatch(bytes: Buffer): { value: SchemaTypes['EventBatch']; eventBytes: EventBytes | undefined };
  /**
   * Where the Avro body starts when `bytes` was written with the current `schema` itself (same
   * fingerprint, by header or registry id), so a reader of that schema's bytes can read it;
   * undefined otherwise (another version, unknown, not Avro: decode tells which).
   */
  currentBody(schema: SchemaName, bytes: Buffer): number | undefined;
  /** Like decode, and fetches unknown Confluent ids from the registry first. */
  decodeAsync(bytes: Buffer): Promise<Decoded>;
  /**
   * Makes the writer schemas of these messages known, fetching registry ids not seen yet:
   * undefined when nothing is missing (the common case: decode at once). Rejects with the
   * registry's error while it can't answer (TransientError, RegistryRefusedError). An id
   * the registry does not have, or a schema ktrail can't read, is remembered: its messages
   * decode to a PoisonError (unknown_schema, incompatible_schema).
   */
  prepare(values: ReadonlyArray<Buffer | null>): Promise<void> | undefined;
  /** Makes a Confluent schema id known without a registry (tests, pinned deployments). */
  addSchemaId(id: number, schema: Record<string, unknown>): void;
}

/** PoisonError whose context.reason is the DeadLetter.reason class: unknown_schema,
 * incompatible_schema, undecodable, out_of_range or wrong_schema. */
function poison(message: string, context: Record<string, unknown>, cause?: unknown): PoisonError {
  return new PoisonError(message, cause === undefined ? { context } : { cause, context });
}

function schemaNameOf(schema: Record<string, unknown>): SchemaName | undefined {
  const name = String(schema.name ?? '');
  const short = name.slice(name.lastIndexOf('.') + 1);
  return (Object.keys(catalog().current) as SchemaName[]).find((n) => n === short);
}

/** How to read messages of writer schema `writer` as the current schema of its name. */
function planFor(writer: SchemaVersion, writerVersion: ReaderPlan['writerVersion']): ReaderPlan {
  const reader = catalog().current[writer.name];
  let resolver: avsc.Resolver | undefined;
  if (writer.fingerprint !== reader.fingerprint) {
    try {
      resolver = reader.type.createResolver(writer.type);
    } catch (cause) {
      throw poison(
        `writer schema ${writer.name} ${writer.version} can't be read as the current ${writer.name}`,
        { reason: 'incompatible_schema', schema: writer.name, writerFingerprint: writer.fingerprintKey },
        cause,
      );
    }
  }
  return { writer, writerVersion, reader, resolver };
}

/**
 * Where each event of a decoded EventBatch lies in its message: event i is
 * body[spans[2i], spans[2i + 1]), its union branch index and record as the current schema
 * writes them.
 */
export interface EventBytes {
  body: Buffer;
  spans: number[];
}

/**
 * Decodes the Avro body after the header; a body that does not decode is a PoisonError.
 * With `spans`, a body written with the current schema also notes its events' byte spans.
 */
function read(plan: ReaderPlan, bytes: Buffer, bodyStart: number, spans?: number[]): Decoded {
  const body = bytes.subarray(bodyStart);
  let value: unknown;
  try {
    value =
      spans !== undefined && plan.resolver === undefined
        ? readEventSpans(spans, () => plan.reader.type.fromBuffer(body))
        : plan.reader.type.fromBuffer(body, plan.resolver);
  } catch (cause) {
    throw poison(
      `undecodable ${plan.writer.name} body: ${(cause as Error).message}`,
      {
        reason: cause instanceof OutOfRangeError ? 'out_of_range' : 'undecodable',
        schema: plan.writer.name,
        writerFingerprint: plan.writer.fingerprintKey,
        bytes: bytes.length,
      },
      cause,
    );
  }
  return {
    schema: plan.reader.name,
    value: value as SchemaTypes[SchemaName],
    writerVersion: plan.writerVersion,
    writerFingerprint: plan.writer.fingerprint,
    body,
  };
}

/**
 * Finds writer schemas by fingerprint (current + schemas/history) or by registry id, and
 * reads every message as the current reader schema of the same name.
 */
export function createSchemaResolver(options: { registry?: SchemaRegistryClient } = {}): SchemaResolver {
  const cat = catalog();
  const plansByFingerprint = new Map<string, ReaderPlan>();
  const plansByConfluentId = new Map<number, ReaderPlan>();
  /** Ids whose schema could not be used, with the error their messages get, and when. */
  const failedIds = new Map<number, { error: PoisonError; at: number }>();

  function planFromSchemaJson(schema: Record<string, unknown>, context: Record<string, unknown>): ReaderPlan {
    const name = schemaNameOf(schema);
    if (name === undefined)
      throw poison(`registry schema ${String(schema.name)} is not a ktrail schema`, {
        reason: 'unknown_schema',
        ...context,
      });
    const version = describeVersion(name, 'current', schema);
    const known = cat.byFingerprint.get(version.fingerprintKey);
    return known ? planFor(known, known.version) : planFor(version, 'registry');
  }

  /** One registry lookup; a schema that can't be used is remembered as its messages' PoisonError. */
  async function fetchId(registry: SchemaRegistryClient, id: number): Promise<void> {
    try {
      const schema = await registry.getSchemaById(id);
      plansByConfluentId.set(id, planFromSchemaJson(schema, { schemaId: id }));
      failedIds.delete(id);
    } catch (err) {
      if (!(err instanceof PoisonError)) throw err;
      failedIds.set(id, { error: err, at: Date.now() });
    }
  }

  function prepare(values: ReadonlyArray<Buffer | null>): Promise<void> | undefined {
    const registry = options.registry;
    if (registry === undefined) return undefined;
    let missing: Set<number> | undefined;
    for (const v of values) {
      if (v === null || !isConfluent(v)) continue;
      const id = v.readUInt32BE(1);
      if (plansByConfluentId.has(id)) continue;
      const failed = failedIds.get(id);
      if (failed !== undefined && Date.now() - failed.at < UNKNOWN_ID_RETRY_MS) continue;
      missing ??= new Set();
      missing.add(id);
    }
    if (missing === undefined) return undefined;
    return Promise.all([...missing].map((id) => fetchId(registry, id))).then(() => undefined);
  }

  function decode(bytes: Buffer, spans?: number[]): Decoded {
    if (isSingleObject(bytes)) {
      const key = bytes.toString('hex', 2, SINGLE_OBJECT_HEADER_BYTES);
      let plan = plansByFingerprint.get(key);
      if (plan === undefined) {
        const writer = cat.byFingerprint.get(key);
        if (writer === undefined) {
          throw poison('unknown writer schema fingerprint', {
            reason: 'unknown_schema',
            fingerprint: key,
            bytes: bytes.length,
          });
        }
        plan = planFor(writer, writer.version);
        plansByFingerprint.set(key, plan);
      }
      return read(plan, bytes, SINGLE_OBJECT_HEADER_BYTES, spans);
    }
    if (isConfluent(bytes)) {
      const id = bytes.readUInt32BE(1);
      const plan = plansByConfluentId.get(id);
      if (plan === undefined) {
        const failed = failedIds.get(id);
        if (failed !== undefined) throw failed.error;
        throw poison(
          options.registry === undefined
            ? 'unknown schema registry id (no registry configured)'
            : 'unknown schema registry id',
          { reason: 'unknown_schema', schemaId: id, bytes: bytes.length },
        );
      }
      return read(plan, bytes, CONFLUENT_HEADER_BYTES, spans);
    }
    throw poison('not a single-object or Confluent Avro message', {
      reason: 'undecodable',
      head: bytes.subarray(0, 10).toString('hex'),
      bytes: bytes.length,
    });
  }

  function expect<N extends SchemaName>(schema: N, decoded: Decoded): SchemaTypes[N] {
    if (decoded.schema !== schema) {
      throw poison(`expected ${schema}, got ${decoded.schema}`, {
        reason: 'wrong_schema',
        schema: decoded.schema,
        writerFingerprint: decoded.writerFingerprint.toString(16),
      });
    }
    return decoded.value as SchemaTypes[N];
  }

  return {
    decode: (bytes) => decode(bytes),
    decodeAs: (schema, bytes) => expect(schema, decode(bytes)),
    decodeEventBatch(bytes) {
      const spans: number[] = [];
      const decoded = decode(bytes, spans);
      const value = expect('EventBatch', decoded);
      const complete = spans.length > 0 && spans.length === 2 * value.events.length;
      return { value, eventBytes: complete ? { body: decoded.body, spans } : undefined };
    },
    currentBody(schema, bytes) {
      const current = cat.current[schema];
      if (isSingleObject(bytes)) {
        const fingerprint = bytes.readBigUInt64LE(2);
        return fingerprint === current.fingerprint ? SINGLE_OBJECT_HEADER_BYTES : undefined;
      }
      if (isConfluent(bytes)) {
        const plan = plansByConfluentId.get(bytes.readUInt32BE(1));
        return plan?.writer.fingerprint === current.fingerprint ? CONFLUENT_HEADER_BYTES : undefined;
      }
      return undefined;
    },
    async decodeAsync(bytes) {
      await prepare([bytes]);
      return decode(bytes);
    },
    prepare,
    addSchemaId(id, schema) {
      plansByConfluentId.set(id, planFromSchemaJson(schema, { schemaId: id }));
    },
  };
}

/**
 * The events the decoder produces already are Avro values: the event union picks its branch
 * from `kind`, so no wrapping ({"io.ktrail.v1.ProcExec": ...}) and no field copying is needed.
 * This identity exists to make that explicit at call sites.
 */
export function toAvroEvent<E extends KtrailEvent>(event: E): E {
  return event;
}
