// The capacity-analysis queries in deploy/clickhouse/queries/*.sql, and two ways to run them:
// through a ClickHouse client (chDB store or server), or through the running pipeline's
// ClickHouse-compatible query endpoint (chDB allows one process per store).
import { readFileSync } from 'node:fs';
import type { ClickHouseClient } from '@clickhouse/client';

export type Row = Record<string, unknown>;
export type QueryParams = Record<string, string | number>;

export interface SqlRunner {
  rows(sql: string, params?: QueryParams): Promise<Row[]>;
}

/**
 * The queries, in the order the report shows them: per workload first (what usage_resolved
 * and the *_resolved views name a workload, migration 0009: `host` for the node's own
 * processes), then the per-container detail under them.
 */
export const CAPACITY_QUERIES = {
  cpu_by_workload: 'CPU per workload (cores per container)',
  cpu_by_namespace: 'CPU per namespace',
  memory_peaks: 'Memory peaks per workload',
  network_top_talkers: 'Network egress top talkers',
  oom_and_crashloops: 'OOM kills and crash loops per workload',
  rightsizing: 'Right-sizing against requests and limits',
  completeness: 'Data completeness per node and hour',
  cpu_timeseries: 'CPU cores per minute, busiest workloads',
  workload_containers: 'Containers of each workload',
  monitoring_cost: 'Monitoring cost per node, next to the workloads',
} as const;
export type CapacityQuery = keyof typeof CAPACITY_QUERIES;

/**
 * What a new user asks a fresh node first, shown by `./ktrail up` and in the README: the
 * `_resolved` views, so a container that lived 100 ms is named even when its metadata came
 * late, by its workload (the Compose service, the pod's owner, the container name); the
 * host's own processes show as `host`.
 */
export const FIRST_QUESTIONS = [
  {
    question: 'busiest workloads by CPU, last hour',
    sql: 'SELECT workload, round(sum(cpu_ns) / 1e9, 1) AS cpu_seconds FROM ktrail.cpu_sample_resolved WHERE time > now() - INTERVAL 1 HOUR GROUP BY workload ORDER BY cpu_seconds DESC LIMIT 10',
  },
  {
    question: 'most execs, last hour',
    sql: 'SELECT workload, count() AS execs FROM ktrail.proc_exec_resolved WHERE time > now() - INTERVAL 1 HOUR GROUP BY workload ORDER BY execs DESC LIMIT 10',
  },
  {
    question: 'TCP peers, last hour',
    sql: 'SELECT workload, daddr AS peer, dport, count() AS connections FROM ktrail.tcp_connect_resolved WHERE time > now() - INTERVAL 1 HOUR GROUP BY workload, peer, dport ORDER BY connections DESC LIMIT 10',
  },
  {
    question: 'failed exits per workload and container, last hour',
    sql: 'SELECT workload, container_id, count() AS failed_exits FROM ktrail.proc_exit_resolved WHERE time > now() - INTERVAL 1 HOUR AND (exit_code != 0 OR signal != 0) GROUP BY workload, container_id ORDER BY workload, failed_exits DESC LIMIT 20',
  },
] as const;

/** The SQL of one query with the database filled in; parameters stay as {name:Type}. */
export function capacityQuerySql(name: CapacityQuery, database: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) throw new Error(`bad database name ${database}`);
  const sql = readFileSync(new URL(`./queries/${name}.sql`, import.meta.url), 'utf8');
  return sql.replaceAll('{{database}}', database).replace(/;\s*$/, '').trim();
}

/** ClickHouse DateTime parameter text for a Date (UTC, second precision). */
export function sqlDateTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

export function clientRunner(client: ClickHouseClient): SqlRunner {
  return {
    async rows(sql, params = {}) {
      const result = await client.query({ query: sql, format: 'JSONEachRow', query_params: params });
      return (await result.json()) as Row[];
    },
  };
}

/** Runs SQL through a ClickHouse HTTP endpoint (the pipeline's query endpoint or a server). */
export function httpRunner(baseUrl: string, token: string): SqlRunner {
  return {
    async rows(sql, params = {}) {
      const url = new URL(baseUrl);
      for (const [key, value] of Object.entries(params)) url.searchParams.set(`param_${key}`, String(value));
      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: `${sql}\nFORMAT JSONEachRow`,
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`query failed (${res.status}): ${text.trim()}`);
      return text
        .split('\n')
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line) as Row);
    },
  };
}
