// Avro in and out for the processor. Reading is schemas/codec.ts' resolver: the writer
// schema is found by fingerprint (single-object encoding) or registry id (Confluent) and
// resolved to the current reader schema, so messages written with an older or a newer
// schema both land. Anything unreadable is a PoisonError: the caller sends it to the
// dead-letter path and moves on. Writing: the processor's own outputs (enriched, alerts)
// and dead letters, single-object encoded.
import { readFileSync } from 'node:fs';
import type avsc from 'avsc';
import { PoisonError } from '../../common/errors.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { loadCatalog } from '../../schemas/catalog.js';
import { createSchemaResolver, type SchemaResolver } from '../../schemas/codec.js';
import { fingerprint64, fingerprintBytes } from '../../schemas/fingerprint.js';
import type { Alert } from './alerts.js';
import type { DeadLetter, EnrichedBatch, ProcessorCodec } from './processor.js';
import type { DecodedEventBatch } from './rows.js';

const MAGIC_0 = 0xc3;
const MAGIC_1 = 0x01;
const _HEADER = 10;

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

/**
 * The processor's codec over the schemas/ resolver (single-object by fingerprint, or the
 * Confluent wire format for ids it was given), plus encoders for the processor's outputs.
 * Pass a resolver to share its Confluent ids (tests pin schemas with addSchemaId).
 */
export function createProcessorCodec(resolver: SchemaResolver = createSchemaResolver()): ProcessorCodec {
  const cat = loadCatalog();
  const deadLetter: Writer = {
    type: cat.current.DeadLetter.type,
    header: headerOf(cat.current.DeadLetter.fingerprint),
  };
  const enriched = writerFor(localSchema('EnrichedBatch'));
  const alert = writerFor(localSchema('Alert'));
  return {
    decodeEventBatch: (value) =>
      withReason(() => resolver.decodeAs('EventBatch', value)) as unknown as DecodedEventBatch,
    decodeContainerRecord: (value) =>
      withReason(() => resolver.decodeAs('ContainerRecord', value)) as unknown as Record<string, unknown>,
    decodeCollectorStats: (value) =>
      withReason(() => resolver.decodeAs('CollectorStats', value)) as unknown as Record<string, unknown>,
    encodeDeadLetter: (dl: DeadLetter) => encodeSingleObject(deadLetter, dl),
    encodeEnriched: (batch: EnrichedBatch) => encodeSingleObject(enriched, batch),
    encodeAlert: (a: Alert) => encodeSingleObject(alert, a),
  };
}

/** Adds the dead-letter reason class (DeadLetter.reason) to the resolver's PoisonErrors. */
function withReason<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof PoisonError && err.context.reason === undefined)
      err.context.reason = /unknown|not a ktrail/.test(err.message) ? 'unknown_schema' : 'undecodable';
    throw err;
  }
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
