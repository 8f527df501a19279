// The wire codec: single-object and Confluent framing, BigInt longs, the event union keyed
// by `kind`, writer -> reader resolution, and PoisonError for every unreadable input.
import { describe, expect, it } from 'vitest';
import { ConfigError, PoisonError } from '../../common/errors.js';
import { compileSchema } from '../../schemas/avro-types.js';
import { SCHEMA_NAMES } from '../../schemas/catalog.js';
import {
  catalog,
  confluentHeader,
  createEncoder,
  createEventBatchFramer,
  createSchemaResolver,
  SINGLE_OBJECT_HEADER_BYTES,
  toAvroEvent,
} from '../../schemas/codec.js';
import { createSchemaRegistryClient } from '../../schemas/registry-client.js';
import { SAMPLES, sampleContainerRecord, sampleEventBatch, sampleEvents } from '../../schemas/samples.js';
import type { EventBatch, KtrailEvent } from '../../schemas/types.js';

const U64_MAX = 2n ** 64n - 1n;

/** Plain-object view of a decoded value (avsc records are class instances). */
const plain = (v: unknown): unknown => structuredClone(v);

describe('single-object encoding', () => {
  it.each(SCHEMA_NAMES)('%s round-trips through encode/decode', (name) => {
    const value = SAMPLES[name]();
    const bytes = createEncoder(name).encode(value as never);
    expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(bytes.readBigUInt64LE(2)).toBe(catalog().current[name].fingerprint);
    const decoded = createSchemaResolver().decode(bytes);
    expect(decoded.schema).toBe(name);
    expect(decoded.writerVersion).not.toBe('registry');
    expect(plain(decoded.value)).toEqual(plain(value));
  });

  it('keeps full u64 precision, 2^64-1 included', () => {
    const batch = sampleEventBatch();
    const event = { ...batch.events[11], tsNs: U64_MAX, cgroupId: 2n ** 63n + 1n } as KtrailEvent;
    const bytes = createEncoder('EventBatch').encode({ ...batch, sequence: U64_MAX, events: [event] });
    const back = createSchemaResolver().decodeAs('EventBatch', bytes);
    expect(back.sequence).toBe(U64_MAX);
    expect(back.events[0]?.tsNs).toBe(U64_MAX);
    expect(back.events[0]?.cgroupId).toBe(2n ** 63n + 1n);
  });

  it('decodes events with their kind and number-typed u32 fields', () => {
    const bytes = createEncoder('EventBatch').encode(sampleEventBatch());
    const back = createSchemaResolver().decodeAs('EventBatch', bytes);
    expect(back.events.map((e) => e.kind)).toEqual(sampleEventBatch().events.map((e) => e.kind));
    const exec = back.events[0];
    if (exec?.kind !== 'proc_exec') throw new Error('expected proc_exec first');
    expect(typeof exec.pid).toBe('number');
    expect(typeof exec.tsNs).toBe('bigint');
    expect(exec.args).toEqual(['curl', '-s', 'http://svc.local/ä']);
  });

  it('takes decoder events as they are: extra properties are ignored, nothing copied', () => {
    const batch = sampleEventBatch();
    const withExtra = batch.events.map((e) =>
      Object.assign(Object.create({ inherited: 1 }), e, { extra: 'x' }),
    );
    const a = createEncoder('EventBatch').encode(batch);
    const b = createEncoder('EventBatch').encode({ ...batch, events: withExtra });
    expect(b).toEqual(a);
  });

  it('hands out independent buffers while reusing its scratch space, growing for big batches', () => {
    const encoder = createEncoder('EventBatch');
    const small = encoder.encode(sampleEventBatch());
    const copy = Buffer.from(small);
    const many = Array.from({ length: 300 }, () => sampleEventBatch().events).flat();
    const big = encoder.encode({ ...sampleEventBatch(), events: many });
    expect(big.length).toBeGreaterThan(64 * 1024);
    expect(small).toEqual(copy); // not overwritten by the second call
    expect(createSchemaResolver().decodeAs('EventBatch', big).events).toHaveLength(many.length);
    expect(encoder.encode(sampleEventBatch())).toEqual(copy);
  });

  it('fills defaulted fields the writer left out', () => {
    const { bootEpochNs: _omit, ...rest } = sampleEventBatch();
    const back = createSchemaResolver().decodeAs(
      'EventBatch',
      createEncoder('EventBatch').encode(rest as EventBatch),
    );
    expect(back.bootEpochNs).toBeNull();
  });

  it('rejects invalid values with the field path in the message', () => {
    const batch = sampleEventBatch();
    const bad = { ...batch, events: [{ ...batch.events[0], tsNs: -1n } as KtrailEvent] };
    expect(() => createEncoder('EventBatch').encode(bad)).toThrow(/events\.0\.tsNs/);
    const unknownKind = {
      ...batch,
      events: [{ ...batch.events[0], kind: 'nope' } as unknown as KtrailEvent],
    };
    expect(() => createEncoder('EventBatch').encode(unknownKind)).toThrow(/EventBatch/);
    expect(() =>
      createEncoder('ContainerRecord').encode({ ...sampleContainerRecord(), pid: 1 } as never),
    ).not.toThrow();
    expect(() =>
      createEncoder('ContainerRecord').encode({ ...sampleContainerRecord(), name: 5 } as never),
    ).toThrow(/name: 5/);
  });
});

describe('EventBatch framer (events encoded on arrival, envelope per message)', () => {
  // The items as the collector's batcher writes them: one writeEvent per event, end to end.
  function items(framer: ReturnType<typeof createEventBatchFramer>, events: KtrailEvent[]): Buffer {
    let buf = Buffer.alloc(16);
    let pos = 0;
    for (const e of events) {
      let end = framer.writeEvent(e, buf, pos);
      if (end < 0) {
        const grown = Buffer.alloc((buf.length - end) * 2);
        buf.copy(grown, 0, 0, pos);
        buf = grown;
        end = framer.writeEvent(e, buf, pos);
      }
      pos = end;
    }
    return buf.subarray(0, pos);
  }

  it.each([0, 1, 7, 64, 65, 300])('%i events: the same bytes as encoding the whole batch', (n) => {
    const { events: _all, ...envelope } = sampleEventBatch();
    const pool = sampleEvents();
    const events = Array.from({ length: n }, (_, i) => pool[i % pool.length] as KtrailEvent);
    for (const wire of [
      { format: 'single-object' as const },
      { format: 'confluent' as const, schemaId: 300 },
    ]) {
      const framer = createEventBatchFramer(wire);
      const framed = framer.frame(envelope, items(framer, events), events.length);
      expect(framed).toEqual(createEncoder('EventBatch', wire).encode({ ...envelope, events }));
    }
    const framer = createEventBatchFramer();
    const decoded = createSchemaResolver().decodeAs(
      'EventBatch',
      framer.frame(envelope, items(framer, events), n),
    );
    expect(plain(decoded.events)).toEqual(plain(events));
  });

  it('reports an invalid event with its kind and field, and a short buffer as missing bytes', () => {
    const framer = createEventBatchFramer();
    const exec = sampleEvents().find((e) => e.kind === 'proc_exec') as KtrailEvent;
    expect(() => framer.writeEvent({ ...exec, pid: 'x' } as never, Buffer.alloc(4096), 0)).toThrow(
      /proc_exec event: .*pid: "x"/,
    );
    expect(() => framer.writeEvent({ kind: 'no_such_kind' } as never, Buffer.alloc(64), 0)).toThrow(
      /no_such_kind/,
    );
    const small = Buffer.alloc(4);
    const end = framer.writeEvent(exec, small, 0);
    expect(end).toBeLessThan(0);
    const exact = Buffer.alloc(small.length - end);
    expect(framer.writeEvent(exec, exact, 0)).toBe(exact.length);
  });
});

describe('Confluent wire format', () => {
  it('frames as 0x00 + big-endian schema id + the same Avro body (golden bytes)', () => {
    expect(confluentHeader(42)).toEqual(Buffer.from([0x00, 0x00, 0x00, 0x00, 0x2a]));
    expect(confluentHeader(0x01020304)).toEqual(Buffer.from([0x00, 0x01, 0x02, 0x03, 0x04]));
    const value = sampleContainerRecord();
    const single = createEncoder('ContainerRecord').encode(value);
    const confluent = createEncoder('ContainerRecord', { format: 'confluent', schemaId: 42 }).encode(value);
    expect(confluent.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, 42]));
    expect(confluent.subarray(5)).toEqual(single.subarray(SINGLE_OBJECT_HEADER_BYTES));
  });

  it('decodes by registry id once the id is known, resolving an older writer schema', () => {
    // An older ContainerRecord without imageId/podUid: the current reader fills defaults.
    const current = catalog().current.ContainerRecord.schema as { fields: { name: string }[] };
    const older = {
      ...current,
      fields: current.fields.filter((f) => f.name !== 'imageId' && f.name !== 'podUid'),
    };
    const resolver = createSchemaResolver();
    resolver.addSchemaId(7, older);
    const body = compileSchema(older).toBuffer(sampleContainerRecord());
    const decoded = resolver.decode(Buffer.concat([confluentHeader(7), body]));
    expect(decoded.writerVersion).toBe('registry');
    const value = decoded.value as ReturnType<typeof sampleContainerRecord>;
    expect(value.imageId).toBeNull();
    expect(value.podUid).toBeNull();
    expect(value.name).toBe('api');
  });

  it('an unknown id is poison without a registry', async () => {
    const resolver = createSchemaResolver();
    const bytes = Buffer.concat([confluentHeader(99), Buffer.from([0])]);
    expect(() => resolver.decode(bytes)).toThrow(PoisonError);
    await expect(resolver.decodeAsync(bytes)).rejects.toBeInstanceOf(PoisonError);
  });
});

describe('unreadable input is a PoisonError, never a crash', () => {
  const good = createEncoder('EventBatch').encode(sampleEventBatch());

  it('unknown fingerprint, with the fingerprint in the context', () => {
    const bytes = Buffer.from(good);
    bytes[5] = (bytes[5] ?? 0) ^ 0xff;
    try {
      createSchemaResolver().decode(bytes);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PoisonError);
      expect((err as PoisonError).context.fingerprint).toBe(bytes.toString('hex', 2, 10));
      expect((err as PoisonError).retriable).toBe(false);
      expect((err as PoisonError).context.reason).toBe('unknown_schema');
    }
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['JSON', Buffer.from('{"node":"a"}')],
    ['header only', good.subarray(0, SINGLE_OBJECT_HEADER_BYTES)],
    ['truncated body', good.subarray(0, good.length - 7)],
    ['trailing bytes', Buffer.concat([good, Buffer.from([1, 2, 3])])],
  ])('%s', (_name, bytes) => {
    expect(() => createSchemaResolver().decode(bytes)).toThrow(PoisonError);
  });

  it('decodeAs refuses another schema', () => {
    const stats = createEncoder('CollectorStats').encode(SAMPLES.CollectorStats());
    expect(() => createSchemaResolver().decodeAs('EventBatch', stats)).toThrow(
      /expected EventBatch, got CollectorStats/,
    );
  });

  it('corrupted bodies (random byte flips) decode or throw PoisonError, quickly', () => {
    const resolver = createSchemaResolver();
    let poisoned = 0;
    const started = Date.now();
    for (let i = 0; i < 2000; i++) {
      const bytes = Buffer.from(good);
      const at = SINGLE_OBJECT_HEADER_BYTES + ((i * 7919) % (good.length - SINGLE_OBJECT_HEADER_BYTES));
      bytes[at] = (bytes[at] ?? 0) ^ (1 + (i % 255));
      try {
        resolver.decode(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(PoisonError);
        poisoned++;
      }
    }
    expect(poisoned).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('helpers', () => {
  it('a registry URL that is not a URL is a ConfigError naming the setting', () => {
    expect(() => createSchemaRegistryClient({ url: 'not a url' })).toThrow(ConfigError);
    expect(() => createSchemaRegistryClient({ url: 'not a url' })).toThrow(/schemaRegistryUrl/);
  });

  it('toAvroEvent passes the decoder event through unchanged', () => {
    const event = sampleEventBatch().events[0] as KtrailEvent;
    expect(toAvroEvent(event)).toBe(event);
  });
});
