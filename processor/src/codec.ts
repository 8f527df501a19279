// Avro in and out for the processor. Reads single-object-encoded messages (0xC3 0x01,
// 8-byte little-endian CRC-64-AVRO fingerprint, body) by their writer's fingerprint from
// the schemas/ catalog and resolves writer -> reader (current) schema, so messages written
// with an older or a newer schema both land. Anything unreadable is a PoisonError: the
// caller sends it to the dead-letter path and moves on.
import { readFileSync } from 'node:fs';
import type avsc from 'avsc';
import { PoisonError } from '../../common/errors.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { type Catalog, loadCatalog, type SchemaName } from '../../schemas/catalog.js';
import { fingerprint64, fingerprintBytes } from '../../schemas/fingerprint.js';
import type { Alert } from './alerts.js';
import type { DeadLetter, EnrichedBatch, ProcessorCodec } from './processor.js';
import type { DecodedEventBatch } from './rows.js';

const MAGIC_0 = 0xc3;
const MAGIC_1 = 0x01;
const HEADER = 10;

/** A writer schema for single-object encoding: compiled type plus its 10-byte header. */
export interface Writer {
  type: avsc.Type;
  header: Buffer;
}

export function writerFor(schema: unknown): Writer {
  const header = Buffer.concat([Buffer.from([MAGIC_0, MAGIC_1]), fingerprintBytes(fingerprint64(schema))]);
  return { type: compileSchema(schema), header };
}

export function encodeSingleObject(writer: Writer, value: unknown): Buffer {
  return Buffer.concat([writer.header, writer.type.toBuffer(value)]);
}

function localSchema(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`./schemas-local/${name}.avsc`, import.meta.url), 'utf8'));
}

export class SingleObjectReader {
  /** Resolvers by writer fingerprint key; the reader side is always the current schema. */
  private readonly resolvers = new Map<string, avsc.Resolver | null>();

  constructor(
    private readonly catalog: Catalog,
    private readonly name: SchemaName,
  ) {}

  decode(buf: Buffer): unknown {
    if (buf.length < HEADER || buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1)
      throw new PoisonError(`${this.name}: not a single-object Avro message`, {
        context: { reason: 'undecodable' },
      });
    const key = buf.toString('hex', 2, HEADER);
    let resolver = this.resolvers.get(key);
    const reader = this.catalog.current[this.name];
    if (resolver === undefined) {
      const writer = this.catalog.byFingerprint.get(key);
      if (writer === undefined || writer.name !== this.name)
        throw new PoisonError(`${this.name}: unknown writer schema ${key}`, {
          context: { reason: 'unknown_schema', fingerprint: key },
        });
      try {
        resolver = writer === reader ? null : reader.type.createResolver(writer.type);
      } catch (err) {
        throw new PoisonError(`${this.name}: writer schema ${key} cannot be read as the current one`, {
          cause: err,
          context: { reason: 'incompatible_schema', fingerprint: key },
        });
      }
      this.resolvers.set(key, resolver);
    }
    try {
      const body = buf.subarray(HEADER);
      return resolver === null ? reader.type.fromBuffer(body) : reader.type.fromBuffer(body, resolver);
    } catch (err) {
      throw new PoisonError(`${this.name}: undecodable body: ${(err as Error).message}`, {
        cause: err,
        context: { reason: 'undecodable', fingerprint: key },
      });
    }
  }
}

export function createProcessorCodec(catalog: Catalog = loadCatalog()): ProcessorCodec {
  const events = new SingleObjectReader(catalog, 'EventBatch');
  const containers = new SingleObjectReader(catalog, 'ContainerRecord');
  const deadLetter: Writer = {
    type: catalog.current.DeadLetter.type,
    header: headerOf(catalog.current.DeadLetter.fingerprint),
  };
  const enriched = writerFor(localSchema('EnrichedBatch'));
  const alert = writerFor(localSchema('Alert'));
  return {
    decodeEventBatch: (value) => events.decode(value) as DecodedEventBatch,
    decodeContainerRecord: (value) => containers.decode(value) as Record<string, unknown>,
    encodeDeadLetter: (dl: DeadLetter) => encodeSingleObject(deadLetter, dl),
    encodeEnriched: (batch: EnrichedBatch) => encodeSingleObject(enriched, batch),
    encodeAlert: (a: Alert) => encodeSingleObject(alert, a),
  };
}

function headerOf(fp: bigint): Buffer {
  return Buffer.concat([Buffer.from([MAGIC_0, MAGIC_1]), fingerprintBytes(fp)]);
}

/** Readers for the processor's own outputs (tests and downstream consumers). */
export function createOutputReaders(): { enriched: avsc.Type; alert: avsc.Type } {
  return {
    enriched: writerFor(localSchema('EnrichedBatch')).type,
    alert: writerFor(localSchema('Alert')).type,
  };
}
