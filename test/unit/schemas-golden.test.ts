// Golden bytes (test/fixtures/avro/<Name>.bin): the single-object encoding of <Name>.json.
// A failure here means the wire bytes of a schema changed. If that is deliberate (a new
// schema version), regenerate with `npx tsx schemas/golden.ts` and say so in the commit.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCHEMA_NAMES } from '../../schemas/catalog.js';
import { catalog, createEncoder, createSchemaResolver } from '../../schemas/codec.js';
import { goldenPaths, readGoldenValue } from '../../schemas/golden.js';

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
