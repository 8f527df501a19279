// Migration 0009 (workload identity) on a store 0001-0008 built and filled: the new columns
// exist with '' in the rows written before, and the resolved views and usage_resolved name
// every row by its workload, old and new: its own, its container's once the record arrives, the
// container name for rows of before, and `host` for the host and for a cgroup no record
// describes. Real chDB engine, real insert path.
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect } from 'vitest';
import { MIGRATIONS_DIR, migrate } from '../../processor/src/clickhouse/migrate.js';
import { insertBatch } from '../../processor/src/clickhouse/writer.js';
import { IDENTITY_COLUMNS } from '../../processor/src/workload.js';
import { createTestChdb, type TestChdb } from '../support/clickhouse.js';
import { fixtureMs, msToNs } from '../support/fixture-time.js';
import { itReal } from '../support/real.js';

const NODE = 'node-a';
const BASE_NS = msToNs(fixtureMs(1, 10));

/** A CPU sample of a cgroup, one second after BASE per `i`. */
function sample(cgroupId: bigint, i: number, columns: Record<string, string>) {
  const time = BASE_NS + BigInt(i) * 1_000_000_000n;
  return {
    node: NODE,
    boot_id: 'boot-1',
    time,
    ts_ns: time - BASE_NS + 1n,
    cgroup_id: cgroupId,
    pid: 0,
    tgid: 0,
    cpu_ns: 100_000_000n,
    switches: 1n,
    interval_ns: 1_000_000_000n,
    ...columns,
  };
}

describe('migration 0009: workload identity on a store that has rows', () => {
  let ch: TestChdb;
  beforeEach(async () => {
    ch = await createTestChdb('wlmig');
  });
  afterEach(async () => {
    await ch?.close();
  });

  itReal(undefined)('old rows get empty columns, and every row is named by its workload', async () => {
    const db = ch.database;
    const old = mkdtempSync(join(tmpdir(), 'ktrail-migrations-'));
    cpSync(MIGRATIONS_DIR, old, { recursive: true });
    for (const file of readdirSync(old)) if (file.startsWith('R_') || file >= '0009') rmSync(join(old, file));
    await migrate(ch.client, { dir: old });
    // As 0001-0008 wrote them: a joined Docker container (workload was the Kubernetes owner
    // only, '' here), a pending container, a pending cgroup no record will describe (a
    // systemd service), and the root cgroup (host).
    await insertBatch(ch.client, {
      table: 'cpu_sample',
      rows: [
        sample(11n, 0, { container_id: 'w1', container_name: 'web', image: 'busybox', join_state: 'joined' }),
        sample(22n, 0, { join_state: 'pending' }),
        sample(33n, 0, { join_state: 'pending' }),
        sample(1n, 0, { join_state: 'host' }),
      ],
      dedupToken: 'cpu_sample:t:0:0-0',
    });

    const upgrade = await migrate(ch.client);
    expect(upgrade.applied[0]).toBe('0009_workload_identity.sql');
    const [before] = await ch.rows<Record<string, string>>(
      `SELECT ${IDENTITY_COLUMNS.join(', ')} FROM ${db}.cpu_sample WHERE cgroup_id = 11`,
    );
    expect(before).toEqual({
      ...Object.fromEntries(IDENTITY_COLUMNS.map((c) => [c, ''])),
      container_id: 'w1',
      container_name: 'web',
      image: 'busybox',
    });

    // After: the pending container's record, and a row of a pod's container as the processor
    // writes it now.
    await insertBatch(ch.client, {
      table: 'containers',
      rows: [
        {
          node: NODE,
          cgroup_id: 22n,
          cgroup_path: '/kubepods/pod-u2/c2',
          runtime: 'containerd',
          runtime_namespace: 'k8s.io',
          container_id: 'c2',
          name: 'api',
          image: 'img/api',
          labels: {},
          pod_uid: 'u2',
          pod_name: 'api-7d9c-x',
          namespace: 'shop',
          k8s_container_name: 'api',
          workload_kind: 'Deployment',
          workload_name: 'api',
          containerd_namespace: 'k8s.io',
          workload: 'shop/api',
          updated_at_ns: BASE_NS,
          state: 'RUNNING',
        },
      ],
      dedupToken: 'containers:t:0:0-0',
    });
    await insertBatch(ch.client, {
      table: 'cpu_sample',
      rows: [
        sample(44n, 1, {
          container_id: 'd4',
          container_name: 'store-db-1',
          image: 'postgres',
          container_runtime: 'docker',
          compose_project: 'store',
          compose_service: 'db',
          workload: 'store/db',
          join_state: 'joined',
        }),
        sample(1n, 1, { workload: 'host', join_state: 'host' }),
      ],
      dedupToken: 'cpu_sample:t:0:1-1',
    });

    const resolved = await ch.rows<Record<string, string>>(
      `SELECT cgroup_id, workload, container_runtime, pod_uid, k8s_container_name, workload_kind, containerd_namespace,
         compose_service, join_state
       FROM ${db}.cpu_sample_resolved ORDER BY cgroup_id, time`,
    );
    const pick = (cg: number) => resolved.filter((r) => Number(r.cgroup_id) === cg).map((r) => r.workload);
    expect(pick(11)).toEqual(['web']);
    expect(pick(33)).toEqual(['host']);
    expect(pick(1)).toEqual(['host', 'host']);
    expect(pick(44)).toEqual(['store/db']);
    expect(resolved.find((r) => r.cgroup_id === '44')).toMatchObject({ compose_service: 'db' });
    expect(resolved.find((r) => r.cgroup_id === '22')).toMatchObject({
      workload: 'shop/api',
      container_runtime: 'containerd',
      pod_uid: 'u2',
      k8s_container_name: 'api',
      workload_kind: 'Deployment',
      containerd_namespace: 'k8s.io',
      join_state: 'joined',
    });

    // The rollup, named the same way: what the capacity queries group by.
    const usage = await ch.rows<{ workload: string; cpu: string; cgroups: string }>(
      `SELECT workload, sum(cpu_ns) AS cpu, uniqExact(cgroup_id) AS cgroups FROM ${db}.usage_resolved
       WHERE resolution = 60 GROUP BY workload ORDER BY workload`,
    );
    expect(usage).toEqual([
      { workload: 'host', cpu: '300000000', cgroups: '2' },
      { workload: 'shop/api', cpu: '100000000', cgroups: '1' },
      { workload: 'store/db', cpu: '100000000', cgroups: '1' },
      { workload: 'web', cpu: '100000000', cgroups: '1' },
    ]);
  });
});
