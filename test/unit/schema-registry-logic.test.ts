// ktrail's own registry logic with a fake registry client (the real registry is tested in
// test/integration/schema-registry.test.ts): the resolver's lookups before decoding, the
// pending-id framing, the registration order (compatibility level before the schema) and
// the gate that pauses partitions while the registry can't answer.
import { describe, expect, it } from 'vitest';
import { PoisonError, TransientError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { createSchemaGate } from '../../processor/src/schema-gate.js';
import { compileSchema } from '../../schemas/avro-types.js';
import {
  catalog,
  confluentHeader,
  createEncoder,
  createSchemaResolver,
  PENDING_SCHEMA_ID,
  setSchemaId,
} from '../../schemas/codec.js';
import { createSchemaRegistration } from '../../schemas/registration.js';
import {
  type CompatibilityLevel,
  SchemaIdNotFoundError,
  type SchemaRegistryClient,
} from '../../schemas/registry-client.js';
import { sampleContainerRecord, sampleDeadLetter } from '../../schemas/samples.js';

const log = createLogger('test.registry');

/** A registry in memory; `down` makes every call fail as an unreachable registry does. */
function fakeRegistry(schemas: Record<number, Record<string, unknown>> = {}) {
  const calls: string[] = [];
  const subjects = new Map<string, CompatibilityLevel | 'none-set'>();
  let nextId = 10;
  const state = { down: false };
  const reach = () => {
    if (state.down) throw new TransientError('schema registry unreachable: fake');
  };
  const client: SchemaRegistryClient = {
    url: 'http://fake/apis/ccompat/v7',
    async register(subject, schema) {
      reach();
      calls.push(`register ${subject}`);
      if (!subjects.has(subject)) subjects.set(subject, 'none-set');
      const id = nextId++;
      schemas[id] = schema as Record<string, unknown>;
      return id;
    },
    async setCompatibility(subject, level) {
      reach();
      calls.push(`config ${subject} ${level}`);
      if (!subjects.has(subject)) return false;
      subjects.set(subject, level);
      return true;
    },
    async getSchemaById(id) {
      reach();
      calls.push(`get ${id}`);
      const schema = schemas[id];
      if (schema === undefined)
        throw new SchemaIdNotFoundError(`schema id ${id} is not in the schema registry`, {
          context: { reason: 'unknown_schema', schemaId: id },
        });
      return schema;
    },
  };
  return { client, calls, subjects, state };
}

const framed = (id: number, body: Buffer) => Buffer.concat([confluentHeader(id), body]);
const containerBody = () => catalog().current.ContainerRecord.type.toBuffer(sampleContainerRecord());

describe('resolver.prepare: registry ids looked up before decoding', () => {
  it('nothing to look up for single-object messages, known ids, or without a registry', () => {
    const { client } = fakeRegistry();
    const resolver = createSchemaResolver({ registry: client });
    expect(resolver.prepare([createEncoder('ContainerRecord').encode(sampleContainerRecord()), null])).toBe(
      undefined,
    );
    expect(createSchemaResolver().prepare([framed(5, containerBody())])).toBe(undefined);
  });

  it('an unknown id is fetched once; after that its messages decode synchronously', async () => {
    const { client, calls } = fakeRegistry({ 7: catalog().current.ContainerRecord.schema });
    const resolver = createSchemaResolver({ registry: client });
    const message = framed(7, containerBody());
    await resolver.prepare([message, message, message]);
    expect(calls).toEqual(['get 7']);
    expect(resolver.prepare([message])).toBe(undefined);
    expect(resolver.decodeAs('ContainerRecord', message).name).toBe('api');
  });

  it('an older writer schema from the registry is resolved to the current reader', async () => {
    const current = catalog().current.ContainerRecord.schema as { fields: { name: string }[] };
    const older = { ...current, fields: current.fields.filter((f) => f.name !== 'imageId') };
    const { client } = fakeRegistry({ 3: older });
    const resolver = createSchemaResolver({ registry: client });
    const message = framed(3, compileSchema(older).toBuffer(sampleContainerRecord()));
    await resolver.prepare([message]);
    const decoded = resolver.decode(message);
    expect(decoded.writerVersion).toBe('registry');
    expect((decoded.value as { imageId: unknown }).imageId).toBeNull();
  });

  it('an id the registry does not have decodes to a PoisonError naming it, and is not asked again at once', async () => {
    const { client, calls } = fakeRegistry();
    const resolver = createSchemaResolver({ registry: client });
    const message = framed(99, containerBody());
    await resolver.prepare([message]);
    expect(() => resolver.decode(message)).toThrow(PoisonError);
    expect(() => resolver.decode(message)).toThrow(/schema id 99 is not in the schema registry/);
    expect(resolver.prepare([message])).toBe(undefined);
    expect(calls).toEqual(['get 99']);
  });

  it("a schema that is not ktrail's is poison (unknown_schema)", async () => {
    const { client } = fakeRegistry({ 4: { type: 'record', name: 'Other', fields: [] } });
    const resolver = createSchemaResolver({ registry: client });
    const message = framed(4, Buffer.alloc(0));
    await resolver.prepare([message]);
    try {
      resolver.decode(message);
      expect.unreachable();
    } catch (err) {
      expect((err as PoisonError).context.reason).toBe('unknown_schema');
    }
  });

  it('a registry that is down rejects prepare (no poison); the next prepare asks again', async () => {
    const { client, state } = fakeRegistry({ 7: catalog().current.ContainerRecord.schema });
    const resolver = createSchemaResolver({ registry: client });
    const message = framed(7, containerBody());
    state.down = true;
    await expect(resolver.prepare([message])).rejects.toBeInstanceOf(TransientError);
    state.down = false;
    await resolver.prepare([message]);
    expect(resolver.decodeAs('ContainerRecord', message).name).toBe('api');
  });
});

describe('pending schema id', () => {
  it('setSchemaId writes the id into a message framed with the pending id, and only there', () => {
    const pending = createEncoder('ContainerRecord', { format: 'confluent', schemaId: PENDING_SCHEMA_ID });
    const message = pending.encode(sampleContainerRecord());
    expect(message.readUInt32BE(1)).toBe(0);
    expect(setSchemaId(message, 42)).toBe(true);
    expect(message.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, 42]));
    expect(setSchemaId(message, 43)).toBe(true);
    expect(message.readUInt32BE(1)).toBe(42); // a real id stays
    const single = createEncoder('ContainerRecord').encode(sampleContainerRecord());
    expect(setSchemaId(single, 42)).toBe(false);
  });
});

describe('registration', () => {
  it('sets the level on an existing subject before registering, on a new one right after', async () => {
    const { client, calls, subjects } = fakeRegistry();
    subjects.set('t.events-value', 'NONE');
    const registration = createSchemaRegistration({
      client,
      subjects: [
        { subject: 't.events-value', schema: catalog().current.EventBatch.schema },
        { subject: 't.stats-value', schema: catalog().current.CollectorStats.schema },
      ],
      compatibility: 'BACKWARD',
      log,
    });
    await registration.attempt();
    expect(registration.ready).toBe(true);
    expect(calls.filter((c) => c.includes('t.events'))).toEqual([
      'config t.events-value BACKWARD',
      'register t.events-value',
    ]);
    expect(calls.filter((c) => c.includes('t.stats'))).toEqual([
      'config t.stats-value BACKWARD',
      'register t.stats-value',
      'config t.stats-value BACKWARD',
    ]);
    expect(subjects.get('t.stats-value')).toBe('BACKWARD');
    expect(registration.idOf('t.events-value')).toBeGreaterThan(0);
  });

  it('run() retries while the registry is down and finishes once it answers', async () => {
    const { client, state } = fakeRegistry();
    state.down = true;
    const registration = createSchemaRegistration({
      client,
      subjects: [{ subject: 'x-value', schema: catalog().current.CollectorStats.schema }],
      compatibility: 'BACKWARD',
      log,
      retryInitialMs: 10,
      retryMaxMs: 20,
    });
    const done = registration.run();
    await new Promise((r) => setTimeout(r, 60));
    expect(registration.ready).toBe(false);
    expect(registration.lastError?.message).toMatch(/cannot register subject x-value: .*unreachable/);
    state.down = false;
    await done;
    expect(registration.ready).toBe(true);
    expect(registration.lastError).toBeUndefined();
  });
});

describe('processor codec with a registry', () => {
  it('prepare registers the outputs first; outputs carry the registered ids', async () => {
    const { client, calls, state } = fakeRegistry();
    const codec = createProcessorCodec(createSchemaResolver({ registry: client }), {
      client,
      topics: { deadletter: 'p.deadletter', enriched: 'p.events.enriched', alerts: 'p.alerts' },
      compatibility: 'BACKWARD',
      logger: log,
    });
    expect(() => codec.encodeDeadLetter(sampleDeadLetter())).toThrow(/not registered yet/);
    state.down = true;
    await expect(codec.prepare?.([])).rejects.toThrow(/unreachable/);
    state.down = false;
    await codec.prepare?.([]);
    expect(codec.prepare?.([])).toBe(undefined);
    const registered = calls.filter((c) => c.startsWith('register')).sort();
    expect(registered).toEqual([
      'register p.alerts-value',
      'register p.deadletter-value',
      'register p.events.enriched-value',
    ]);
    const dl = codec.encodeDeadLetter(sampleDeadLetter());
    expect(dl[0]).toBe(0);
    expect(dl.readUInt32BE(1)).toBeGreaterThanOrEqual(10);
  });
});

describe('schema gate', () => {
  function gate(prepare: (values: ReadonlyArray<Buffer | null>) => Promise<void> | undefined) {
    const events: string[] = [];
    const g = createSchemaGate({
      prepare,
      pause: (t, p) => events.push(`pause ${t}/${p}`),
      resume: (t, p) => events.push(`resume ${t}/${p}`),
      log,
      retryInitialMs: 10,
      retryMaxMs: 40,
      waitMs: 200,
    });
    return { g, events };
  }
  const batch = (topic: string, partition: number) => ({ topic, partition, messages: [{ value: null }] });

  it('admits at once when nothing is missing, after the lookup when one is', async () => {
    const { g, events } = gate((values) => (values.length > 1 ? Promise.resolve() : undefined));
    expect(await g.admit(batch('e', 0))).toBe(true);
    expect(await g.admit({ topic: 'e', partition: 0, messages: [{ value: null }, { value: null }] })).toBe(
      true,
    );
    expect(events).toEqual([]);
    expect(g.stats()).toEqual({ outages: 0, heldBatches: 0, down: false });
  });

  it('registry down: the partition is paused, known-schema partitions go on, all resume once it answers', async () => {
    let down = true;
    const { g, events } = gate((values) => {
      if (values.length === 0) return undefined; // this "partition" needs no lookup
      return down ? Promise.reject(new TransientError('unreachable')) : Promise.resolve();
    });
    expect(await g.admit(batch('e', 1))).toBe(false);
    expect(await g.admit(batch('c', 1))).toBe(false);
    expect(await g.admit({ topic: 'e', partition: 2, messages: [] })).toBe(true);
    expect(events).toEqual(['pause e/1', 'pause c/1']);
    await new Promise((r) => setTimeout(r, 50));
    expect(g.stats()).toMatchObject({ outages: 1, heldBatches: 2, down: true });
    down = false;
    await new Promise((r) => setTimeout(r, 100));
    expect(events.slice(2).sort()).toEqual(['resume c/1', 'resume e/1']);
    expect(g.stats()).toMatchObject({ outages: 1, down: false });
    expect(await g.admit(batch('e', 1))).toBe(true);
  });

  it('a slow lookup holds only its own partition; it resumes when the lookup lands, without an outage', async () => {
    let finish: () => void = () => {};
    const slow = new Promise<void>((r) => {
      finish = r;
    });
    const { g, events } = gate(() => slow);
    expect(await g.admit(batch('e', 3))).toBe(false);
    expect(events).toEqual(['pause e/3']);
    finish();
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual(['pause e/3', 'resume e/3']);
    expect(g.stats()).toMatchObject({ outages: 0, heldBatches: 1, down: false });
  });

  it('closed: takes nothing and resumes nothing', async () => {
    const { g, events } = gate(() => Promise.reject(new TransientError('down')));
    expect(await g.admit(batch('e', 0))).toBe(false);
    g.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(await g.admit(batch('e', 0))).toBe(false);
    expect(events).toEqual(['pause e/0']);
  });
});
