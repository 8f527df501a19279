// The schema registry in front of the Kafka sink (kafka.schemaRegistryUrl set). Capture never
// waits for the registry: messages are encoded in the Confluent wire format with
// PENDING_SCHEMA_ID, and this sink writes each topic's registered id into them as they
// leave. Until every schema is registered (the registry down at start, or refusing a
// schema) it answers 'retryable' without calling Kafka, so the delivery loop holds the
// messages within its bounds, counting any drop, exactly as while Kafka is down; the
// registration retries in the background (schemas/registration.ts) and logs the outage.
import { Counter, Gauge, type Registry } from 'prom-client';
import { TransientError } from '../../common/errors.js';
import { setSchemaId } from '../../schemas/codec.js';
import type { SchemaRegistration } from '../../schemas/registration.js';
import type { MessageSink } from './kafka-sink.js';

/** The answer while the schemas are not registered: not a Kafka error (collector.ts counts those). */
export class SchemaRegistryPendingError extends TransientError {}

const RETRY_MS = 1_000;

export function createRegistrySink(
  inner: MessageSink,
  registration: SchemaRegistration,
  /** The subject of each topic's values, e.g. ktrail.events -> ktrail.events-value. */
  subjectByTopic: ReadonlyMap<string, string>,
  metrics?: Registry,
): MessageSink {
  const registers = metrics === undefined ? [] : [metrics];
  const held = new Counter({
    name: 'ktrail_collector_schema_registry_held_sends_total',
    help: 'sends held back because the schemas were not registered yet (registry down or refusing)',
    registers,
  });
  new Gauge({
    name: 'ktrail_collector_schema_registry_ready',
    help: '1 once every schema is registered in the schema registry, else 0',
    registers,
    collect() {
      this.set(registration.ready ? 1 : 0);
    },
  });
  return {
    async send(messages) {
      if (!registration.ready) {
        held.inc();
        const why = registration.lastError?.message ?? 'registering';
        return {
          status: 'retryable',
          retryInMillis: RETRY_MS,
          error: new SchemaRegistryPendingError(`schema registry: schemas not registered yet (${why})`),
          maybeWritten: false,
        };
      }
      for (const m of messages) {
        const subject = subjectByTopic.get(m.topic);
        const id = subject === undefined ? undefined : registration.idOf(subject);
        if (id !== undefined) setSchemaId(m.value, id);
      }
      return inner.send(messages);
    },
    close() {
      registration.close();
      return inner.close();
    },
    ...(inner.onRequestTimeout === undefined
      ? {}
      : { onRequestTimeout: (listener: () => void) => inner.onRequestTimeout?.(listener) }),
  };
}
