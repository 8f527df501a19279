// The processor's own outputs. Enriched batches: single-object encoded in one pass through a
// shared scratch buffer (every size reads back whole, and a message already handed out is
// never overwritten by the next one); their events are the typed kernel records, with the
// same union as EventBatch; a cut's rows become messages by node, containers listed once,
// halved while a message is over the size bound, each message numbered by its first event.
import { readFileSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { Alert } from '../../processor/src/alerts.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import {
  type EnrichedBatch,
  type EnrichedContainer,
  enrichedMessages,
} from '../../processor/src/enriched.js';
import { applyJoin } from '../../processor/src/join-identity.js';
import type { ContainerMeta } from '../../processor/src/metadata-table.js';
import type { EventRow } from '../../processor/src/partition-batch.js';
import type { DecodedEvent, DecodedEventBatch } from '../../processor/src/rows.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { loadHistorySchemas } from '../../schemas/catalog.js';
import { createEncoder, createSchemaResolver, singleObjectHeader } from '../../schemas/codec.js';
import { fingerprint64 } from '../../schemas/fingerprint.js';
import { sampleEvents } from '../../schemas/samples.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
import type * as Avro from '../../schemas/types.js';
import { eventBatchValue } from '../support/event-batch.js';
import { buildMessageRows, columnsOf } from '../support/event-row.js';

const HEADER = 10; // C3 01 + the schema's 8-byte fingerprint
const codec = createProcessorCodec();
const decodeTopic = createTopicDecoder();
/** An enriched message as a consumer decodes it: every event an object. */
type DecodedEnriched = Omit<EnrichedBatch, 'events'> & {
  events: (Omit<Avro.EnrichedEvent, 'event'> & { event: DecodedEvent })[];
};
const decode = (value: Buffer) => decodeTopic('enriched', value) as unknown as DecodedEnriched;

/** An EventBatch as the processor holds it: read back through the schema resolver. */
function decodedBatch(node: string, events: unknown[]): DecodedEventBatch {
  const bytes = createEncoder('EventBatch').encode(eventBatchValue(node, events) as never);
  return createSchemaResolver().decodeAs('EventBatch', bytes) as unknown as DecodedEventBatch;
}

// The sample events, with a ts_ns whose wall clock fits a u64 (one sample carries 2^64 - 1).
const events = sampleEvents().map((e, i) => (e.tsNs < 2n ** 60n ? e : { ...e, tsNs: 1_000n + BigInt(i) }));

/** A batch's event rows by table, as the processor holds them while the enriched topic is on. */
function rowsOf(
  batch: DecodedEventBatch,
  join: (i: number) => ContainerMeta | undefined,
): Map<string, EventRow[]> {
  const tables = new Map<string, EventRow[]>();
  buildMessageRows(batch, 2, '7', true).rows.forEach((row, i) => {
    const meta = join(i);
    if (meta !== undefined) applyJoin(row, meta);
    const kind = (batch.events[i] as DecodedEvent).kind;
    tables.set(kind, [...(tables.get(kind) ?? []), row]);
  });
  return tables;
}

const joined = (name: string, over: Partial<ContainerMeta> = {}): ContainerMeta => ({
  node: 'node-1',
  cgroupId: 7n,
  containerId: `id-${name}`,
  runtime: 'containerd',
  cgroupPath: '',
  name,
  image: 'busybox:1',
  labels: {},
  pod: `pod-${name}`,
  podUid: '',
  namespace: 'prod',
  workloadKind: '',
  workload: 'app',
  runtimeNamespace: 'k8s.io',
  startedAtNs: 0n,
  stoppedAtNs: 0n,
  updatedAtNs: 0n,
  state: 'RUNNING',
  ...over,
});

describe('processor output codec', () => {
  it("the processor's output types fit the types generated from schemas/ (checked by tsc)", () => {
    expectTypeOf<Alert>().toExtend<Avro.Alert>();
    expectTypeOf<EnrichedContainer>().toEqualTypeOf<Avro.EnrichedContainer>();
    // Events are the processor's decoded rows (DecodedEvent); the encoder checks them against the union.
    expectTypeOf<Omit<EnrichedBatch, 'events'>>().toEqualTypeOf<Omit<Avro.EnrichedBatch, 'events'>>();
    expectTypeOf<Pick<EnrichedBatch['events'][number], 'timeNs' | 'joinState' | 'container'>>().toEqualTypeOf<
      Omit<Avro.EnrichedEvent, 'event'>
    >();
  });

  it('encodes each size in one buffer of its own that reads back whole', () => {
    const exec = events.find((e) => e.kind === 'proc_exec')!;
    const batch = (n: number, argBytes: number): EnrichedBatch => ({
      node: 'node-7',
      sourcePartition: 3,
      firstOffset: 100n,
      lastOffset: 100n + BigInt(n),
      firstEvent: 0,
      containers: [
        {
          containerId: 'c'.repeat(64),
          containerName: 'app',
          image: 'i',
          pod: 'pod-ünï',
          namespace: 'n',
          workload: 'n/w',
          containerRuntime: 'containerd',
          podUid: 'u-1',
          k8sContainerName: 'app',
          workloadKind: 'Deployment',
          workloadName: 'w',
          composeProject: '',
          composeService: '',
          containerdNamespace: 'k8s.io',
        },
      ],
      events: Array.from({ length: n }, (_, i) => ({
        timeNs: 1_764_000_000_000_000_000n + BigInt(i),
        joinState: i % 2 === 0 ? 'joined' : 'pending',
        container: i % 2 === 0 ? 0 : -1,
        event: { ...exec, pid: i, args: ['x'.repeat(argBytes)] } as never,
      })),
    });
    const cases = [batch(1, 10), batch(500, 100), batch(2_000, 400), batch(3, 10)]; // the third outgrows 256 KiB
    const encoded = cases.map((b) => codec.encodeEnriched(b));
    expect(encoded[2]!.length).toBeGreaterThan(512 * 1024);
    encoded.forEach((buf, i) => {
      expect(buf.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
      expect(buf.subarray(2, HEADER)).toEqual(encoded[0]!.subarray(2, HEADER));
      // Decoded after every later encode: nothing shared with the scratch buffer.
      expect(decode(buf)).toEqual(cases[i]);
    });
  });

  it('carries every event kind typed, as it was decoded, with its container listed once', () => {
    const batch = decodedBatch('node-1', events);
    expect(new Set(batch.events.map((e) => e.kind)).size).toBe(15);
    // Two containers; every third event is pending (no container).
    const tables = rowsOf(batch, (i) => (i % 3 === 2 ? undefined : joined(i % 3 === 0 ? 'a' : 'b')));
    const { messages, events: count } = enrichedMessages(
      columnsOf(tables),
      { partition: 2, firstOffset: 5n, lastOffset: 9n },
      codec.encodeEnriched,
    );
    expect(count).toBe(batch.events.length);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.key).toBe('node-1');
    const out = decode(messages[0]!.value);
    expect(out).toMatchObject({ node: 'node-1', sourcePartition: 2, firstOffset: 5n, lastOffset: 9n });
    expect(out.containers.map((c) => c.containerName)).toEqual(['a', 'b']);
    expect(out.events).toHaveLength(batch.events.length);
    const byTime = new Map(out.events.map((e) => [e.timeNs, e]));
    batch.events.forEach((ev, i) => {
      const e = byTime.get(batch.bootEpochNs! + ev.tsNs)!;
      expect(e.event).toEqual(ev); // typed: bigints stay bigints, arrays stay arrays
      if (i % 3 === 2) expect(e).toMatchObject({ joinState: 'pending', container: -1 });
      else expect(out.containers[e.container]!.containerName).toBe(i % 3 === 0 ? 'a' : 'b');
    });
  });

  it('copies events as they arrived into the same bytes it encodes from decoded events', () => {
    const join = (i: number) => (i % 3 === 2 ? undefined : joined(i % 3 === 0 ? 'a' : 'b'));
    const source = { partition: 2, firstOffset: 5n, lastOffset: 9n };
    const decoded = decodedBatch('node-1', events);
    // A message of the current schema keeps its events' bytes; built from objects, it keeps them.
    const fromBytes = codec.decodeEventBatch(createEncoder('EventBatch').encode(decoded as never), true);
    expect(fromBytes.eventBytes).toBeDefined();
    const [copied, encoded] = [fromBytes, decoded].map((batch) =>
      enrichedMessages(columnsOf(rowsOf(batch, join)), source, codec.encodeEnriched, 600),
    );
    expect(copied?.messages.length).toBeGreaterThan(1); // halved under the small bound
    expect(copied).toEqual(encoded);
  });

  it('lists one container twice when its record changed within the batch', () => {
    const batch = decodedBatch('node-1', events.slice(0, 4));
    const [early, late] = [joined('a', { name: '' }), joined('a')];
    const tables = rowsOf(batch, (i) => (i < 2 ? early : late));
    const out = decode(
      enrichedMessages(
        columnsOf(tables),
        { partition: 0, firstOffset: 0n, lastOffset: 0n },
        codec.encodeEnriched,
      ).messages[0]!.value,
    );
    expect(out.containers.map((c) => c.containerName)).toEqual(['', 'a']);
  });

  it('one message per node; halves a message over the size bound until it fits', () => {
    const exec = events.find((e) => e.kind === 'proc_exec')!;
    const big = Array.from({ length: 40 }, (_, i) => ({
      ...exec,
      tsNs: BigInt(i),
      args: ['y'.repeat(4_000)],
    }));
    const tables = new Map<string, EventRow[]>();
    for (const node of ['n1', 'n2']) {
      const rows = rowsOf(decodedBatch(node, big), () => joined('a'));
      for (const [t, r] of rows) tables.set(t, [...(tables.get(t) ?? []), ...r]);
    }
    const { messages } = enrichedMessages(
      columnsOf(tables),
      { partition: 0, firstOffset: 0n, lastOffset: 1n },
      codec.encodeEnriched,
      50_000,
    );
    for (const m of messages) expect(m.value.length).toBeLessThanOrEqual(50_000);
    expect(messages.length).toBeGreaterThanOrEqual(8); // 40 x ~4 KB per node in <= 50 KB
    for (const node of ['n1', 'n2']) {
      const mine = messages.filter((m) => m.key === node).map((m) => decode(m.value));
      expect(mine.every((b) => b.node === node)).toBe(true);
      expect(mine.flatMap((b) => b.events.map((e) => e.event.tsNs))).toEqual(big.map((e) => e.tsNs));
      // Each message says where its events start: with the node and source range, its identity.
      let next = 0;
      for (const b of mine) {
        expect(b.firstEvent).toBe(next);
        next += b.events.length;
      }
    }
  });

  it('has the same event union, in the same order, as EventBatch', () => {
    const eventBatch = JSON.parse(readFileSync('schemas/EventBatch.avsc', 'utf8'));
    const enriched = JSON.parse(readFileSync('schemas/EnrichedBatch.avsc', 'utf8'));
    const batchUnion = eventBatch.fields.find((f: { name: string }) => f.name === 'events').type.items;
    const enrichedUnion = enriched.fields
      .find((f: { name: string }) => f.name === 'events')
      .type.items.fields.find((f: { name: string }) => f.name === 'event').type;
    expect(enrichedUnion).toEqual(batchUnion);
  });
});

// Release and compatibility of EnrichedBatch and Alert: schemas-compat and schemas-golden.
describe('released versions of the enriched schema', () => {
  it('an enriched message written with v1 (before the identity columns) reads with their defaults', () => {
    const [v1] = loadHistorySchemas('EnrichedBatch');
    const type = compileSchema(v1?.schema);
    const exec = events.find((e) => e.kind === 'proc_exec')!;
    const old = {
      node: 'node-1',
      sourcePartition: 0,
      firstOffset: 1n,
      lastOffset: 2n,
      firstEvent: 0,
      containers: [
        { containerId: 'c1', containerName: 'web', image: 'i', pod: '', namespace: '', workload: '' },
      ],
      events: [{ timeNs: 5n, joinState: 'joined', container: 0, event: exec }],
    };
    const bytes = Buffer.concat([singleObjectHeader(fingerprint64(v1?.schema)), type.toBuffer(old)]);
    const read = decode(bytes);
    expect(read.containers[0]).toEqual({
      ...old.containers[0],
      containerRuntime: '',
      podUid: '',
      k8sContainerName: '',
      workloadKind: '',
      workloadName: '',
      composeProject: '',
      composeService: '',
      containerdNamespace: '',
    });
    expect(read.events[0]?.event).toEqual(exec);
  });
});
