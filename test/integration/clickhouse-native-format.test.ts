// The writer's Native path on the real chDB engine: the encoder's bytes equal the engine's own
// Native output for the same rows; rows sent as Native read back identical to the same rows
// sent as JSONEachRow (edge values included); deduplication, bad-data classification and the
// JSONEachRow fallback for tables the encoder doesn't write.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoisonError } from '../../common/errors.js';
import { describeClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { encodeNativeBlock } from '../../processor/src/clickhouse/native-format.js';
import { insertBatch, toJsonEachRow } from '../../processor/src/clickhouse/writer.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';

const COLUMNS = `
  k UInt32,
  u8 UInt8, u16 UInt16, i32 Int32, u64 UInt64,
  s String, lc LowCardinality(String), e Enum8('joined' = 1, 'pending' = 2, 'host' = 3),
  t DateTime64(9, 'UTC'),
  args Array(String), hist Array(UInt64)`;

/** Edge values for every type the encoder writes, in the shapes rows.ts produces. */
function edgeRows(): Record<string, unknown>[] {
  const strings = ['', 'plain', 'tab\there', 'new\nline', 'quote\'"\\', 'ünïcødé ✓', 'z'.repeat(200)];
  return strings.map((s, k) => ({
    k,
    u8: k === 0 ? 255 : k,
    u16: k === 0 ? 65_535 : k,
    i32: k === 0 ? -2_147_483_648 : k === 1 ? 2_147_483_647 : -k,
    // rows.ts: a number while a double holds it exactly, decimal text beyond; bigint too.
    u64:
      k === 0
        ? '18446744073709551615'
        : k === 1
          ? 9_007_199_254_740_993n
          : k === 2
            ? Number.MAX_SAFE_INTEGER
            : k === 3
              ? String(k * 1_000_003)
              : k * 1_000_003,
    s,
    lc: ['node-0', '', 'node-1', 'ünï', 'node-0'][k % 5],
    e: ['joined', 'pending', 'host'][k % 3],
    t: k === 0 ? '1764072000.000000001' : `17640720${String(k).padStart(2, '0')}.999999999`,
    args: k === 0 ? [] : [s, 'x'],
    hist: k === 0 ? [] : ['18446744073709551615', k],
  }));
}

describe('Native inserts on chDB', () => {
  let ch: TestChdb;
  let db: string;
  beforeAll(async () => {
    ch = await createTestChdb('native');
    db = ch.database;
    for (const t of ['via_native', 'via_json'])
      await ch.client.command({
        query: `CREATE TABLE ${db}.${t} (${COLUMNS}) ENGINE = MergeTree ORDER BY k`,
      });
  });
  afterAll(async () => {
    await ch?.close();
  });

  it('reads back exactly what JSONEachRow gives for the same rows', async () => {
    const rows = edgeRows();
    const native = await insertBatch(ch.client, { table: 'via_native', rows, dedupToken: 'n:1' });
    // chDB's own JSONEachRow insert, the path tables the encoder can't write take.
    const rawInsert = describeClickHouse(ch.client)?.rawInsert;
    if (rawInsert === undefined) throw new Error('a chDB client has rawInsert');
    await rawInsert({
      table: `${db}.via_json`,
      values: toJsonEachRow(rows),
      format: 'JSONEachRow',
      settings: {},
    });
    expect(native).toMatchObject({ rows: rows.length, format: 'Native' });
    const read = (t: string) => ch.rows(`SELECT * FROM ${db}.${t} ORDER BY k`);
    const fromNative = await read('via_native');
    expect(fromNative).toHaveLength(rows.length);
    expect(fromNative).toEqual(await read('via_json'));
    expect(fromNative[0]).toMatchObject({ u64: '18446744073709551615', t: '2025-11-25 12:00:00.000000001' });
    expect(fromNative[1]).toMatchObject({ u64: '9007199254740993', i32: 2_147_483_647 });
    expect(fromNative[2]).toMatchObject({ u64: '9007199254740991', hist: ['18446744073709551615', '2'] });
  });

  it("writes the same bytes as the engine's own Native output", async () => {
    const rows = edgeRows();
    const file = join(ch.dir, `native-${Date.now()}.bin`);
    // The engine's block for the same rows, with the wire types the encoder uses (its own
    // LowCardinality dictionary included).
    await ch.client.command({
      query: `INSERT INTO FUNCTION file('${file}', Native)
              SELECT k, u8, u16, i32, u64, s, lc, CAST(e AS String) AS e, t, args, hist
              FROM ${db}.via_json ORDER BY k`,
    });
    const types = new Map(
      (
        await ch.rows<{ name: string; type: string }>(
          `SELECT name, type FROM system.columns WHERE database = '${db}' AND table = 'via_json'`,
        )
      ).map((r) => [r.name, r.type]),
    );
    const ours = encodeNativeBlock(rows, types);
    expect(ours?.block.equals(await readFile(file))).toBe(true);
    await rm(file);
  });

  it('deduplicates a repeated token and classifies rows the table refuses as poison', async () => {
    await migrate(ch.client);
    const row = (i: number, time: string) => ({
      node: 'n',
      boot_id: 'b',
      time,
      ts_ns: String(i),
      cgroup_id: '1',
      pid: 0,
      tgid: 0,
      cpu_ns: '5',
      switches: '1',
      interval_ns: '1000000000',
      join_state: 'host',
    });
    // Recent: the raw table's TTL drops rows older than its retention on insert.
    const now = Math.floor(Date.now() / 1000);
    const rows = [1, 2, 3].map((i) => row(i, `${now - i}.000000000`));
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await insertBatch(ch.client, { table: 'cpu_sample', rows, dedupToken: 'cpu_sample:t:0:1-3' });
      expect(r.format).toBe('Native');
    }
    const [n] = await ch.rows<{ c: string; cores: string }>(
      `SELECT (SELECT count() FROM ${db}.cpu_sample) AS c, (SELECT sum(cpu_ns) FROM ${db}.usage_1m) AS cores`,
    );
    expect(n).toEqual({ c: '3', cores: '15' });
    // 1970: violates the table's time_is_set constraint.
    const bad = insertBatch(
      ch.client,
      { table: 'cpu_sample', rows: [row(9, '5.000000000')], dedupToken: 'cpu_sample:t:0:9-9' },
      { retry: { maxAttempts: 1 } },
    );
    await expect(bad).rejects.toBeInstanceOf(PoisonError);
  });

  it('falls back to JSONEachRow for a table with types the encoder does not write', async () => {
    await migrate(ch.client);
    const r = await insertBatch(ch.client, {
      table: 'collector_stats',
      rows: [
        {
          node: 'n',
          boot_id: 'b',
          interval_end_ns: '1764072000000000000',
          events_by_kind: { cpu_sample: '3' },
        },
      ],
      dedupToken: 'collector_stats:t:0:1-1',
    });
    expect(r.format).toBe('JSONEachRow');
    const [n] = await ch.rows<{ c: string }>(`SELECT count() AS c FROM ${db}.collector_stats`);
    expect(n?.c).toBe('1');
  });
});
