// The enriched topic copies an event's bytes as they arrived when its message was written with
// the current EventBatch schema. What it writes must be what avsc writes for the same batch
// with the events decoded, for every event kind, joined or not, mixed with decoded events and
// past the scratch buffer's first size; a message from another writer schema has no bytes.
import { describe, expect, it } from 'vitest';
import { createProcessorCodec } from '../../processor/src/codec.js';
import type { EnrichedBatch, EnrichedEvent } from '../../processor/src/enriched.js';
import { enrichedBodyWriter, eventBatchUnion } from '../../processor/src/enriched-writer.js';
import type { DecodedEvent, DecodedEventBatch } from '../../processor/src/rows.js';
import { compileSchema } from '../../schemas/avro-types.js';
import {
  catalog,
  confluentHeader,
  createEncoder,
  createSchemaResolver,
  singleObjectHeader,
} from '../../schemas/codec.js';
import { sampleEvents } from '../../schemas/samples.js';
import { eventBatchValue, TEST_EPOCH_NS } from '../support/event-batch.js';

const codec = createProcessorCodec();
const { current } = catalog();

const message = (events: unknown[]) => eventBatchValue('node-1', events);

const decodedMessage = (events: unknown[]) =>
  codec.decodeEventBatch(createEncoder('EventBatch').encode(message(events) as never), true);

const CONTAINERS = [0, 1].map((i) => ({
  containerId: `id-${i}`,
  containerName: `c${i}`,
  image: 'busybox:1',
  pod: `pod-${i}`,
  namespace: 'prod',
  workload: 'app',
  containerRuntime: 'containerd',
  podUid: `uid-${i}`,
  k8sContainerName: `c${i}`,
  workloadKind: 'Deployment',
  workloadName: 'app',
  composeProject: '',
  composeService: '',
  containerdNamespace: 'k8s.io',
}));

/** The enriched batch of a decoded message: event i as bytes when `asBytes(i)`, else decoded. */
function enriched(batch: DecodedEventBatch, asBytes: (i: number) => boolean): EnrichedBatch {
  const events: EnrichedEvent[] = batch.events.map((event, i) => {
    const joinState = (['joined', 'pending', 'host'] as const)[i % 3] as EnrichedEvent['joinState'];
    const common = {
      timeNs: TEST_EPOCH_NS + event.tsNs,
      joinState,
      container: joinState === 'joined' ? i % 2 : -1,
    };
    return asBytes(i) && batch.eventBytes !== undefined
      ? { ...common, bytes: batch.eventBytes, index: i }
      : { ...common, event: event as DecodedEvent };
  });
  return {
    node: 'node-1',
    sourcePartition: 2,
    firstOffset: 5n,
    lastOffset: 9n,
    firstEvent: 0,
    containers: CONTAINERS,
    events,
  };
}

/** What avsc writes for the batch with every event decoded (the reference). */
function avscBytes(batch: DecodedEventBatch): Buffer {
  const value = enriched(batch, () => false);
  return Buffer.concat([
    singleObjectHeader(current.EnrichedBatch.fingerprint),
    current.EnrichedBatch.type.toBuffer(value),
  ]);
}

describe('enriched writer', () => {
  const events = sampleEvents().map((e, i) => (e.tsNs < 2n ** 60n ? e : { ...e, tsNs: 1_000n + BigInt(i) }));

  it('notes every event of a message written with the current schema', () => {
    const batch = decodedMessage(events);
    expect(batch.eventBytes?.spans).toHaveLength(2 * events.length);
    // Back to back: each event starts where the one before it ended (one array block).
    const spans = batch.eventBytes?.spans ?? [];
    for (let i = 2; i < spans.length; i += 2) expect(spans[i]).toBe(spans[i - 1]);
    // Each span decodes alone, through the event union, to the event the message holds.
    const union = eventBatchUnion(current.EventBatch.type);
    batch.events.forEach((ev, i) => {
      const bytes = batch.eventBytes?.body.subarray(spans[2 * i], spans[2 * i + 1]) as Buffer;
      expect(union.fromBuffer(bytes)).toEqual(ev);
    });
  });

  it('writes the bytes avsc writes, copied, decoded or mixed, for every event kind', () => {
    const batch = decodedMessage(events);
    const want = avscBytes(batch);
    expect(codec.encodeEnriched(enriched(batch, () => true))).toEqual(want);
    expect(codec.encodeEnriched(enriched(batch, () => false))).toEqual(want);
    expect(codec.encodeEnriched(enriched(batch, (i) => i % 2 === 0))).toEqual(want);
    // And it reads back as the batch with its events decoded.
    const read = createSchemaResolver().decodeAs(
      'EnrichedBatch',
      codec.encodeEnriched(enriched(batch, () => true)),
    );
    expect(read.events.map((e) => e.event)).toEqual(batch.events);
  });

  it('writes a batch of no events, and one past the first scratch buffer', () => {
    const empty = decodedMessage([]);
    expect(empty.eventBytes).toBeUndefined();
    expect(codec.encodeEnriched(enriched(empty, () => true))).toEqual(avscBytes(empty));
    const many = decodedMessage(Array.from({ length: 400 }, () => events).flat());
    const bytes = codec.encodeEnriched(enriched(many, () => true));
    expect(bytes.length).toBeGreaterThan(256 * 1024);
    expect(bytes).toEqual(avscBytes(many));
  });

  it('keeps no bytes for a message from another writer schema (read through a resolver)', () => {
    // A newer collector's EventBatch: one more envelope field, which this reader skips.
    const schema = structuredClone(current.EventBatch.schema) as { fields: unknown[] };
    schema.fields.push({ name: 'region', type: 'string', default: '' });
    const resolver = createSchemaResolver();
    resolver.addSchemaId(77, schema);
    const body = compileSchema(schema).toBuffer({ ...message(events), region: 'eu' });
    const { value, eventBytes } = resolver.decodeEventBatch(Buffer.concat([confluentHeader(77), body]));
    expect(value.events).toHaveLength(events.length);
    expect(eventBytes).toBeUndefined();
    // The same resolver still notes them for a message of the current schema.
    const now = resolver.decodeEventBatch(createEncoder('EventBatch').encode(message(events) as never));
    expect(now.eventBytes?.spans).toHaveLength(2 * events.length);
  });

  it('refuses a schema whose fields it does not write, and copies only between equal unions', () => {
    const schema = structuredClone(current.EnrichedBatch.schema) as { fields: { name: string }[] };
    schema.fields.reverse();
    expect(() => enrichedBodyWriter(compileSchema(schema), current.EventBatch.type)).toThrow(
      /EnrichedBatch has fields events, /,
    );
    expect(enrichedBodyWriter(current.EnrichedBatch.type, current.EventBatch.type).copiesEvents).toBe(true);
    const reordered = structuredClone(current.EventBatch.schema) as {
      fields: { name: string; type: { items: unknown[] } }[];
    };
    const items = reordered.fields.find((f) => f.name === 'events')?.type.items as unknown[];
    items.reverse();
    expect(enrichedBodyWriter(current.EnrichedBatch.type, compileSchema(reordered)).copiesEvents).toBe(false);
    // ...and the codec then keeps decoded events, even when asked for bytes: none without asking.
    expect(decodedMessage(events).eventBytes).toBeDefined();
    expect(
      codec.decodeEventBatch(createEncoder('EventBatch').encode(message(events) as never)).eventBytes,
    ).toBeUndefined();
  });
});
