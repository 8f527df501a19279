// The collector's encoders in the wire format the config asks for: single-object Avro, or
// with kafka.schemaRegistryUrl the Confluent wire format, whose ids come from registering
// the three topics' schemas (schemas/registration.ts; registry-sink.ts writes them in).
import type { KtrailConfig } from '../../common/config.js';
import type { TopicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import {
  createEncoder,
  createEventBatchFramer,
  type Encoder,
  type EventBatchFramer,
  PENDING_SCHEMA_ID,
  type WireFormat,
} from '../../schemas/codec.js';
import {
  createSchemaRegistration,
  type SchemaRegistration,
  topicSubjects,
} from '../../schemas/registration.js';
import { createSchemaRegistryClient } from '../../schemas/registry-client.js';
import type { ContainerRecord as AvroContainerRecord, CollectorStats } from '../../schemas/types.js';

export interface CollectorCodec {
  batch: EventBatchFramer;
  stats: Encoder<CollectorStats>;
  container: Encoder<AvroContainerRecord>;
  /** With a schema registry: the registration of the three topics' schemas (runs from start()). */
  registration?: SchemaRegistration;
}

/**
 * Single-object encoders, or with a registry the Confluent wire format: messages carry
 * PENDING_SCHEMA_ID until the registry sink writes the registered ids into them.
 */
export function collectorCodec(config: KtrailConfig, topics: TopicNames): CollectorCodec {
  const url = config.kafka.schemaRegistryUrl;
  if (url === undefined)
    return {
      batch: createEventBatchFramer(),
      stats: createEncoder('CollectorStats'),
      container: createEncoder('ContainerRecord'),
    };
  const pending: WireFormat = { format: 'confluent', schemaId: PENDING_SCHEMA_ID };
  const registration = createSchemaRegistration({
    client: createSchemaRegistryClient({ url }),
    subjects: topicSubjects({ events: topics.events, containers: topics.containers, stats: topics.stats }),
    compatibility: config.kafka.schemaRegistryCompatibility,
    log: createLogger('collector.registry', { node: config.node }),
  });
  return {
    batch: createEventBatchFramer(pending),
    stats: createEncoder('CollectorStats', pending),
    container: createEncoder('ContainerRecord', pending),
    registration,
  };
}
