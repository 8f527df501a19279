// Capacity queries and the report against the real migrated schema in a real chDB store,
// filled through the real insert path (materialized views build the rollups) with rows
// whose answers are known (test/support/capacity-data.ts). Everything is per workload: the
// host is `host`, a container re-created five times is one workload with five containers.
// The e2e test runs the same queries on data from real containers.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CAPACITY_QUERIES,
  type CapacityQuery,
  capacityQuerySql,
  clientRunner,
  type Row,
  sqlDateTime,
} from '../../deploy/clickhouse/queries.js';
import { buildReport, cpuSeries, parseTime } from '../../deploy/clickhouse/report.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { CPU_SECONDS, fillCapacityStore, GIB, inserter, T0, WEB } from '../support/capacity-data.js';

const DB = 'capq';
let client: ClickHouseClient;

async function run(name: CapacityQuery, extra: Record<string, string | number> = {}): Promise<Row[]> {
  return clientRunner(client).rows(capacityQuerySql(name, DB), {
    from: sqlDateTime(new Date(T0 - 3600e3)),
    to: sqlDateTime(new Date(T0 + 3 * 3600e3)),
    limit: 10,
    window_s: 600,
    detail_limit: 500,
    ...extra,
  });
}

const byWorkload = (rows: Row[]) => new Map(rows.map((r) => [String(r.workload), r]));

describe('capacity queries on the real schema', () => {
  beforeAll(async () => {
    client = await createClickHouse({
      kind: 'chdb',
      path: mkdtempSync(join(tmpdir(), 'ktrail-capq-')),
      database: DB,
    });
    await migrate(client, { database: DB });
    await fillCapacityStore(inserter(client, DB));
  }, 120_000);

  afterAll(async () => {
    await client?.close();
  });

  it('CPU per workload: the host as host, pending rows named from containers, one row per workload', async () => {
    const rows = await run('cpu_by_workload');
    const w = byWorkload(rows);
    expect([...w.keys()].sort()).toEqual(Object.keys(CPU_SECONDS).sort());
    for (const [name, seconds] of Object.entries(CPU_SECONDS))
      expect(Number(w.get(name)?.cpu_seconds), name).toBeCloseTo(seconds, 3);
    expect(w.get('shop/api')).toMatchObject({ namespace: 'shop', containers: '1', max_cores: 2 });
    expect(Number(w.get('shop/api')?.p50_cores)).toBeCloseTo(0.5, 2);
    expect(Number(w.get('shop/api')?.p95_cores)).toBeGreaterThan(1);
    // The root cgroup and a service cgroup no record describes: both the host, no container.
    expect(w.get('host')).toMatchObject({ containers: '0' });
    expect(w.get('web')).toMatchObject({ containers: '5', max_cores: 0.8 });
    expect(rows.map((r) => r.workload)).not.toContain('1');

    const ns = byWorkload((await run('cpu_by_namespace')).map((r) => ({ ...r, workload: r.namespace })));
    expect(ns.get('shop')).toMatchObject({ workloads: '2', containers: '2', cpu_seconds: 510 });
  });

  it('memory peaks per workload with percent of limit and OOM events', async () => {
    const w = byWorkload(await run('memory_peaks'));
    expect(w.get('shop/api')).toMatchObject({ kernel_peak_bytes: String(GIB), peak_pct_of_limit: 50 });
    expect(w.get('shop/batch')).toMatchObject({ oom_events: '1', peak_pct_of_limit: null });
  });

  it('network top talkers per workload with the busiest destination', async () => {
    const [top] = await run('network_top_talkers');
    expect(top).toMatchObject({
      workload: 'shop/api',
      egress_bytes: '5000000',
      tcp_bytes_sent: '4000010',
      tcp_connections: '2',
      top_destination: '10.0.0.9:5432',
    });
  });

  it('a container re-created five times is one workload row with five failures', async () => {
    const rows = await run('oom_and_crashloops', { window_s: 600 });
    const web = rows.filter((r) => r.workload === 'web');
    expect(web).toHaveLength(1);
    expect(web[0]).toMatchObject({ failed_exits: '5', containers: '5', max_failures_in_window: '5' });
    const w = byWorkload(rows);
    expect(w.get('shop/api')).toMatchObject({
      failed_exits: '3',
      max_failures_in_window: '3',
      oom_kills: '0',
    });
    expect(w.get('shop/batch')).toMatchObject({ oom_kills: '1' });
    expect(w.has('host')).toBe(false); // its exit was 0
    const narrow = byWorkload(await run('oom_and_crashloops', { window_s: 30 }));
    expect(narrow.get('shop/api')).toMatchObject({ max_failures_in_window: '1' });
    expect(narrow.get('web')).toMatchObject({ max_failures_in_window: '1' });
  });

  it('one level down: the workload containers, one row per container id', async () => {
    const rows = await run('workload_containers');
    const web = rows.filter((r) => r.workload === 'web');
    expect(web.map((r) => r.container_id)).toEqual(WEB.map((c) => c.identity.container_id));
    for (const r of web) expect(r).toMatchObject({ container: 'web', failed_exits: '1', cpu_seconds: 8 });
    const host = rows.filter((r) => r.workload === 'host').map((r) => r.container);
    expect(host.sort()).toEqual(['cgroup 1', 'cgroup 404']);
    expect(rows.find((r) => r.workload === 'store/db')).toMatchObject({ container: 'store-db-1' });
  });

  it('right-sizing per workload container against requests and limits', async () => {
    const rows = await run('rightsizing');
    const api = rows.find((r) => r.workload === 'shop/api');
    expect(api).toMatchObject({
      container: 'api',
      cpu_request_millicores: '250',
      cpu_verdict: 'cpu under-requested',
      memory_verdict: 'memory over-requested',
    });
    expect(Number(api?.suggested_memory_request_bytes)).toBe(Math.ceil(GIB * 1.2));
    expect(rows.find((r) => r.workload === 'shop/batch')).toMatchObject({ cpu_verdict: 'no request' });
    expect(rows.find((r) => r.workload === 'web')).toMatchObject({ container: 'web', containers: '5' });
    // No CPU sample in the range: no CPU seen, not a failed query.
    expect(rows.find((r) => r.workload === 'shop/idle')).toMatchObject({
      p95_millicores: 0,
      suggested_cpu_request_millicores: '0',
    });
    expect(rows.some((r) => r.workload === 'host')).toBe(false);
  });

  it('completeness per node and hour counts gaps, duplicates and collector drops', async () => {
    const [hour] = await run('completeness');
    expect(hour).toMatchObject({
      node: 'n1',
      batches_received: '4',
      batches_missing: '1',
      batches_duplicated: '1',
      kernel_drops: '3',
      buffer_drops: '2',
      malformed_records: '1',
      complete_pct: 80,
    });
  });

  it('CPU per minute: one series per busy workload, every minute, busiest first', async () => {
    const series = cpuSeries(await run('cpu_timeseries'));
    expect(series.map((s) => s.name)).toEqual(['shop/api', 'store/db', 'host', 'shop/batch', 'web']);
    for (const s of series) expect(s.points).toHaveLength(10); // 10 minutes, zero where idle
    const web = series.find((s) => s.name === 'web')?.points.map((p) => p[1]);
    // 8 CPU-seconds in each of minutes 1..5, none in minute 0 or after 5.
    expect(web?.map((c) => Math.round(c * 60))).toEqual([0, 8, 8, 8, 8, 8, 0, 0, 0, 0]);
  });

  it('monitoring cost per node: collector CPU, RSS and kernel time next to the workloads', async () => {
    const rows = await run('monitoring_cost');
    // n1: 10 s reported; 50 ms CPU = 0.005 cores; 20 ms of BPF programs = 2 ms/s; the
    // workloads (host cgroups left out): api 0.75 + batch 0.1 + db 0.35 + five web containers at
    // 0.8 each = 5.2 cores in 9 cgroups (idle has memory only); (0.005 + 0.002) / 5.2 = 0.13%.
    expect(rows.find((r) => r.node === 'n1')).toMatchObject({
      reported_seconds: 10,
      events_per_s: 2.4,
      collector_cores: 0.005,
      collector_rss_max_bytes: '100000000',
      kernel_ns_per_s: 2_000_000,
      kernel_cores: 0.002,
      workload_cores: 5.2,
      workload_cgroups: '9',
      monitoring_pct_of_workload_cpu: 0.13,
    });
    expect(rows.find((r) => r.node === 'n2')).toMatchObject({
      collector_cores: 0,
      kernel_ns_per_s: 0,
      workload_cores: 0,
      monitoring_pct_of_workload_cpu: null,
    });
  });

  it('renders a self-contained HTML report with charts and every table', async () => {
    const report = await buildReport(clientRunner(client), {
      from: new Date(T0 - 3600e3),
      to: new Date(T0 + 3 * 3600e3),
      database: DB,
    });
    expect(report.html).toMatch(/^<!doctype html>/);
    expect((report.html.match(/<svg /g) ?? []).length).toBe(5);
    for (const title of Object.values(CAPACITY_QUERIES).filter((t) => !t.startsWith('CPU cores per minute')))
      expect(report.html).toContain(title);
    expect(report.html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
    expect(report.html).not.toMatch(/NaN|undefined/);
    expect(report.html).toContain('<summary><b>web</b>: 5 containers');
    expect(parseTime('2h', new Date(T0)).getTime()).toBe(T0 - 7200e3);
  });
});
