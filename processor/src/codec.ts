// Avro in and out for the processor. Reading is schemas/codec.ts' resolver: the writer
// schema is found by fingerprint (single-object encoding) or registry id (Confluent) and
// resolved to the current reader schema, so messages written with an older or a newer
// schema both land. Anything unreadable is a PoisonError whose context.reason is the
// DeadLetter.reason class: the caller sends it to the dead-letter path and moves on.
// Writing: dead letters with the schemas/ encoder, the processor's own outputs (enriched,
// alerts) single-object encoded with their local schemas.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type avsc from 'avsc';
import { REPO_ROOT } from '../../common/repo-root.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { expandSchema, loadCurrentSchemas, loadEventDefinitions } from '../../schemas/catalog.js';
import {
  createEncoder,
  createSchemaResolver,
  type SchemaResolver,
  singleObjectHeader,
} from '../../schemas/codec.js';
import { fingerprint64 } from '../../schemas/fingerprint.js';
import type { Alert } from './alerts.js';
import type { EnrichedBatch } from './enriched.js';
import type { ProcessorCodec } from './processor.js';
import type { DecodedEventBatch } from './rows.js';

/**
 * One of the processor's own output schemas (schemas-local/), with the event records it
 * names inlined (schemas/events/): the self-contained schema a reader needs, its compiled
 * type and its single-object header.
 */
export function localSchema(name: 'EnrichedBatch' | 'Alert'): Record<string, unknown> {
  const text = readFileSync(join(REPO_ROOT, 'processor/src/schemas-local', `${name}.avsc`), 'utf8');
  return expandSchema(JSON.parse(text) as Record<string, unknown>, loadEventDefinitions());
}

function localWriter(name: 'EnrichedBatch' | 'Alert'): { type: avsc.Type; header: Buffer } {
  const schema = localSchema(name);
  return { type: compileSchema(schema), header: singleObjectHeader(fingerprint64(schema)) };
}

/**
 * Header + Avro body in one exact-size buffer. Not `type.toBuffer`: past its 1 KiB scratch it
 * encodes the value twice (once to size it), and an enriched message of 500 events is ~100
 * KiB. Here one scratch buffer, grown to the largest message seen, takes a single pass.
 */
let scratch = Buffer.allocUnsafe(256 * 1024);

function encodeSingleObject(writer: { type: avsc.Type; header: Buffer }, value: unknown): Buffer {
  const at = writer.header.length;
  for (;;) {
    const end = writer.type.encode(value, scratch, at);
    if (end >= 0) {
      const out = Buffer.allocUnsafe(end);
      writer.header.copy(out, 0);
      scratch.copy(out, at, at, end);
      return out;
    }
    scratch = Buffer.allocUnsafe(2 * (scratch.length - end)); // end < 0: the bytes missing
  }
}

/**
 * The processor's codec over the schemas/ resolver (single-object by fingerprint, or the
 * Confluent wire format for ids it was given), plus encoders for the processor's outputs.
 * Pass a resolver to share its Confluent ids (tests pin schemas with addSchemaId).
 */
export function createProcessorCodec(resolver: SchemaResolver = createSchemaResolver()): ProcessorCodec {
  const deadLetter = createEncoder('DeadLetter');
  const enriched = localWriter('EnrichedBatch');
  const alert = localWriter('Alert');
  return {
    decodeEventBatch: (value) => resolver.decodeAs('EventBatch', value) as unknown as DecodedEventBatch,
    decodeContainerRecord: (value) =>
      resolver.decodeAs('ContainerRecord', value) as unknown as Record<string, unknown>,
    decodeCollectorStats: (value) =>
      resolver.decodeAs('CollectorStats', value) as unknown as Record<string, unknown>,
    encodeDeadLetter: (dl) => deadLetter.encode(dl),
    encodeEnriched: (batch: EnrichedBatch) => encodeSingleObject(enriched, batch),
    encodeAlert: (a: Alert) => encodeSingleObject(alert, a),
  };
}

/** The topics `createTopicDecoder` reads, by their role (names come from the topic prefix). */
export const TOPIC_KINDS = ['events', 'containers', 'stats', 'deadletter', 'enriched', 'alerts'] as const;
export type TopicKind = (typeof TOPIC_KINDS)[number];

const SCHEMA_BY_TOPIC = {
  events: 'EventBatch',
  containers: 'ContainerRecord',
  stats: 'CollectorStats',
  deadletter: 'DeadLetter',
} as const;

/** The current, self-contained writer schema of a topic's messages: what a reader in any language needs. */
export function topicSchema(kind: TopicKind): Record<string, unknown> {
  if (kind === 'enriched') return localSchema('EnrichedBatch');
  if (kind === 'alerts') return localSchema('Alert');
  return loadCurrentSchemas()[SCHEMA_BY_TOPIC[kind]];
}

/**
 * Decodes a message of any ktrail topic (`./ktrail tail`, tests, downstream readers in
 * TypeScript): the collector's topics and dead
 * letters through the schema resolver (any known version), the processor's outputs with
 * their current local schema, whose single-object header must match.
 */
export function createTopicDecoder(): (kind: TopicKind, value: Buffer) => unknown {
  const resolver = createSchemaResolver();
  const outputs = { enriched: localWriter('EnrichedBatch'), alerts: localWriter('Alert') };
  return (kind, value) => {
    if (kind !== 'enriched' && kind !== 'alerts') return resolver.decodeAs(SCHEMA_BY_TOPIC[kind], value);
    const { type, header } = outputs[kind];
    if (value.length < header.length || !value.subarray(0, header.length).equals(header))
      throw new Error(
        `not single-object encoded with the current ${kind} schema (header ${value.subarray(0, 10).toString('hex')})`,
      );
    return type.fromBuffer(value.subarray(header.length));
  };
}
