// A node's hour with known answers, for the capacity queries and the report (real migrated
// schema in a real chDB store, through the real insert path: the materialized views build the
// rollups). Rows carry the identity columns as the processor writes them (workload.ts).
//
// Workloads, from T0 (a whole hour two days back), samples every 10 s for 10 minutes:
//   shop/api     a Deployment's pod container: 0.5 cores, the last 10 samples 2 cores (450 s)
//   shop/batch   a CronJob's container whose rows were written pending: named by containers only
//   shop/idle    memory samples only
//   store/db     a Compose service (project store): 0.35 cores (210 s)
//   web          a Docker container re-created 5 times (5 container ids), exit 3 each, one a minute
//   host         the root cgroup (join_state host, 0.25 cores) and a systemd service's cgroup
//                the collector never described (pending, 0.05 cores): 180 s together
import type { ClickHouseClient } from '@clickhouse/client';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { HOST_IDENTITY, type IdentityColumns, NO_IDENTITY } from '../../processor/src/workload.js';
import { fixtureMs, msToNs } from './fixture-time.js';

export const T0 = fixtureMs(2, 10);
export const GIB = 1024 ** 3;
const SAMPLES = 60;
const STEP_MS = 10_000;

export const CPU_SECONDS = { 'shop/api': 450, 'shop/batch': 60, 'store/db': 210, web: 40, host: 180 };

const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '');

interface Container {
  cgroupId: bigint;
  /** The identity columns of its rows as the processor joined them; pending rows get none. */
  identity: IdentityColumns;
  pending?: boolean;
  /** What its containers-table rows say (the processor writes one per record). */
  record?: Record<string, unknown>;
}

function k8s(cgroupId: bigint, name: string, kind: string, extra: object = {}): Container {
  const identity: IdentityColumns = {
    ...NO_IDENTITY,
    container_id: `${name}-id`,
    container_name: name,
    image: `img/${name}`,
    container_runtime: 'containerd',
    pod: `${name}-7d9c-x`,
    pod_uid: `uid-${name}`,
    namespace: 'shop',
    k8s_container_name: name,
    workload_kind: kind,
    workload_name: name,
    containerd_namespace: 'k8s.io',
    workload: `shop/${name}`,
  };
  return {
    cgroupId,
    identity,
    record: {
      cgroup_path: `/kubepods/pod-${name}/${name}-id`,
      runtime: 'containerd',
      runtime_namespace: 'k8s.io',
      container_id: identity.container_id,
      name,
      image: identity.image,
      labels: { 'io.kubernetes.container.name': name },
      pod_uid: identity.pod_uid,
      pod_name: identity.pod,
      namespace: 'shop',
      k8s_container_name: name,
      workload_kind: kind,
      workload_name: name,
      containerd_namespace: 'k8s.io',
      workload: identity.workload,
      ...extra,
    },
  };
}

function docker(cgroupId: bigint, id: string, name: string, compose?: [string, string]): Container {
  const identity: IdentityColumns = {
    ...NO_IDENTITY,
    container_id: id,
    container_name: name,
    image: 'busybox',
    container_runtime: 'docker',
    compose_project: compose?.[0] ?? '',
    compose_service: compose?.[1] ?? '',
    workload: compose ? `${compose[0]}/${compose[1]}` : name,
  };
  const record = {
    cgroup_path: `/docker/${id}`,
    runtime: 'docker',
    container_id: id,
    name,
    image: 'busybox',
    labels: compose
      ? { 'com.docker.compose.project': compose[0], 'com.docker.compose.service': compose[1] }
      : {},
    compose_project: identity.compose_project,
    compose_service: identity.compose_service,
    workload: identity.workload,
  };
  return { cgroupId, identity, record };
}

export const API = k8s(101n, 'api', 'Deployment', {
  cpu_request_millis: 250,
  cpu_limit_millis: 2000,
  memory_request_bytes: 4 * GIB,
  memory_limit_bytes: 8 * GIB,
});
export const BATCH = { ...k8s(202n, 'batch', 'CronJob'), pending: true };
export const IDLE = k8s(303n, 'idle', 'Deployment');
export const DB = docker(601n, 'db-id', 'store-db-1', ['store', 'db']);
/** The same name five times: five cgroups and container ids. */
export const WEB = [1, 2, 3, 4, 5].map((i) => docker(BigInt(500 + i), `web-id-${i}`, 'web'));
const ROOT: Container = { cgroupId: 1n, identity: { ...HOST_IDENTITY } };
/** A host cgroup no record describes: its rows stay pending. */
const SERVICE: Container = { cgroupId: 404n, identity: { ...NO_IDENTITY }, pending: true };

export type Insert = (table: string, rows: object[]) => Promise<void>;

/** An insert helper for a store: every insert under a token of its own. */
export function inserter(client: ClickHouseClient, database: string): Insert {
  let token = 0;
  return (table, rows) =>
    insertBatch(client, {
      table: `${database}.${table}`,
      rows,
      dedupToken: `${table}:test:0:${token++}`,
    }).then(() => undefined);
}

function row(c: Container, ms: number): Record<string, unknown> {
  const joinState = c === ROOT ? 'host' : c.pending ? 'pending' : 'joined';
  return {
    node: 'n1',
    boot_id: 'boot-1',
    time: iso(ms),
    ts_ns: msToNs(ms),
    cgroup_id: c.cgroupId,
    pid: 0,
    tgid: 0,
    ...(c.pending ? NO_IDENTITY : c.identity),
    join_state: joinState,
  };
}

const cpu = (c: Container, ms: number, cores: number) => ({
  ...row(c, ms),
  cpu_ns: BigInt(Math.round(cores * STEP_MS * 1e6)),
  switches: 10n,
  interval_ns: BigInt(STEP_MS * 1e6),
});

export async function fillCapacityStore(insert: Insert): Promise<void> {
  const samples: object[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const ms = T0 + i * STEP_MS;
    samples.push(cpu(API, ms, i < SAMPLES - 10 ? 0.5 : 2));
    samples.push(cpu(BATCH, ms, 0.1));
    samples.push(cpu(DB, ms, 0.35));
    samples.push(cpu(ROOT, ms, 0.25));
    samples.push(cpu(SERVICE, ms, 0.05));
  }
  // Each web container lives in its own minute: one 10 s sample at 0.8 cores, then exit 3.
  for (const [i, c] of WEB.entries()) samples.push(cpu(c, T0 + (i + 1) * 60_000, 0.8));
  await insert('cpu_sample', samples);

  const memory = (c: Container, current: number, peak: number, limit: number, ooms = 0n) => ({
    ...row(c, T0),
    current_bytes: current,
    peak_bytes: peak,
    limit_bytes: limit,
    oom_events: ooms,
  });
  await insert('memory_sample', [
    memory(API, GIB / 2, GIB, 2 * GIB),
    memory(BATCH, 100 * 2 ** 20, 120 * 2 ** 20, 0, 1n),
    memory(IDLE, 10 * 2 ** 20, 10 * 2 ** 20, 0),
  ]);
  await insert('net_sample', [
    {
      ...row(API, T0),
      rx_bytes: 1000n,
      rx_packets: 10n,
      tx_bytes: 5_000_000n,
      tx_packets: 4000n,
      interval_ns: 10n ** 10n,
    },
  ]);
  const tcp = (ms: number, sport: number, dport: number, daddr: string, sent: bigint, cookie: bigint) => ({
    ...row(API, ms),
    family: 2,
    sport,
    dport,
    saddr: '10.0.0.1',
    daddr,
    sock_cookie: cookie,
    bytes_sent: sent,
    bytes_received: 100n,
    duration_ns: 1_000_000n,
    retransmits: 0,
    resets: 0,
  });
  await insert('tcp_close', [
    tcp(T0, 40000, 5432, '10.0.0.9', 4_000_000n, 1n),
    tcp(T0 + 1000, 40001, 443, '10.0.0.7', 10n, 2n),
  ]);

  // Three failed exits of api within 2 minutes, and web's five re-created containers' exits.
  const exit = (c: Container, ms: number, pid: number, code: number) => ({
    ...row(c, ms),
    pid,
    tgid: pid,
    ppid: 1,
    exit_code: code,
    signal: 0,
    core_dumped: 0,
    start_ns: msToNs(T0),
    cpu_ns: 1n,
    comm: String(c.identity.container_name || 'sh'),
  });
  await insert('proc_exit', [
    ...[0, 40_000, 80_000].map((d, i) => exit(API, T0 + d, 10 + i, 1)),
    ...WEB.map((c, i) => exit(c, T0 + (i + 1) * 60_000 + 5_000, 20 + i, 3)),
    exit(ROOT, T0 + 5000, 30, 0),
  ]);
  await insert('oom_kill', [
    {
      ...row(BATCH, T0 + 5000),
      victim_pid: 77,
      victim_uid: 0,
      total_vm_kb: 1n,
      anon_rss_kb: 1n,
      file_rss_kb: 0n,
      shmem_rss_kb: 0n,
      comm: 'batch',
    },
  ]);
  await insert(
    'containers',
    [API, BATCH, IDLE, DB, ...WEB].map((c) => ({
      node: 'n1',
      cgroup_id: c.cgroupId,
      labels: {},
      started_at_ns: msToNs(T0 - 60_000),
      updated_at_ns: msToNs(T0),
      state: 'RUNNING',
      ...c.record,
    })),
  );
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
      interval_start_ns: msToNs(T0),
      interval_end_ns: msToNs(T0 + 10_000),
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
      interval_start_ns: msToNs(T0),
      interval_end_ns: msToNs(T0 + 10_000),
      events_by_kind: { cpu_sample: 10 },
    },
  ]);
}
