// Schema evolution: the working schemas must equal their latest released version, and the
// latest version must read every earlier version's data (backward) and be readable by
// every earlier version (forward). The second half shows the check catching real breaks
// on temporary schema histories (never written to schemas/history).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { compileSchema } from '../../schemas/avro-types.js';
import {
  loadCurrentSchemas,
  loadHistorySchemas,
  SCHEMA_NAMES,
  type SchemaName,
} from '../../schemas/catalog.js';
import { versionProblems } from '../../schemas/compat.js';
import { parsingCanonicalForm } from '../../schemas/fingerprint.js';
import { sampleEventBatch } from '../../schemas/samples.js';

const current = loadCurrentSchemas();

describe('released history (schemas/history)', () => {
  it.each(SCHEMA_NAMES)('%s: the working schema is the latest released version', (name) => {
    const latest = loadHistorySchemas(name).at(-1);
    expect(latest, `no schemas/history/${name}/v1.avsc: run npx tsx schemas/snapshot.ts`).toBeDefined();
    expect(
      parsingCanonicalForm(current[name]),
      `schemas/${name}.avsc differs from history v${latest?.version}: run npx tsx schemas/snapshot.ts, then this test checks the new version`,
    ).toBe(parsingCanonicalForm(latest?.schema));
  });

  it.each(SCHEMA_NAMES)(
    '%s: the latest version is backward and forward compatible with every earlier one',
    (name) => {
      const versions = loadHistorySchemas(name).map((v) => ({ label: `v${v.version}`, schema: v.schema }));
      expect(versions.length).toBeGreaterThan(0);
      // With only v1 released this compares v1 with itself, which still runs the data check.
      const checked =
        versions.length === 1 ? [...versions, { label: 'working', schema: current[name] }] : versions;
      expect(versionProblems(name, checked)).toEqual([]);
    },
  );
});

type Json = Record<string, unknown> & { fields: (Record<string, unknown> & { name: string })[] };

/** A temporary history folder with v1 = today's schema and v2 = `change(today's)`. */
function tempHistory(name: SchemaName, change: (schema: Json) => Json): { label: string; schema: unknown }[] {
  const dir = `${mkdtempSync(`${tmpdir()}/ktrail-schemas-`)}/`;
  dirs.push(dir);
  mkdirSync(`${dir}${name}`);
  const v1 = structuredClone(current[name]) as Json;
  writeFileSync(`${dir}${name}/v1.avsc`, JSON.stringify(v1));
  writeFileSync(`${dir}${name}/v2.avsc`, JSON.stringify(change(structuredClone(v1))));
  return loadHistorySchemas(name, dir).map((v) => ({ label: `v${v.version}`, schema: v.schema }));
}
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function eventRecord(batch: Json, name: string): Json {
  const events = batch.fields.find((f) => f.name === 'events') as unknown as { type: { items: Json[] } };
  const record = events.type.items.find((r) => r.name === name);
  if (record === undefined) throw new Error(`no ${name}`);
  return record;
}

describe('the check catches breaking changes', () => {
  it('a field added without a default breaks backward compatibility, naming schema and field', () => {
    const versions = tempHistory('ContainerRecord', (s) => {
      s.fields.push({ name: 'cpuShares', type: 'long' });
      return s;
    });
    const problems = versionProblems('ContainerRecord', versions);
    expect(problems).toEqual([
      expect.stringMatching(
        /^backward \(v2 reading v1\): ContainerRecord\.cpuShares: field is not in the writer schema/,
      ),
    ]);
  });

  it('the same field inside an event record is named through the union', () => {
    const versions = tempHistory('EventBatch', (s) => {
      eventRecord(s, 'ProcExec').fields.push({ name: 'cwd', type: 'string' });
      return s;
    });
    expect(versionProblems('EventBatch', versions)).toEqual([
      expect.stringContaining(
        'EventBatch.events[]<io.ktrail.v1.ProcExec>.cwd: field is not in the writer schema',
      ),
    ]);
  });

  it('a changed field type breaks both directions and names the field', () => {
    const versions = tempHistory('CollectorStats', (s) => {
      const field = s.fields.find((f) => f.name === 'node');
      if (field) field.type = 'int';
      return s;
    });
    const problems = versionProblems('CollectorStats', versions);
    expect(problems.some((p) => p.startsWith('backward') && p.includes('CollectorStats.node'))).toBe(true);
    expect(problems.some((p) => p.startsWith('forward') && p.includes('CollectorStats.node'))).toBe(true);
  });

  it('removing a field without a default breaks forward compatibility', () => {
    const versions = tempHistory('DeadLetter', (s) => {
      s.fields = s.fields.filter((f) => f.name !== 'reason');
      return s;
    });
    expect(versionProblems('DeadLetter', versions)).toEqual([
      expect.stringMatching(
        /^forward \(v1 reading v2\): DeadLetter\.reason: field is not in the writer schema/,
      ),
    ]);
  });
});

describe('the changes we plan for stay compatible', () => {
  it('a nullable field with default null', () => {
    const versions = tempHistory('ContainerRecord', (s) => {
      s.fields.push({ name: 'qosClass', type: ['null', 'string'], default: null });
      return s;
    });
    expect(versionProblems('ContainerRecord', versions)).toEqual([]);
  });

  it('a new event kind appended to the union; old readers decode it with its kind', () => {
    const versions = tempHistory('EventBatch', (s) => {
      const events = s.fields.find((f) => f.name === 'events') as unknown as { type: { items: Json[] } };
      events.type.items.push({
        type: 'record',
        name: 'ProcSignal',
        namespace: 'io.ktrail.v1',
        'ktrail.kind': 'proc_signal',
        fields: [
          { name: 'tsNs', type: 'long' },
          { name: 'signal', type: { type: 'long', 'ktrail.js': 'number' } },
        ],
      });
      return s;
    });
    expect(versionProblems('EventBatch', versions)).toEqual([]);

    const [oldType, newType] = versions.map((v) => compileSchema(v.schema));
    if (oldType === undefined || newType === undefined) throw new Error('two versions expected');
    const batch = {
      ...sampleEventBatch(),
      events: [{ kind: 'proc_signal', tsNs: 5n, signal: 9 }, sampleEventBatch().events[0]],
    };
    const read = oldType.fromBuffer(newType.toBuffer(batch), oldType.createResolver(newType));
    expect(read.events.map((e: { kind: string }) => e.kind)).toEqual(['proc_signal', 'proc_exec']);
    expect(read.events[0].signal).toBe(9);
  });
});
