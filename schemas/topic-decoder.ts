// Reading any ktrail topic (`./ktrail tail`, tests, downstream readers in TypeScript): each
// topic carries one schema, and every message goes through the schema resolver, so any
// released version of it (schemas/history/) or one only the registry knows is read as the
// current schema. Anything unreadable throws the resolver's PoisonError.
import { TOPIC_SCHEMAS, type TopicKind } from './catalog.js';
import { catalog, createSchemaResolver } from './codec.js';
import type { SchemaRegistryClient } from './registry-client.js';
import type { SchemaTypes } from './types.js';

export type { TopicKind };
export const TOPIC_KINDS = Object.keys(TOPIC_SCHEMAS) as TopicKind[];

/** What a message of the topic decodes to. */
export type TopicValue<K extends TopicKind> = SchemaTypes[(typeof TOPIC_SCHEMAS)[K]];

/** The current, self-contained writer schema of a topic's messages: what a reader in any language needs. */
export function topicSchema(kind: TopicKind): Record<string, unknown> {
  return catalog().current[TOPIC_SCHEMAS[kind]].schema;
}

/** Decodes single-object messages of any topic (writer schema found by fingerprint). */
export function createTopicDecoder(): <K extends TopicKind>(kind: K, value: Buffer) => TopicValue<K> {
  const resolver = createSchemaResolver();
  return (kind, value) => resolver.decodeAs(TOPIC_SCHEMAS[kind], value);
}

/**
 * Like createTopicDecoder, for topics written in the Confluent wire format too: writer
 * schemas are fetched from the registry by id (cached) and resolved to the current one.
 */
export function createRegistryTopicDecoder(
  registry: SchemaRegistryClient,
): <K extends TopicKind>(kind: K, value: Buffer) => Promise<TopicValue<K>> {
  const resolver = createSchemaResolver({ registry });
  return async (kind, value) => {
    await resolver.prepare([value]);
    return resolver.decodeAs(TOPIC_SCHEMAS[kind], value);
  };
}
