// Migrations on the real chDB engine: applied in order and tracked, a re-run is a no-op, a
// changed TTL reaches tables that already exist, an edited applied migration is refused;
// and the schema they build works: rollups, the pending re-join views, completeness.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sqlDateTime } from '../../deploy/clickhouse/queries.js';
import {
  MIGRATIONS_DIR,
  migrate,
  readMigrations,
  render,
  splitStatements,
} from '../../processor/src/clickhouse/migrate.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { statsRow } from '../../processor/src/rows.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { fixtureMs, msToNs, utcDayMs } from '../support/fixture-time.js';
import { itReal } from '../support/real.js';

const NODE = 'node-a';
const BASE_MS = fixtureMs(1, 10); // 10:00:00 UTC yesterday
const BASE_NS = msToNs(BASE_MS);
/** A minute bucket after BASE as ClickHouse prints it. */
const at = (minutes: number) => sqlDateTime(new Date(BASE_MS + minutes * 60_000));
const DAY = sqlDateTime(new Date(utcDayMs(1)));

function common(cgroupId: bigint, timeNs: bigint, extra: Record<string, unknown> = {}) {
  return {
    node: NODE,
    boot_id: 'boot-1',
    time: timeNs,
    ts_ns: timeNs - BASE_NS + 1_000_000_000n,
    cgroup_id: cgroupId,
    pid: 0,
    tgid: 0,
    ...extra,
  };
}

describe('ClickHouse migrations', () => {
  let ch: TestChdb;
  beforeEach(async () => {
    ch = await createTestChdb('mig');
  });
  afterEach(async () => {
    await ch?.close();
  });

  const ttlOf = async (table: string) => {
    const [row] = await ch.rows<{ statement: string }>(`SHOW CREATE TABLE ${ch.database}.${table}`);
    return /TTL (.*)/.exec(row?.statement ?? '')?.[1];
  };

  itReal(undefined)('applies every migration once, tracks it, and a re-run is a no-op', async () => {
    const files = readMigrations();
    const first = await migrate(ch.client, { ttlRawDays: 14 });
    expect(first.applied).toHaveLength(files.length);
    const tracked = await ch.rows<{ version: number; name: string }>(
      `SELECT version, name FROM ${ch.database}.ktrail_migrations ORDER BY version, name`,
    );
    expect(tracked.map((t) => t.name).sort()).toEqual(files.map((f) => f.name).sort());

    const tables = await ch.rows<{ name: string; engine: string }>(
      `SELECT name, engine FROM system.tables WHERE database = '${ch.database}' ORDER BY name`,
    );
    const engines = Object.fromEntries(tables.map((t) => [t.name, t.engine]));
    for (const kind of [
      'proc_exec',
      'proc_exit',
      'tcp_close',
      'cpu_sample',
      'memory_sample',
      'block_sample',
    ]) {
      expect(engines[kind], kind).toBe('MergeTree');
      expect(engines[`${kind}_resolved`], `${kind}_resolved`).toBe('View');
    }
    expect(engines.containers).toBe('ReplacingMergeTree');
    // One rollup table, one view per sample table into it, and a view per resolution.
    expect(engines.usage).toBe('AggregatingMergeTree');
    for (const kind of ['cpu_sample', 'memory_sample', 'net_sample', 'block_sample']) {
      expect(engines[`usage_from_${kind}`], kind).toBe('MaterializedView');
    }
    for (const view of ['usage_1m', 'usage_1h', 'usage_1d']) expect(engines[view], view).toBe('View');
    expect(engines.usage_1m_from_cpu_sample).toBeUndefined();
    expect(engines.usage_1h_from_usage_1m).toBeUndefined();
    expect(engines.completeness_hourly).toBe('View');

    const again = await migrate(ch.client, { ttlRawDays: 14 });
    expect(again).toEqual({ applied: [], reapplied: [], upToDate: true });
    const [count] = await ch.rows<{ n: string }>(`SELECT count() AS n FROM ${ch.database}.ktrail_migrations`);
    expect(Number(count?.n)).toBe(files.length);
  });

  itReal(undefined)('a changed TTL setting reaches existing tables (14 days, then 7)', async () => {
    await migrate(ch.client, { ttlRawDays: 14, ttlRollupDays: 400 });
    expect(await ttlOf('cpu_sample')).toMatch(/toIntervalDay\(14\)/);
    expect(await ttlOf('usage')).toMatch(/toIntervalDay\(400\)/);

    const second = await migrate(ch.client, { ttlRawDays: 7, ttlRollupDays: 500 });
    expect(second.applied).toEqual([]);
    expect(second.reapplied).toEqual(['R_ttl.sql']);
    for (const table of ['cpu_sample', 'proc_exec', 'tcp_close', 'dead_letters']) {
      expect(await ttlOf(table), table).toMatch(/toIntervalDay\(7\)/);
    }
    expect(await ttlOf('usage')).toMatch(/toIntervalDay\(500\)/);
  });

  itReal(undefined)('refuses an applied migration whose file changed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-migrations-'));
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    await migrate(ch.client, { dir });
    const file = join(dir, '0002_metadata_and_completeness.sql');
    writeFileSync(file, `${readFileSync(file, 'utf8')}\n-- an edit after the fact\n`);
    await expect(migrate(ch.client, { dir })).rejects.toThrow(
      /0002_metadata_and_completeness\.sql was applied.*must not change/,
    );
  });

  itReal(undefined)('a later migration changes settings of existing tables (MODIFY SETTING)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-migrations-'));
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    await migrate(ch.client, { dir });
    const settingsOf = async (table: string) => {
      const [row] = await ch.rows<{ statement: string }>(`SHOW CREATE TABLE ${ch.database}.${table}`);
      return /SETTINGS (.*)/.exec(row?.statement ?? '')?.[1];
    };
    expect(await settingsOf('tcp_close')).toMatch(/non_replicated_deduplication_window = 1000/);
    writeFileSync(
      join(dir, '0099_wider_dedup_window.sql'),
      `-- two statements in one migration
ALTER TABLE {{database}}.tcp_close MODIFY SETTING non_replicated_deduplication_window = 5000;
ALTER TABLE {{database}}.tcp_close MODIFY COMMENT 'wider dedup window';`,
    );
    const result = await migrate(ch.client, { dir });
    expect(result.applied).toEqual(['0099_wider_dedup_window.sql']);
    expect(await settingsOf('tcp_close')).toMatch(/non_replicated_deduplication_window = 5000/);
  });

  itReal(undefined)('rollups aggregate samples per container at 1m, 1h and 1d', async () => {
    await migrate(ch.client);
    const cg = 4242n;
    // 120 cpu samples, one per second from 10:00:00: half a core each, 2 minutes.
    const cpu = Array.from({ length: 120 }, (_, i) =>
      common(cg, BASE_NS + BigInt(i) * 1_000_000_000n, {
        cpu_ns: 500_000_000n,
        switches: 10n,
        interval_ns: 1_000_000_000n,
        container_id: 'c1',
        join_state: 'joined',
      }),
    );
    const mem = [100, 200, 300, 400].map((mb, i) =>
      common(cg, BASE_NS + BigInt(i) * 30_000_000_000n, {
        current_bytes: BigInt(mb) * 1_048_576n,
        peak_bytes: 500n * 1_048_576n,
        limit_bytes: 0n,
        oom_events: i === 3 ? 1n : 0n,
      }),
    );
    const block = [
      common(cg, BASE_NS, {
        read_bytes: 4096n,
        write_bytes: 8192n,
        read_ios: 1n,
        write_ios: 2n,
        latency_hist: Array.from({ length: 32 }, (_, i) => (i === 3 ? 2 : 0)),
        interval_ns: 1_000_000_000n,
      }),
    ];
    await insertBatch(ch.client, { table: 'cpu_sample', rows: cpu, dedupToken: 'cpu_sample:t:0:0-119' });
    await insertBatch(ch.client, { table: 'memory_sample', rows: mem, dedupToken: 'memory_sample:t:0:0-3' });
    await insertBatch(ch.client, { table: 'block_sample', rows: block, dedupToken: 'block_sample:t:0:0-0' });

    const db = ch.database;
    const perMinute = await ch.rows<Record<string, unknown>>(
      `SELECT bucket, max(container_id) AS cid, sum(cpu_ns) AS cpu, sum(cpu_switches) AS sw,
              quantilesMerge(0.5, 0.95)(cpu_cores) AS cores, max(mem_bytes_max) AS mem_max, sum(oom_events) AS ooms
       FROM ${db}.usage_1m WHERE cgroup_id = ${cg} GROUP BY bucket ORDER BY bucket`,
    );
    expect(perMinute).toEqual([
      {
        bucket: at(0),
        cid: 'c1',
        cpu: '30000000000',
        sw: '600',
        cores: [0.5, 0.5],
        mem_max: String(200 * 1_048_576),
        ooms: '0',
      },
      {
        bucket: at(1),
        cid: 'c1',
        cpu: '30000000000',
        sw: '600',
        cores: [0.5, 0.5],
        mem_max: String(400 * 1_048_576),
        ooms: '1',
      },
    ]);
    for (const [table, bucket] of [
      ['usage_1h', at(0)],
      ['usage_1d', DAY],
    ] as const) {
      const rows = await ch.rows<Record<string, unknown>>(
        `SELECT bucket, sum(cpu_ns) AS cpu, quantilesMerge(0.5, 0.95)(mem_bytes) AS mem_q, max(mem_peak_bytes) AS peak,
                sum(blk_write_bytes) AS wb, sumForEachMerge(blk_latency_hist)[4] AS hist3
         FROM ${db}.${table} WHERE cgroup_id = ${cg} GROUP BY bucket`,
      );
      expect(rows, table).toHaveLength(1);
      expect(rows[0], table).toMatchObject({
        bucket,
        cpu: '60000000000',
        peak: String(500 * 1_048_576),
        wb: '8192',
        hist3: '2',
      });
      const q = rows[0]?.mem_q as number[];
      expect(q[0]).toBeGreaterThanOrEqual(200 * 1_048_576);
      expect(q[0]).toBeLessThanOrEqual(300 * 1_048_576);
      expect(q[1]).toBeGreaterThan(350 * 1_048_576);
    }
  });

  itReal(undefined)(
    'upgrading a store built with the rollup chain (0003) keeps its rollups, exactly once, also when re-run',
    async () => {
      const db = ch.database;
      const cg = 5151n;
      const minute = (m: number) =>
        Array.from({ length: 60 }, (_, i) =>
          common(cg, BASE_NS + BigInt(m * 60 + i) * 1_000_000_000n, {
            cpu_ns: 250_000_000n,
            switches: 1n,
            interval_ns: 1_000_000_000n,
            container_id: 'c9',
            join_state: 'joined',
          }),
        );
      // The store as 0001-0004 left it: samples went through the 1m -> 1h -> 1d chain.
      const old = mkdtempSync(join(tmpdir(), 'ktrail-migrations-'));
      cpSync(MIGRATIONS_DIR, old, { recursive: true });
      for (const file of readdirSync(old))
        if (file.startsWith('R_') || file >= '0005') rmSync(join(old, file));
      await migrate(ch.client, { dir: old });
      await insertBatch(ch.client, {
        table: 'cpu_sample',
        rows: minute(0),
        dedupToken: 'cpu_sample:t:0:0-59',
      });
      const [engine] = await ch.rows<{ engine: string }>(
        `SELECT engine FROM system.tables WHERE database = '${db}' AND name = 'usage_1h'`,
      );
      expect(engine?.engine).toBe('AggregatingMergeTree');

      const upgrade = await migrate(ch.client);
      expect(upgrade.applied.slice(0, 1)).toEqual(['0005_one_rollup_table.sql']);
      expect(upgrade.applied.at(-1)).toBe('R_ttl.sql');
      // The next minute goes through the new view; the old rows were carried over.
      await insertBatch(ch.client, {
        table: 'cpu_sample',
        rows: minute(1),
        dedupToken: 'cpu_sample:t:0:60-119',
      });
      // An upgrade interrupted after its copy runs all of 0005 again: nothing is copied twice.
      const [again] = readMigrations().filter((f) => f.name === 'one_rollup_table');
      for (const statement of splitStatements(
        render(again!.text, { database: db, ttl_rollup_days: 400, dedup_window: 1000 }),
      ))
        await ch.client.command({ query: statement });

      const sums = async (table: string) =>
        ch.rows<{ bucket: string; cpu: string }>(
          `SELECT bucket, sum(cpu_ns) AS cpu FROM ${db}.${table} WHERE cgroup_id = ${cg} GROUP BY bucket ORDER BY bucket`,
        );
      expect(await sums('usage_1m')).toEqual([
        { bucket: at(0), cpu: '15000000000' },
        { bucket: at(1), cpu: '15000000000' },
      ]);
      expect(await sums('usage_1h')).toEqual([{ bucket: at(0), cpu: '30000000000' }]);
      expect(await sums('usage_1d')).toEqual([{ bucket: DAY, cpu: '30000000000' }]);
      const [cores] = await ch.rows<{ q: number[] }>(
        `SELECT quantilesMerge(0.5, 0.95)(cpu_cores) AS q FROM ${db}.usage_1h WHERE cgroup_id = ${cg}`,
      );
      expect(cores?.q).toEqual([0.25, 0.25]);
    },
  );

  itReal(undefined)(
    'pending rows resolve in the *_resolved view once the container record arrives',
    async () => {
      await migrate(ch.client);
      const db = ch.database;
      const cg = 777n;
      await insertBatch(ch.client, {
        table: 'proc_exec',
        rows: [
          common(cg, BASE_NS, {
            pid: 10,
            tgid: 10,
            ppid: 1,
            uid: 0,
            gid: 0,
            args_count: 2,
            args_size: 12,
            comm: 'sh',
            filename: '/bin/sh',
            args: ['sh', '-c', 'true'],
            join_state: 'pending',
          }),
        ],
        dedupToken: 'proc_exec:events:0:5-5',
      });
      const view = () =>
        ch.rows<{ container_id: string; container_name: string; join_state: string; resolved_late: number }>(
          `SELECT container_id, container_name, join_state, resolved_late FROM ${db}.proc_exec_resolved WHERE cgroup_id = ${cg}`,
        );
      expect(await view()).toEqual([
        { container_id: '', container_name: '', join_state: 'pending', resolved_late: 0 },
      ]);

      await insertBatch(ch.client, {
        table: 'containers',
        rows: [
          {
            node: NODE,
            cgroup_id: cg,
            cgroup_path: '/docker/abc',
            runtime: 'docker',
            container_id: 'abc',
            name: 'web',
            image: 'busybox',
            labels: { app: 'web' },
            cpu_limit_millis: 500,
            started_at_ns: BASE_NS - 1_000_000_000n,
            updated_at_ns: BASE_NS + 5_000_000_000n,
            state: 'RUNNING',
          },
        ],
        dedupToken: 'containers:meta:0:1-1',
      });
      expect(await view()).toEqual([
        { container_id: 'abc', container_name: 'web', join_state: 'joined', resolved_late: 1 },
      ]);
      // The raw row is unchanged: the view resolves, nothing is rewritten.
      const [raw] = await ch.rows<{ join_state: string }>(`SELECT join_state FROM ${db}.proc_exec`);
      expect(raw?.join_state).toBe('pending');
      const [c] = await ch.rows<{ started_at: string; stopped_at: string | null; limit: string | null }>(
        `SELECT started_at, stopped_at, cpu_limit_millis AS limit FROM ${db}.containers FINAL`,
      );
      expect(c).toEqual({
        started_at: `${sqlDateTime(new Date(BASE_MS - 1000))}.000000000`,
        stopped_at: null,
        limit: '500',
      });
    },
  );

  itReal(undefined)('completeness_hourly counts received, missing and duplicated batches', async () => {
    await migrate(ch.client);
    const db = ch.database;
    // Sequences 1..10 at 10:xx with 4 and 7 missing and 5 seen twice (a producer re-send).
    const seqs = [1, 2, 3, 5, 5, 6, 8, 9, 10];
    const rows = seqs.map((s, i) => ({
      node: NODE,
      boot_id: 'boot-1',
      sequence: s,
      time: BASE_NS + BigInt(s) * 60_000_000_000n,
      events: 100,
      kafka_partition: 0,
      kafka_offset: i,
    }));
    await insertBatch(ch.client, { table: 'event_batches', rows, dedupToken: 'event_batches:events:0:0-8' });
    const got = await ch.rows(
      `SELECT hour, batches_received, batches_duplicated, batches_missing, events_received FROM ${db}.completeness_hourly`,
    );
    expect(got).toEqual([
      {
        hour: at(0),
        batches_received: '8',
        batches_duplicated: '1',
        batches_missing: '2',
        events_received: '900',
      },
    ]);
  });
});

describe('capture gaps', () => {
  let ch: TestChdb;
  beforeEach(async () => {
    ch = await createTestChdb('gaps');
  });
  afterEach(async () => {
    await ch.close();
  });

  itReal(undefined)('capture_gaps shows the time between one collector run and the next', async () => {
    await migrate(ch.client);
    const s = (sec: number) => BASE_NS + BigInt(sec) * 1_000_000_000n;
    // Run 1: 0-10 s, 10-20 s. Run 2 (same boot): 35-45 s, its first record sent twice
    // (kept on disk at a stop and sent again). Run 3 after a reboot: 60-70 s.
    const intervals: Array<[string, number, number]> = [
      ['boot-1', 0, 10],
      ['boot-1', 10, 20],
      ['boot-1', 35, 45],
      ['boot-1', 35, 45],
      ['boot-2', 60, 70],
    ];
    const rows = intervals.map(([boot, from, to]) =>
      statsRow({
        node: NODE,
        bootId: boot,
        collectorVersion: 't',
        firstSequence: null,
        lastSequence: null,
        intervalStartNs: s(from),
        intervalEndNs: s(to),
        eventsByKind: {},
        kernelDropsByProgram: {},
        bufferDropsByReason: {},
        malformedRecords: 0n,
        eventsDelivered: 0n,
        bytesSent: 0n,
        oldestUnsentAgeMs: 0n,
      }),
    );
    await insertBatch(ch.client, { table: 'collector_stats', rows, dedupToken: 'collector_stats:t:0:0-4' });
    const got = await ch.rows(
      `SELECT prev_boot_id, boot_id, gap_start, gap_end, gap_ms FROM ${ch.database}.capture_gaps ORDER BY gap_start`,
    );
    const t = (sec: number) => `${sqlDateTime(new Date(BASE_MS + sec * 1000))}.000000000`;
    expect(got).toEqual([
      { prev_boot_id: 'boot-1', boot_id: 'boot-1', gap_start: t(20), gap_end: t(35), gap_ms: '15000' },
      { prev_boot_id: 'boot-1', boot_id: 'boot-2', gap_start: t(45), gap_end: t(60), gap_ms: '15000' },
    ]);
  });
});

describe('migration scripts (no engine needed)', () => {
  it('splits on semicolons outside strings and comments', () => {
    const sql = `-- a comment; not a split
CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;
/* block; comment */ ALTER TABLE a COMMENT 'it''s; fine';
SELECT "q;" FROM a`;
    expect(splitStatements(sql)).toEqual([
      "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory",
      "ALTER TABLE a COMMENT 'it''s; fine'",
      'SELECT "q;" FROM a',
    ]);
  });

  it('renders placeholders and refuses unknown ones', () => {
    expect(
      render('TTL t + INTERVAL {{ttl_raw_days}} DAY -- {{ database }}', { ttl_raw_days: 7, database: 'k' }),
    ).toBe('TTL t + INTERVAL 7 DAY -- k');
    expect(() => render('{{nope}}', {})).toThrow(/\{\{nope\}\} has no value/);
    expect(render('{{for t in a, b}}DROP {{db}}.{{ t }}_v;{{end}}', { db: 'k' })).toBe(
      'DROP k.a_v;DROP k.b_v;',
    );
  });

  it('every shipped migration renders with the default settings and has statements', () => {
    const vars = { database: 'k', ttl_raw_days: 14, ttl_rollup_days: 400, dedup_window: 1000 };
    const files = readMigrations();
    expect(files.filter((f) => !f.repeatable).map((f) => f.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const f of files) expect(splitStatements(render(f.text, vars)).length, f.name).toBeGreaterThan(0);
  });
});
