// Smoke: the embedded ClickHouse engine (chDB through @clickhouse/client) is real. A MergeTree
// with a TTL is created, filled and queried, and its data survives the process: one child
// process writes and exits, another opens the same directory and reads.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { REPO_ROOT } from '../../common/repo-root.js';
import { ENGINE_ARGS } from '../../processor/src/clickhouse/client.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { itReal } from '../support/real.js';

const run = promisify(execFile);

/** Runs an ES module snippet in a fresh node process (tsx loader, repo as cwd); returns stdout. */
async function inChild(code: string): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: REPO_ROOT,
    timeout: 120_000,
    env: { ...process.env, KTRAIL_LOG_LEVEL: 'warn' },
  });
  return stdout.trim();
}

describe('chDB smoke', () => {
  let ch: TestChdb;
  beforeAll(async () => {
    ch = await createTestChdb('smoke');
  });
  afterAll(async () => {
    await ch?.close();
  });

  itReal(undefined)('creates a MergeTree with a TTL, fills and queries it', async () => {
    const db = ch.database;
    await ch.client.command({
      query: `CREATE TABLE ${db}.readings (time DateTime64(9, 'UTC'), id UInt64, v Float64)
              ENGINE = MergeTree PARTITION BY toDate(time) ORDER BY (id, time)
              TTL toDateTime(time) + INTERVAL 3 DAY`,
    });
    const now = Date.now();
    const rows = Array.from({ length: 1000 }, (_, i) => ({
      time: new Date(now - i * 1000).toISOString(),
      id: i % 10,
      v: i / 2,
    }));
    // One row older than the TTL: a TTL merge must remove it.
    rows.push({ time: new Date(now - 10 * 86_400_000).toISOString(), id: 99, v: 1 });
    await ch.client.insert({ table: `${db}.readings`, values: rows, format: 'JSONEachRow' });
    await ch.client.command({ query: `OPTIMIZE TABLE ${db}.readings FINAL` });

    const [agg] = await ch.rows<{ n: string; ids: string; total: number }>(
      `SELECT count() AS n, uniqExact(id) AS ids, sum(v) AS total FROM ${db}.readings`,
    );
    expect(agg).toEqual({ n: '1000', ids: '10', total: (999 * 1000) / 4 });
    const [create] = await ch.rows<{ statement: string }>(`SHOW CREATE TABLE ${db}.readings`);
    expect(create?.statement).toMatch(/TTL toDateTime\(time\) \+ toIntervalDay\(3\)/);
  });

  itReal(undefined)('applies the client settings that matter (checked in the engine)', async () => {
    const settings = await ch.rows<{ name: string; value: string }>(
      `SELECT name, value FROM system.settings WHERE name IN
       ('output_format_json_quote_64bit_integers', 'async_insert', 'session_timezone', 'input_format_skip_unknown_fields',
        'deduplicate_blocks_in_dependent_materialized_views', 'insert_deduplicate')
       ORDER BY name`,
    );
    expect(Object.fromEntries(settings.map((s) => [s.name, s.value]))).toEqual({
      async_insert: '0',
      // Engine defaults the exactly-once design relies on (see clickhouse-dedup.test.ts).
      deduplicate_blocks_in_dependent_materialized_views: '1',
      insert_deduplicate: '1',
      input_format_skip_unknown_fields: '0',
      output_format_json_quote_64bit_integers: '1',
      session_timezone: 'UTC',
    });
  });

  itReal(undefined)('round-trips UInt64 max and Int64 min without precision loss', async () => {
    const db = ch.database;
    await ch.client.command({
      query: `CREATE TABLE ${db}.big (u UInt64, i Int64) ENGINE = MergeTree ORDER BY u`,
    });
    const u = 2n ** 64n - 1n;
    const i = -(2n ** 63n);
    await ch.client.insert({
      table: `${db}.big`,
      values: [{ u: u.toString(), i: i.toString() }],
      format: 'JSONEachRow',
    });
    const [row] = await ch.rows<{ u: string; i: string }>(`SELECT u, i FROM ${db}.big`);
    expect(row).toEqual({ u: u.toString(), i: i.toString() });
  });

  itReal(undefined)(
    'a second process cannot open a data directory this process holds',
    async () => {
      const other = `
        import { createClickHouse } from './processor/src/clickhouse/client.ts';
        try {
          const c = await createClickHouse({ kind: 'chdb', path: ${JSON.stringify(ch.dir)}, database: 'intruder' });
          await c.query({ query: 'SELECT 1' });
          console.log('opened');
        } catch (err) {
          console.log('refused: ' + err.message.split('\\n')[0]);
        }`;
      const out = await inChild(other).catch(
        (err: { stdout?: string; message: string }) => `failed: ${err.stdout ?? ''} ${err.message}`,
      );
      expect(out).toMatch(/refused: cannot open chDB store/);
      // This process still works on its directory.
      expect(await ch.rows('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    },
    120_000,
  );

  itReal(undefined)("starts the engine with ktrail's server configuration", async () => {
    const wanted = Object.fromEntries(ENGINE_ARGS.map((a) => a.slice(2).split('=')));
    const visible = await ch.rows<{ name: string; value: string }>(
      `SELECT name, value FROM system.server_settings WHERE name IN (${Object.keys(wanted)
        .map((n) => `'${n}'`)
        .join(', ')})`,
    );
    // Only some of them are server settings the engine lists; those must hold our values.
    expect(visible.length).toBeGreaterThan(0);
    for (const { name, value } of visible) expect(value).toBe(wanted[name]);
  });

  itReal(undefined)(
    'closing the client releases the engine: another directory opens next in the same process',
    async () => {
      const paths = [0, 1].map((i) => mkdtempSync(join(tmpdir(), `ktrail-chdb-reopen-${i}-`)));
      const dirs = paths.map((p) => JSON.stringify(p));
      const out = await inChild(`
        import { createClickHouse } from './processor/src/clickhouse/client.ts';
        for (const path of [${dirs.join(', ')}]) {
          const c = await createClickHouse({ kind: 'chdb', path, database: 'reopen' });
          const r = await c.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' });
          console.log(JSON.stringify(await r.json()));
          await c.close();
        }`);
      for (const p of paths) rmSync(p, { recursive: true, force: true });
      expect(out.split('\n').slice(-2)).toEqual(['[{"one":1}]', '[{"one":1}]']);
    },
    120_000,
  );

  itReal(undefined)(
    'keeps the data across processes: one writes and exits, another reads the same directory',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ktrail-chdb-restart-'));
      const factory = './processor/src/clickhouse/client.ts';
      const writer = `
        import { createClickHouse } from '${factory}';
        const c = await createClickHouse({ kind: 'chdb', path: ${JSON.stringify(dir)}, database: 'persist' });
        await c.command({ query: "CREATE TABLE persist.t (d Date DEFAULT today(), id UInt64, s String) ENGINE = MergeTree ORDER BY id TTL d + INTERVAL 30 DAY" });
        await c.insert({ table: 'persist.t', values: Array.from({ length: 500 }, (_, i) => ({ id: i, s: 'x' + i })), format: 'JSONEachRow' });
        await c.close();
        console.log('pid ' + process.pid);`;
      const reader = `
        import { createClickHouse } from '${factory}';
        const c = await createClickHouse({ kind: 'chdb', path: ${JSON.stringify(dir)}, database: 'persist' });
        const r = await c.query({ query: 'SELECT count() AS n, sum(id) AS total, max(s) AS top FROM persist.t', format: 'JSONEachRow' });
        console.log(JSON.stringify({ pid: process.pid, rows: await r.json() }));
        await c.close();`;
      const wrote = await inChild(writer);
      const read = JSON.parse((await inChild(reader)).split('\n').pop()!);
      expect(read.pid).not.toBe(Number(wrote.replace('pid ', '')));
      expect(read.rows).toEqual([{ n: '500', total: String((499 * 500) / 2), top: 'x99' }]);
    },
    180_000,
  );
});
