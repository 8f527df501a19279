// Avro in and out for the processor. Reading is schemas/codec.ts' resolver: the writer
// schema is found by fingerprint (single-object encoding) or registry id (Confluent) and
// resolved to the current reader schema, so messages written with an older or a newer
// schema both land. Anything unreadable is a PoisonError whose context.reason is the
// DeadLetter.reason class: the caller sends it to the dead-letter path and moves on.
// Writing: dead letters with the schemas/ encoder, the processor's own outputs (enriched,
// alerts) through one scratch buffer; single-object encoded, or with a schema registry in
// the Confluent wire format under ids the processor registers (subjects `<topic>-value`).
// With a registry, `prepare` runs before each fetched batch is decoded (schema-gate.ts): it
// registers the outputs' schemas once and looks up the ids it has not seen.
import type { KtrailConfig } from '../../common/config.js';
import { KtrailError } from '../../common/errors.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createLogger, type Logger } from '../../common/log.js';
import {
  catalog,
  confluentHeader,
  createEncoder,
  createSchemaResolver,
  PENDING_SCHEMA_ID,
  type SchemaResolver,
  setSchemaId,
  singleObjectHeader,
} from '../../schemas/codec.js';
import { createSchemaRegistration, topicSubjects, valueSubject } from '../../schemas/registration.js';
import {
  type CompatibilityLevel,
  createSchemaRegistryClient,
  type SchemaRegistryClient,
} from '../../schemas/registry-client.js';
import type { Alert } from './alerts.js';
import type { EnrichedBatch } from './enriched.js';
import { type BodyWriter, enrichedBodyWriter } from './enriched-writer.js';
import type { ProcessorCodec } from './processor.js';
import type { DecodedEventBatch } from './rows.js';

/** One of the processor's own output schemas (schemas/): how its body is written, and its single-object header. */
interface OutputWriter<T> {
  write: BodyWriter<T>;
  header: Buffer;
}

function localWriter<T>(name: 'EnrichedBatch' | 'Alert'): OutputWriter<T> {
  const { type, fingerprint } = catalog().current[name];
  return { write: (v, buf, pos) => type.encode(v, buf, pos), header: singleObjectHeader(fingerprint) };
}

/** The enriched writer, and whether events may be copied as they arrived (enriched-writer.ts). */
function enrichedWriter(): { writer: OutputWriter<EnrichedBatch>; copiesEvents: boolean } {
  const { current } = catalog();
  const { write, copiesEvents } = enrichedBodyWriter(current.EnrichedBatch.type, current.EventBatch.type);
  return { writer: { write, header: singleObjectHeader(current.EnrichedBatch.fingerprint) }, copiesEvents };
}

/**
 * Header + Avro body in one exact-size buffer. Not `type.toBuffer`: past its 1 KiB scratch it
 * encodes the value twice (once to size it), and an enriched message of 500 events is ~100
 * KiB. Here one scratch buffer, grown to the largest message seen, takes a single pass.
 */
let scratch = Buffer.allocUnsafe(256 * 1024);

function encodeFramed<T>(writer: OutputWriter<T>, value: T): Buffer {
  const at = writer.header.length;
  for (;;) {
    const end = writer.write(value, scratch, at);
    if (end >= 0) {
      const out = Buffer.allocUnsafe(end);
      writer.header.copy(out, 0);
      scratch.copy(out, at, at, end);
      return out;
    }
    scratch = Buffer.allocUnsafe(2 * (scratch.length - end)); // end < 0: the bytes missing
  }
}

/** The processor's side of a schema registry: where its outputs go, and the level for their subjects. */
export interface ProcessorRegistryOptions {
  client: SchemaRegistryClient;
  topics: { deadletter: string; enriched: string; alerts: string };
  compatibility: CompatibilityLevel;
  logger?: Logger;
}

/** The codec the configuration asks for: single-object, or the registry's wire format. */
export function processorCodecFor(kafka: KtrailConfig['kafka']): ProcessorCodec {
  if (kafka.schemaRegistryUrl === undefined) return createProcessorCodec();
  const client = createSchemaRegistryClient({ url: kafka.schemaRegistryUrl });
  const names = topicNames(kafka.topicPrefix);
  return createProcessorCodec(createSchemaResolver({ registry: client }), {
    client,
    topics: { deadletter: names.deadletter, enriched: names.eventsEnriched, alerts: names.alerts },
    compatibility: kafka.schemaRegistryCompatibility,
  });
}

/**
 * The processor's codec over the schemas/ resolver (single-object by fingerprint, or the
 * Confluent wire format by registry id), plus encoders for the processor's outputs.
 * Pass a resolver to share its Confluent ids (tests pin schemas with addSchemaId); with
 * `registry`, pass a resolver made with the same registry client (processorCodecFor does).
 */
export function createProcessorCodec(
  resolver: SchemaResolver = createSchemaResolver(),
  registry?: ProcessorRegistryOptions,
): ProcessorCodec {
  const enriched = enrichedWriter();
  const decoders = {
    decodeEventBatch(value: Buffer, withBytes = false): DecodedEventBatch {
      if (!withBytes || !enriched.copiesEvents)
        return resolver.decodeAs('EventBatch', value) as unknown as DecodedEventBatch;
      const { value: batch, eventBytes } = resolver.decodeEventBatch(value);
      const decoded = batch as unknown as DecodedEventBatch;
      if (eventBytes !== undefined) decoded.eventBytes = eventBytes;
      return decoded;
    },
    eventBatchBody: (value: Buffer, withBytes: boolean) =>
      withBytes && !enriched.copiesEvents ? undefined : resolver.currentBody('EventBatch', value),
    decodeContainerRecord: (value: Buffer) =>
      resolver.decodeAs('ContainerRecord', value) as unknown as Record<string, unknown>,
    decodeCollectorStats: (value: Buffer) =>
      resolver.decodeAs('CollectorStats', value) as unknown as Record<string, unknown>,
  };
  if (registry === undefined) {
    const deadLetter = createEncoder('DeadLetter');
    const alert = localWriter<Alert>('Alert');
    return {
      ...decoders,
      encodeDeadLetter: (dl) => deadLetter.encode(dl),
      encodeEnriched: (batch: EnrichedBatch) => encodeFramed(enriched.writer, batch),
      encodeAlert: (a: Alert) => encodeFramed(alert, a),
    };
  }
  const subjects = {
    deadletter: valueSubject(registry.topics.deadletter),
    enriched: valueSubject(registry.topics.enriched),
    alerts: valueSubject(registry.topics.alerts),
  };
  const registration = createSchemaRegistration({
    client: registry.client,
    subjects: topicSubjects(registry.topics),
    compatibility: registry.compatibility,
    log: registry.logger ?? createLogger('processor.registry'),
  });
  // Encoded with PENDING_SCHEMA_ID, then the registered id: prepare() registered them before
  // the first message was decoded, so every output message is built after that.
  const withId = (subject: string, message: Buffer): Buffer => {
    const id = registration.idOf(subject);
    if (id === undefined)
      throw new KtrailError(
        `schema registry: ${subject} is not registered yet (output built before prepare)`,
      );
    setSchemaId(message, id);
    return message;
  };
  const pendingHeader = confluentHeader(PENDING_SCHEMA_ID);
  const deadLetter = createEncoder('DeadLetter', { format: 'confluent', schemaId: PENDING_SCHEMA_ID });
  const enrichedPending = { write: enriched.writer.write, header: pendingHeader };
  const alert = { write: localWriter<Alert>('Alert').write, header: pendingHeader };
  return {
    ...decoders,
    encodeDeadLetter: (dl) => withId(subjects.deadletter, deadLetter.encode(dl)),
    encodeEnriched: (batch: EnrichedBatch) => withId(subjects.enriched, encodeFramed(enrichedPending, batch)),
    encodeAlert: (a: Alert) => withId(subjects.alerts, encodeFramed(alert, a)),
    prepare(values) {
      const ids = resolver.prepare(values);
      if (registration.ready) return ids;
      const outputs = registration.attempt();
      return ids === undefined ? outputs : Promise.all([outputs, ids]).then(() => undefined);
    },
  };
}
