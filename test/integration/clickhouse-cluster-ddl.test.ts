// The cluster variant of the migrations (processor/src/clickhouse/cluster-ddl.ts), checked by
// the engine itself: no ClickHouse server that runs clusters exists here, so every statement
// goes through chDB's own parser (formatQuery), and the layout is then built on chDB with
// the cluster-only parts swapped for single-node equivalents (Replicated* -> the plain engine,
// Distributed -> Merge over the local table) to prove every object resolves and the data
// path works: rows in the local tables show up through the query-side tables and views.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { localDatabase } from '../../processor/src/clickhouse/cluster-ddl.js';
import { bootstrapStatements, planMigrations } from '../../processor/src/clickhouse/migrate.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { fixtureMs, msToNs } from '../support/fixture-time.js';
import { itReal } from '../support/real.js';

const CLUSTER = 'ktrail_cluster';

function sqlString(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The cluster statements with what needs a cluster swapped for what one chDB can run. */
function singleNodeEquivalent(statement: string): string {
  return statement
    .replace(/ ON CLUSTER '[^']*'/g, '')
    .replace(/ENGINE = Replicated(\w*MergeTree)(\('[^']*', '[^']*'\))?/g, 'ENGINE = $1')
    .replace(
      /ENGINE = Distributed\('[^']*', (\w+), (\w+), .*\)$/s,
      (_m, db: string, table: string) => `ENGINE = Merge(${db}, '^${table}$')`,
    )
    .replace(/\breplicated_deduplication_window\b/g, 'non_replicated_deduplication_window');
}

describe('ClickHouse cluster DDL', () => {
  let ch: TestChdb;
  beforeEach(async () => {
    ch = await createTestChdb('cluster');
  });
  afterEach(async () => {
    await ch?.client.command({ query: `DROP DATABASE IF EXISTS ${localDatabase(ch.database)} SYNC` });
    await ch?.close();
  });

  const allStatements = (database: string) => [
    ...bootstrapStatements(database, CLUSTER),
    ...planMigrations({ database, cluster: CLUSTER }).flatMap((m) => m.statements),
  ];

  itReal(undefined)('every cluster statement is valid SQL to the engine parser', async () => {
    const statements = allStatements(ch.database);
    for (const statement of statements) {
      const [row] = await ch.rows<{ f: string }>(`SELECT formatQuery(${sqlString(statement)}) AS f`);
      expect(row?.f, statement.slice(0, 120)).toMatch(/^(CREATE|ALTER|DROP|INSERT)/);
    }
    // A broken statement is refused by the same check (the check can fail).
    await expect(ch.rows(`SELECT formatQuery(${sqlString('CREATE TABLE t (a) ENGIN = x')})`)).rejects.toThrow(
      /Syntax error/,
    );
  });

  it('puts every table on the cluster, replicated, behind a Distributed table', () => {
    const db = 'ktrail';
    const local = localDatabase(db);
    const single = planMigrations({ database: db }).flatMap((m) => m.statements);
    const cluster = allStatements(db);
    for (const s of cluster.filter((s) => /^(CREATE|ALTER|DROP)/.test(s))) {
      expect(s, s.slice(0, 100)).toMatch(/ON CLUSTER 'ktrail_cluster'/);
    }
    expect(cluster.join('\n')).not.toMatch(/ENGINE = (Replacing|Aggregating)?MergeTree\b/);
    expect(cluster.join('\n')).not.toMatch(/non_replicated_deduplication_window/);
    const created = single.flatMap((s) => /^CREATE TABLE IF NOT EXISTS ktrail\.(\w+)/.exec(s)?.[1] ?? []);
    expect(created.length).toBeGreaterThan(15);
    for (const table of created) {
      expect(
        cluster.some((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS ${local}.${table} ON CLUSTER`)),
      ).toBe(true);
      const dist = cluster.find((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS ${db}.${table} ON CLUSTER`));
      expect(dist, table).toMatch(
        new RegExp(`ENGINE = Distributed\\('ktrail_cluster', ${local}, ${table}, `),
      );
      expect(dist, table).not.toMatch(/rand\(\)/);
    }
    // Materialized views insert where the rows land: local source, local target.
    for (const mv of cluster.filter((s) => s.startsWith('CREATE MATERIALIZED VIEW'))) {
      expect(mv).toMatch(new RegExp(`^CREATE MATERIALIZED VIEW IF NOT EXISTS ${local}\\.`));
      expect(mv).not.toMatch(new RegExp(`\\b${db}\\.`));
    }
  });

  itReal(undefined)('builds on one engine and the data path works through the query side', async () => {
    const db = ch.database;
    const local = localDatabase(db);
    for (const statement of allStatements(db)) {
      // 0005's data moves from the 0003 tables: a no-op on a fresh cluster, and Merge is read-only.
      if (statement.startsWith('INSERT')) continue;
      await ch.client.command({ query: singleNodeEquivalent(statement) });
    }
    const t = msToNs(fixtureMs(1, 10));
    const common = { node: 'node-a', boot_id: 'b', time: t, ts_ns: 1n, cgroup_id: 77n };
    await ch.client.insert({
      table: `${local}.containers`,
      values: [
        {
          node: 'node-a',
          cgroup_id: '77',
          cgroup_path: '/x',
          runtime: 'docker',
          container_id: 'c1',
          name: 'web',
          image: 'nginx',
          labels: {},
          updated_at_ns: String(t),
          state: 'RUNNING',
        },
      ],
      format: 'JSONEachRow',
    });
    await ch.client.insert({
      table: `${local}.proc_exec`,
      values: [{ ...common, time: String(t), ts_ns: '1', cgroup_id: '77', pid: 1, tgid: 1, comm: 'sh' }],
      format: 'JSONEachRow',
    });
    await ch.client.insert({
      table: `${local}.cpu_sample`,
      values: [{ ...common, time: String(t), ts_ns: '1', cgroup_id: '77', pid: 0, tgid: 0, cpu_ns: '5000' }],
      format: 'JSONEachRow',
    });
    const [resolved] = await ch.rows<{ container_name: string; image: string }>(
      `SELECT container_name, image FROM ${db}.proc_exec_resolved`,
    );
    expect(resolved).toEqual({ container_name: 'web', image: 'nginx' });
    const [usage] = await ch.rows<{ n: string }>(
      `SELECT count() AS n FROM ${db}.usage_1m WHERE cgroup_id = 77`,
    );
    expect(Number(usage?.n)).toBe(1);
  });
});
