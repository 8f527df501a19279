// Golden bytes (test/fixtures/avro/<Name>.bin): the single-object encoding of <Name>.json.
// A failure here means the wire bytes of a schema changed. If that is deliberate (a new
// schema version), regenerate with `npx tsx schemas/golden.ts` and say so in the commit.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCHEMA_NAMES, TOPIC_SCHEMAS } from '../../schemas/catalog.js';
import { catalog, createEncoder, createSchemaResolver } from '../../schemas/codec.js';
import { GOLDEN_DIR, goldenPaths, readGoldenValue } from '../../schemas/golden.js';
import { createTopicDecoder, TOPIC_KINDS } from '../../schemas/topic-decoder.js';

describe('golden Avro bytes', () => {
  it.each(SCHEMA_NAMES)('%s: encoding the fixture value gives the golden bytes', (name) => {
    const golden = readFileSync(goldenPaths(name).bin);
    const encoded = createEncoder(name).encode(readGoldenValue(name) as never);
    expect(
      encoded.toString('hex'),
      `encoding of ${name} changed; if deliberate: npx tsx schemas/golden.ts`,
    ).toBe(golden.toString('hex'));
  });

  it.each(SCHEMA_NAMES)(
    '%s: the golden bytes name the current schema and decode to the fixture value',
    (name) => {
      const golden = readFileSync(goldenPaths(name).bin);
      expect(golden.readBigUInt64LE(2)).toBe(catalog().current[name].fingerprint);
      const decoded = createSchemaResolver().decode(golden);
      expect(decoded.schema).toBe(name);
      expect(structuredClone(decoded.value)).toEqual(structuredClone(readGoldenValue(name)));
    },
  );

  it('the EventBatch fixture covers every event kind and the u64 extremes', () => {
    const value = readGoldenValue('EventBatch') as { events: { kind: string; tsNs: bigint }[] };
    const union = (
      catalog().current.EventBatch.schema.fields as { name: string; type: { items: unknown[] } }[]
    ).find((f) => f.name === 'events');
    expect(new Set(value.events.map((e) => e.kind)).size).toBe(union?.type.items.length);
    expect(value.events.some((e) => e.tsNs === 2n ** 64n - 1n)).toBe(true);
  });
});

describe('golden bytes of every released version', () => {
  const files = readdirSync(GOLDEN_DIR)
    .map((f) => /^(\w+)\.v(\d+)\.bin$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null);

  it('exist for the latest release of each schema', () => {
    for (const name of SCHEMA_NAMES) {
      const version = catalog().current[name].version;
      expect(
        files.some((m) => m[1] === name && Number(m[2]) === version),
        `${name}.v${version}.bin`,
      ).toBe(true);
    }
  });

  it.each(files.map((m) => [m[0], m[1], Number(m[2])] as const))(
    '%s still decodes with the current reader',
    (file, name, version) => {
      const decoded = createSchemaResolver().decode(readFileSync(`${GOLDEN_DIR}${file}`));
      expect(decoded.schema).toBe(name);
      expect(decoded.writerVersion).toBe(version);
    },
  );
});

describe('topic decoder (schemas/topic-decoder.ts)', () => {
  const decode = createTopicDecoder();
  it.each(TOPIC_KINDS)('%s: reads its schema golden message and refuses another schema', (kind) => {
    const name = TOPIC_SCHEMAS[kind];
    expect(structuredClone(decode(kind, readFileSync(goldenPaths(name).bin)))).toEqual(
      structuredClone(readGoldenValue(name)),
    );
    const other = kind === 'events' ? 'Alert' : 'EventBatch';
    expect(() => decode(kind, readFileSync(goldenPaths(other).bin))).toThrow(
      `expected ${name}, got ${other}`,
    );
  });
});
