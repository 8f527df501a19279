// Seeded, time-bounded fuzzing of the whole per-message path (fast-check), 100k inputs per
// target in under a minute each:
//  - processor: bytes -> Avro decode -> rows -> alert rules + Alert encode -> enriched encode
//    -> Native blocks typed by the real migrated tables (chDB's system.columns);
//  - collector: ring-buffer bytes -> record decode -> Avro event encode -> EventBatch frame,
//    read back by the schema resolver.
// Inputs: mutations (bit flips, byte sets, inserts, deletes, cuts, splices) of golden
// messages and records, random bytes, and well-formed Avro carrying out-of-range values.
// Any exception other than the project's own error types fails the run, with the seed and
// the shrunk input. KTRAIL_FUZZ_SEED picks another seed; the default one is fixed.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createDecodeStats, decodeBatch } from '../../collector/src/kernel/decode.js';
import { KtrailError } from '../../common/errors.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { type Alert, AlertEngine } from '../../processor/src/alerts.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { type ColumnTypes, encodeNativeBlock } from '../../processor/src/clickhouse/native-format.js';
import { columnTypes } from '../../processor/src/clickhouse/writer.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { enrichedMessages } from '../../processor/src/enriched.js';
import type { EventRow, Row } from '../../processor/src/partition-batch.js';
import { EVENT_BATCHES_TABLE, tableForKind } from '../../processor/src/rows.js';
import { catalog, createEventBatchFramer, createSchemaResolver } from '../../schemas/codec.js';
import { sampleEventBatch } from '../../schemas/samples.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { buildMessageRows, columnsOf } from '../support/event-row.js';
import { looseEventBatchWriter } from '../support/loose-avro.js';

const RUNS = 100_000;
const TIME_LIMIT_MS = 60_000;
const SEED = Number(process.env.KTRAIL_FUZZ_SEED ?? 0x6b74_7261);

/** The project's own errors: a clear refusal of bad input, which is the point. */
const isOurs = (err: unknown): boolean => err instanceof KtrailError;

type Op = { at: number; value: number; kind: 'flip' | 'set' | 'insert' | 'delete' | 'cut' };

function mutate(base: Uint8Array, ops: Op[], splice: Uint8Array): Buffer {
  let b = Buffer.from(base);
  for (const op of ops) {
    const i = b.length === 0 ? 0 : op.at % b.length;
    if (op.kind === 'flip' && b.length > 0) b[i] = (b[i] as number) ^ (1 << (op.value % 8));
    else if (op.kind === 'set' && b.length > 0) b[i] = op.value;
    else if (op.kind === 'insert')
      b = Buffer.concat([b.subarray(0, i), Buffer.from([op.value]), b.subarray(i)]);
    else if (op.kind === 'delete') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
    else if (op.kind === 'cut')
      b = Buffer.concat([b.subarray(0, i), splice.subarray(op.value % (splice.length + 1))]);
  }
  return b;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  at: fc.nat(),
  value: fc.nat(255),
  kind: fc.constantFrom('flip', 'set', 'insert', 'delete', 'cut'),
});

function bytesArb(corpus: Buffer[]): fc.Arbitrary<Buffer> {
  const base = fc.constantFrom(...corpus);
  return fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .tuple(base, fc.array(opArb, { maxLength: 6 }), base)
        .map(([b, ops, s]) => mutate(b, ops, s)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)) },
  );
}

/** Well-formed EventBatch Avro whose events carry values the real schema's types can't hold. */
function outOfRangeAvroArb(): fc.Arbitrary<Buffer> {
  const write = looseEventBatchWriter();
  const sample = sampleEventBatch();
  const interesting = fc.oneof(
    fc.constantFrom(0, -1, 2 ** 15, 2 ** 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER),
    fc.integer(),
  );
  return fc
    .tuple(
      fc.nat(sample.events.length - 1),
      fc.nat(),
      interesting,
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    )
    .map(([which, field, n, big, epoch]) => {
      const ev = { ...(sample.events[which] as unknown as Record<string, unknown>) };
      const keys = Object.keys(ev).filter((k) => k !== 'kind');
      const key = keys[field % keys.length] as string;
      ev[key] = typeof ev[key] === 'bigint' ? big : typeof ev[key] === 'number' ? n : ev[key];
      try {
        return write({ ...sample, bootEpochNs: epoch, events: [ev] });
      } catch {
        return write(sample as unknown as Record<string, unknown>); // the loose writer can't write it either
      }
    });
}

describe('fuzz: the per-message paths refuse bad input only with the project’s own errors', () => {
  let ch: TestChdb;
  const types = new Map<string, ColumnTypes>();

  beforeAll(async () => {
    ch = await createTestChdb('fuzz');
    await migrate(ch.client);
    const kinds = catalog().current.EventBatch.schema as { fields: { name: string; type: unknown }[] };
    const names = new Set<string>([EVENT_BATCHES_TABLE]);
    JSON.stringify(kinds, (k, v) => {
      if (k === 'ktrail.kind' && typeof v === 'string') names.add(tableForKind(v));
      return v;
    });
    for (const table of names) types.set(table, await columnTypes(ch.client, `${ch.database}.${table}`));
  }, 120_000);

  it('processor: decode -> rows -> alerts -> enriched -> Native', () => {
    const codec = createProcessorCodec();
    const golden = readdirSync(join(REPO_ROOT, 'test/fixtures/avro'))
      .filter((f) => f.startsWith('EventBatch'))
      .map((f) => readFileSync(join(REPO_ROOT, 'test/fixtures/avro', f)));
    const alerts = new AlertEngine({
      oomKill: true,
      crashLoopExits: 2,
      crashLoopWindowMs: 60_000,
      tcpSpikeThreshold: 2,
      tcpSpikeWindowMs: 60_000,
      sequenceGap: true,
    });
    let runs = 0;
    let accepted = 0;
    const input = fc.oneof(
      { weight: 3, arbitrary: bytesArb(golden) },
      { weight: 1, arbitrary: outOfRangeAvroArb() },
    );
    fc.assert(
      fc.property(input, (bytes) => {
        runs++;
        try {
          const decoded = codec.decodeEventBatch(bytes, true);
          const { envelope, rows } = buildMessageRows(decoded, 0, '7', true);
          const tables = new Map<string, Row[]>([[EVENT_BATCHES_TABLE, [envelope]]]);
          const events = new Map<string, EventRow[]>();
          rows.forEach((row, i) => {
            const table = tableForKind(decoded.events[i]?.kind as string);
            tables.set(table, [...(tables.get(table) ?? []), row.columns]);
            events.set(table, [...(events.get(table) ?? []), row]);
          });
          const raised: Alert[] = [];
          alerts.observeSequence({ ...decoded, checksum: 0, offset: 7n }, raised);
          for (const [table, list] of events) for (const row of list) alerts.observe(table, row, raised);
          for (const a of raised) codec.encodeAlert(a);
          const enriched = enrichedMessages(
            columnsOf(events),
            { partition: 0, firstOffset: 7n, lastOffset: 7n },
            codec.encodeEnriched,
          );
          expect(enriched.failed.size).toBe(0); // decoded values always fit the enriched schema
          for (const [table, list] of tables) {
            const t = types.get(table);
            if (t !== undefined) encodeNativeBlock(list as Record<string, unknown>[], t);
          }
          accepted++;
        } catch (err) {
          if (!isOurs(err)) throw err;
        }
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: true },
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    expect(accepted).toBeGreaterThan(RUNS / 100); // the mutations still reach the later stages
  }, 120_000);

  it('collector: ring-buffer records -> decode -> Avro events -> EventBatch, read back', () => {
    const dir = join(REPO_ROOT, 'test/fixtures/records');
    const records = readdirSync(dir)
      .filter((f) => f.endsWith('.bin'))
      .map((f) => readFileSync(join(dir, f)));
    const batches = [Buffer.concat(records), ...records];
    const framer = createEventBatchFramer();
    const resolver = createSchemaResolver();
    const scratch = Buffer.alloc(1 << 20);
    let runs = 0;
    let events = 0;
    fc.assert(
      fc.property(bytesArb(batches), fc.nat(64), (bytes, claimed) => {
        runs++;
        const stats = createDecodeStats();
        const decoded = decodeBatch(bytes, stats, [], claimed === 0 ? undefined : claimed);
        let pos = 0;
        let count = 0;
        for (const ev of decoded) {
          try {
            const end = framer.writeEvent(ev as never, scratch, pos);
            if (end < 0) continue;
            pos = end;
            count++;
          } catch (err) {
            if (!isOurs(err)) throw err;
          }
        }
        const framed = framer.frame(
          {
            node: 'n',
            bootId: 'b',
            collectorVersion: 'fuzz',
            sequence: 1n,
            producedAtNs: 1n,
            bootEpochNs: null,
          },
          scratch.subarray(0, pos),
          count,
        );
        expect(resolver.decodeAs('EventBatch', framed).events).toHaveLength(count);
        events += count;
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: true },
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    expect(events).toBeGreaterThan(RUNS / 10);
  }, 120_000);
});
