// Capacity queries and the report against the real migrated schema in a real chDB store,
// filled through the real insert path (materialized views build the rollups) with rows
// whose answers are known. The e2e test runs the same queries on data from real containers.
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
import { buildReport, parseTime } from '../../deploy/clickhouse/report.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { fixtureMs } from '../support/fixture-time.js';

const DB = 'capq';
const T0 = fixtureMs(2, 10); // 10:00 UTC two days ago: inside the raw TTL, whole hours
const ns = (ms: number) => BigInt(ms) * 1_000_000n;
const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '');
const GIB = 1024 ** 3;

let client: ClickHouseClient;
let token = 0;
const insert = (table: string, rows: object[]) =>
  insertBatch(client, { table: `${DB}.${table}`, rows, dedupToken: `${table}:test:0:${token++}` });

const base = (node: string, cgroupId: bigint, ms: number, name: string) => ({
  node,
  boot_id: 'boot-1',
  time: iso(ms),
  ts_ns: ns(ms),
  cgroup_id: cgroupId,
  pid: 0,
  tgid: 0,
  container_name: name,
  container_id: name === '' ? '' : `${name}-id`,
  image: name === '' ? '' : `img/${name}`,
  namespace: name === '' ? '' : 'shop',
  workload: name === '' ? '' : `${name}-deploy`,
  join_state: name === '' ? 'pending' : 'joined',
});

async function run(name: CapacityQuery, extra: Record<string, string | number> = {}): Promise<Row[]> {
  return clientRunner(client).rows(capacityQuerySql(name, DB), {
    from: sqlDateTime(new Date(T0 - 3600e3)),
    to: sqlDateTime(new Date(T0 + 3 * 3600e3)),
    limit: 10,
    window_s: 600,
    ...extra,
  });
}

describe('capacity queries on the real schema', () => {
  beforeAll(async () => {
    client = await createClickHouse({
      kind: 'chdb',
      path: mkdtempSync(join(tmpdir(), 'ktrail-capq-')),
      database: DB,
    });
    await migrate(client, { database: DB });

    // api: 10 samples of 10 s at 0.5 cores, then 2 at 2 cores: 90 CPU-seconds, p95 high, max 2;
    // batch: 12 samples at 0.1 cores, its name arrives only via the containers table (pending).
    const cpu: object[] = [];
    for (let i = 0; i < 12; i++) {
      const cores = i < 10 ? 0.5 : 2;
      cpu.push({
        ...base('n1', 101n, T0 + i * 10_000, 'api'),
        cpu_ns: BigInt(cores * 10e9),
        switches: 10n,
        interval_ns: 10_000_000_000n,
      });
      cpu.push({
        ...base('n1', 202n, T0 + i * 10_000, ''),
        cpu_ns: 1_000_000_000n,
        switches: 5n,
        interval_ns: 10_000_000_000n,
      });
    }
    await insert('cpu_sample', cpu);
    await insert('memory_sample', [
      {
        ...base('n1', 101n, T0, 'api'),
        current_bytes: GIB / 2,
        peak_bytes: GIB,
        limit_bytes: 2 * GIB,
        oom_events: 0n,
      },
      {
        ...base('n1', 202n, T0, ''),
        current_bytes: 100 * 2 ** 20,
        peak_bytes: 120 * 2 ** 20,
        limit_bytes: 0,
        oom_events: 1n,
      },
      // idle: memory samples, and no CPU sample in the range (its CPU quantiles are empty).
      {
        ...base('n1', 303n, T0, 'idle'),
        current_bytes: 10 * 2 ** 20,
        peak_bytes: 10 * 2 ** 20,
        limit_bytes: 0,
        oom_events: 0n,
      },
    ]);
    await insert('net_sample', [
      {
        ...base('n1', 101n, T0, 'api'),
        rx_bytes: 1000n,
        rx_packets: 10n,
        tx_bytes: 5_000_000n,
        tx_packets: 4000n,
        interval_ns: 10_000_000_000n,
      },
    ]);
    await insert('tcp_close', [
      {
        ...base('n1', 101n, T0, 'api'),
        family: 2,
        sport: 40000,
        dport: 5432,
        saddr: '10.0.0.1',
        daddr: '10.0.0.9',
        sock_cookie: 1n,
        bytes_sent: 4_000_000n,
        bytes_received: 100n,
        duration_ns: 1_000_000n,
        retransmits: 0,
        resets: 0,
      },
      {
        ...base('n1', 101n, T0 + 1000, 'api'),
        family: 2,
        sport: 40001,
        dport: 443,
        saddr: '10.0.0.1',
        daddr: '10.0.0.7',
        sock_cookie: 2n,
        bytes_sent: 10n,
        bytes_received: 100n,
        duration_ns: 1_000_000n,
        retransmits: 0,
        resets: 0,
      },
    ]);
    // three failed exits of "api" within 2 minutes (a crash loop) and one OOM kill of batch
    await insert(
      'proc_exit',
      [0, 40_000, 80_000].map((d, i) => ({
        ...base('n1', 101n, T0 + d, 'api'),
        pid: 10 + i,
        tgid: 10 + i,
        ppid: 1,
        exit_code: 1,
        signal: 0,
        core_dumped: 0,
        start_ns: ns(T0),
        cpu_ns: 1n,
        comm: 'api',
      })),
    );
    await insert('oom_kill', [
      {
        ...base('n1', 202n, T0 + 5000, ''),
        victim_pid: 77,
        victim_uid: 0,
        total_vm_kb: 1n,
        anon_rss_kb: 1n,
        file_rss_kb: 0n,
        shmem_rss_kb: 0n,
        comm: 'batch',
      },
    ]);
    const container = (cgroupId: bigint, name: string, extra: object) => ({
      node: 'n1',
      cgroup_id: cgroupId,
      cgroup_path: `/kubepods/${name}`,
      runtime: 'containerd',
      container_id: `${name}-id`,
      name,
      image: `img/${name}`,
      labels: {},
      pod_name: `${name}-pod`,
      namespace: 'shop',
      workload_kind: 'Deployment',
      workload_name: `${name}-deploy`,
      started_at_ns: ns(T0 - 60_000),
      updated_at_ns: ns(T0),
      state: 'running',
      ...extra,
    });
    await insert('containers', [
      container(101n, 'api', {
        cpu_request_millis: 250,
        cpu_limit_millis: 2000,
        memory_request_bytes: 4 * GIB,
        memory_limit_bytes: 8 * GIB,
      }),
      container(202n, 'batch', {}),
      container(303n, 'idle', {}),
    ]);
    // sequences 1,2,3,5,5: one missing (4), one duplicated (5)
    await insert(
      'event_batches',
      [1, 2, 3, 5, 5].map((s) => ({
        node: 'n1',
        boot_id: 'boot-1',
        sequence: s,
        time: iso(T0 + s * 1000),
        events: 10,
      })),
    );
    await insert('collector_stats', [
      {
        node: 'n1',
        boot_id: 'boot-1',
        collector_version: 't',
        first_sequence: 1,
        last_sequence: 5,
        interval_start_ns: ns(T0),
        interval_end_ns: ns(T0 + 10_000),
        events_by_kind: { cpu_sample: 24 },
        kernel_drops_by_program: { process: 3 },
        buffer_drops_by_reason: { buffer_full: 2 },
        malformed_records: 1,
        events_delivered: 50,
        bytes_sent: 1000,
        oldest_unsent_age_ms: 0,
        cpu_ns: 50_000_000,
        rss_bytes: 100_000_000,
        program_run_time_ns: { kt_cpu_switch: 15_000_000, kt_proc_exec: 5_000_000 },
        program_run_count: { kt_cpu_switch: 40_000, kt_proc_exec: 2_000 },
      },
      // A v1 collector's row (no cost columns) on another node: zeros, not a failed query.
      {
        node: 'n2',
        boot_id: 'boot-2',
        collector_version: 'old',
        interval_start_ns: ns(T0),
        interval_end_ns: ns(T0 + 10_000),
        events_by_kind: { cpu_sample: 10 },
      },
    ]);
  }, 120_000);

  afterAll(async () => {
    await client?.close();
  });

  it('CPU per container: seconds, p95 and max cores; pending rows named from containers', async () => {
    const rows = await run('cpu_by_container');
    const api = rows.find((r) => r.container === 'api');
    const batch = rows.find((r) => r.container === 'batch');
    expect(api).toMatchObject({ namespace: 'shop', workload: 'api-deploy', cpu_seconds: 90, max_cores: 2 });
    expect(Number(api?.p50_cores)).toBeCloseTo(0.5, 2);
    expect(Number(api?.p95_cores)).toBeGreaterThan(1);
    expect(batch).toMatchObject({ cpu_seconds: 12, max_cores: 0.1, namespace: 'shop' });
    const ns = await run('cpu_by_namespace');
    expect(ns.find((r) => r.workload === 'api-deploy')).toMatchObject({ containers: '1', cpu_seconds: 90 });
  });

  it('memory peaks with percent of limit and OOM events', async () => {
    const rows = await run('memory_peaks');
    expect(rows.find((r) => r.container === 'api')).toMatchObject({
      kernel_peak_bytes: String(GIB),
      peak_pct_of_limit: 50,
    });
    expect(rows.find((r) => r.container === 'batch')).toMatchObject({
      oom_events: '1',
      peak_pct_of_limit: null,
    });
  });

  it('network top talkers with the busiest destination', async () => {
    const [top] = await run('network_top_talkers');
    expect(top).toMatchObject({
      container: 'api',
      egress_bytes: '5000000',
      tcp_bytes_sent: '4000010',
      tcp_connections: '2',
      top_destination: '10.0.0.9:5432',
    });
  });

  it('OOM kills and crash loops', async () => {
    const rows = await run('oom_and_crashloops', { window_s: 120 });
    expect(rows.find((r) => r.container === 'api')).toMatchObject({
      failed_exits: '3',
      max_failures_in_window: '3',
      oom_kills: '0',
    });
    expect(rows.find((r) => r.container === 'batch')).toMatchObject({ oom_kills: '1' });
    const narrow = await run('oom_and_crashloops', { window_s: 30 });
    expect(narrow.find((r) => r.container === 'api')).toMatchObject({ max_failures_in_window: '1' });
  });

  it('right-sizing against requests and limits', async () => {
    const rows = await run('rightsizing');
    const api = rows.find((r) => r.container === 'api');
    expect(api).toMatchObject({
      cpu_request_millicores: '250',
      cpu_verdict: 'cpu under-requested',
      memory_verdict: 'memory over-requested',
    });
    expect(Number(api?.suggested_memory_request_bytes)).toBe(Math.ceil(GIB * 1.2));
    expect(rows.find((r) => r.container === 'batch')).toMatchObject({ cpu_verdict: 'no request' });
    // No CPU sample in the range: no CPU seen, not a failed query.
    expect(rows.find((r) => r.container === 'idle')).toMatchObject({
      p95_millicores: 0,
      suggested_cpu_request_millicores: '0',
    });
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

  it('monitoring cost per node: collector CPU, RSS and kernel time next to the workloads', async () => {
    const rows = await run('monitoring_cost');
    // n1: 10 s reported; 50 ms CPU = 0.005 cores; 20 ms of BPF programs = 2 ms/s; the
    // workloads: api 90 CPU-s over 120 s + batch 12 over 120 = 0.85 cores, 3 cgroups.
    expect(rows.find((r) => r.node === 'n1')).toMatchObject({
      reported_seconds: 10,
      events_per_s: 2.4,
      collector_cores: 0.005,
      collector_rss_max_bytes: '100000000',
      kernel_ns_per_s: 2_000_000,
      kernel_cores: 0.002,
      workload_cores: 0.85,
      workload_cgroups: '3',
      monitoring_pct_of_workload_cpu: 0.82,
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
    expect(report.sections.cpu_timeseries.length).toBeGreaterThan(0);
    expect(report.html).toMatch(/^<!doctype html>/);
    expect((report.html.match(/<svg /g) ?? []).length).toBe(3);
    for (const title of Object.values(CAPACITY_QUERIES).filter((t) => !t.startsWith('CPU cores per minute')))
      expect(report.html).toContain(title);
    expect(report.html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
    expect(parseTime('2h', new Date(T0)).getTime()).toBe(T0 - 7200e3);
  });
});
