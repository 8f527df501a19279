// Capacity report for a time range: every capacity query as a table, plus charts, in one
// self-contained HTML page (inline SVG, no scripts, no network) — people would rather look
// than read. Per workload (queries.ts), with each workload's containers one level down.
// Also prints the tables to the terminal.
//
//   ./ktrail report [--from 24h|ISO] [--to now|ISO] [--out report.html]
//                   [--url http://127.0.0.1:8124/ | --chdb-path DIR] [--database ktrail]
// Default source: the running pipeline's query endpoint; --chdb-path reads a stopped store.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { HOST_WORKLOAD } from '../../processor/src/workload.js';
import {
  CAPACITY_QUERIES,
  type CapacityQuery,
  capacityQuerySql,
  clientRunner,
  httpRunner,
  type Row,
  type SqlRunner,
  sqlDateTime,
} from './queries.js';
import { barChart, esc, humanBytes, lineChart } from './report-charts.js';

export interface ReportOptions {
  from: Date;
  to: Date;
  database: string;
  /** Workloads in the charts and the time chart's lines (default 10, the palette's colours). */
  topN?: number;
  /** Most rows of the per-container detail (default 500). */
  detailLimit?: number;
}

export interface Report {
  html: string;
  sections: Record<CapacityQuery, Row[]>;
}

export async function buildReport(runner: SqlRunner, options: ReportOptions): Promise<Report> {
  const params = {
    from: sqlDateTime(options.from),
    to: sqlDateTime(options.to),
    limit: options.topN ?? 10,
    window_s: 600,
    detail_limit: options.detailLimit ?? 500,
  };
  const sections = {} as Record<CapacityQuery, Row[]>;
  for (const name of Object.keys(CAPACITY_QUERIES) as CapacityQuery[])
    sections[name] = await runner.rows(capacityQuerySql(name, options.database), params);
  return { html: renderHtml(sections, options), sections };
}

// ---- rendering -----------------------------------------------------------------------

const num = (v: unknown): number => {
  const n = v === null || v === undefined || v === '' ? 0 : Number(v);
  return Number.isFinite(n) ? n : 0;
};

function formatCell(key: string, v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (/limit/.test(key) && (v === 0 || v === '0')) return 'none';
  if (/bytes/.test(key) && v !== '' && !Number.isNaN(Number(v))) return humanBytes(Number(v));
  return esc(v);
}

function htmlTable(rows: Row[]): string {
  if (rows.length === 0) return '<p class="empty">no data in this range</p>';
  const keys = Object.keys(rows[0] as Row);
  const head = keys.map((k) => `<th>${esc(k)}</th>`).join('');
  const body = rows
    .map((r) => `<tr>${keys.map((k) => `<td>${formatCell(k, r[k])}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const MINUTE_MS = 60_000;
const HOST = HOST_WORKLOAD;

/**
 * cpu_timeseries rows -> one series per workload, in the order of their CPU (the query's top
 * list), every minute from the first to the last present: a minute without samples is 0
 * cores, not a straight line to the next sample.
 */
export function cpuSeries(rows: Row[]): Array<{ name: string; points: Array<[number, number]> }> {
  const byWorkload = new Map<string, Map<number, number>>();
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const r of rows) {
    const t = Date.parse(`${String(r.minute).replace(' ', 'T')}Z`);
    if (Number.isNaN(t)) continue;
    first = Math.min(first, t);
    last = Math.max(last, t);
    const name = String(r.workload);
    let points = byWorkload.get(name);
    if (points === undefined) {
      points = new Map();
      byWorkload.set(name, points);
    }
    points.set(t, num(r.cores));
  }
  const total = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return [...byWorkload]
    .sort((a, b) => total(b[1]) - total(a[1]))
    .map(([name, points]) => {
      const filled: Array<[number, number]> = [];
      for (let t = first; t <= last; t += MINUTE_MS) filled.push([t, points.get(t) ?? 0]);
      return { name, points: filled };
    });
}

/** workload_containers rows as one collapsed table per workload: the detail one level down. */
function drillDown(rows: Row[]): string {
  if (rows.length === 0) return '<p class="empty">no data in this range</p>';
  const byWorkload = new Map<string, Row[]>();
  for (const r of rows) {
    const list = byWorkload.get(String(r.workload)) ?? [];
    list.push(r);
    byWorkload.set(String(r.workload), list);
  }
  return [...byWorkload]
    .map(([workload, list]) => {
      const failed = list.reduce((a, r) => a + num(r.failed_exits), 0);
      const ooms = list.reduce((a, r) => a + num(r.oom_kills), 0);
      const cpu = list.reduce((a, r) => a + num(r.cpu_seconds), 0);
      const facts = [
        `${list.length} container${list.length === 1 ? '' : 's'}`,
        `${cpu.toFixed(1)} CPU-s`,
        ...(failed > 0 ? [`${failed} failed exits`] : []),
        ...(ooms > 0 ? [`${ooms} OOM kills`] : []),
      ].join(', ');
      const detail = list.map(({ workload: _, ...rest }) => rest);
      return `<details><summary><b>${esc(workload)}</b>: ${esc(facts)}</summary>${htmlTable(detail)}</details>`;
    })
    .join('\n');
}

function renderHtml(sections: Record<CapacityQuery, Row[]>, options: ReportOptions): string {
  const top = options.topN ?? 10;
  const cpu = sections.cpu_by_workload.slice(0, top);
  const mem = sections.memory_peaks.slice(0, top);
  // The host's processes exit non-zero all the time (grep, test, shells): its count is in the
  // table, and would flatten every container's bar in the chart.
  const failing = sections.oom_and_crashloops.filter(
    (r) => r.workload !== HOST && num(r.failed_exits) + num(r.oom_kills) > 0,
  );
  // The host in a chart of its own: on a busy node it would flatten every workload's line.
  const series = cpuSeries(sections.cpu_timeseries);
  const charts = [
    lineChart(
      'CPU cores per minute, busiest workloads (all containers of a workload together)',
      series.filter((s) => s.name !== HOST),
      'cores',
    ),
    lineChart(
      "CPU cores per minute, the host (the node's own processes)",
      series.filter((s) => s.name === HOST),
      'cores',
    ),
    barChart(
      'CPU per workload: p50, p95 and max cores of a container',
      cpu.map((r) => String(r.workload)),
      [
        { name: 'p50', values: cpu.map((r) => num(r.p50_cores)) },
        { name: 'p95', values: cpu.map((r) => num(r.p95_cores)) },
        { name: 'max', values: cpu.map((r) => num(r.max_cores)) },
      ],
      (n) => n.toFixed(2),
    ),
    barChart(
      'Memory per workload: peak and limit',
      mem.map((r) => String(r.workload)),
      [
        { name: 'peak', values: mem.map((r) => Math.max(num(r.max_bytes), num(r.kernel_peak_bytes))) },
        { name: 'limit', values: mem.map((r) => num(r.limit_bytes)) },
      ],
      (n) => (n > 0 ? humanBytes(n) : 'none'),
    ),
    barChart(
      'Failures per workload: failed exits and OOM kills (containers; the host is in the table)',
      failing.slice(0, top).map((r) => String(r.workload)),
      [
        { name: 'failed exits', values: failing.map((r) => num(r.failed_exits)) },
        { name: 'OOM kills', values: failing.map((r) => num(r.oom_kills)) },
      ],
      (n) => String(n),
    ),
  ].join('\n');
  const tables = (Object.keys(CAPACITY_QUERIES) as CapacityQuery[])
    .filter((name) => name !== 'cpu_timeseries')
    .map(
      (name) =>
        `<section><h2>${esc(CAPACITY_QUERIES[name])}</h2>${name === 'workload_containers' ? drillDown(sections[name]) : htmlTable(sections[name])}</section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ktrail capacity report</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{overflow-wrap:anywhere;vertical-align:bottom}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}svg text{font-size:11px}svg text.v{fill:#555}
details{margin:4px 0}summary{cursor:pointer}
.empty{color:#888}
</style></head><body>
<h1>ktrail capacity report</h1>
<p>${esc(options.from.toISOString())} — ${esc(options.to.toISOString())} · database <code>${esc(options.database)}</code> · generated ${esc(new Date().toISOString())}</p>
<p>Everything is per workload: a Kubernetes pod's owner (<code>namespace/name</code>), a Compose service (<code>project/service</code>), else the container's name; <code>host</code> is the node's own processes. The containers of each workload are listed at the end.</p>
${charts}
${tables}
</body></html>
`;
}

// ---- CLI -----------------------------------------------------------------------------

/** "24h", "30m", "7d" before now, or an ISO timestamp, or "now". */
export function parseTime(text: string, now = new Date()): Date {
  if (text === 'now') return now;
  const rel = /^(\d+)([smhd])$/.exec(text);
  if (rel) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(rel[1]) * unit);
  }
  const date = new Date(text);
  if (Number.isNaN(date.getTime()))
    throw new Error(`cannot parse time "${text}" (use 24h, 30m, 7d, now or ISO 8601)`);
  return date;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      from: { type: 'string', default: '24h' },
      to: { type: 'string', default: 'now' },
      out: { type: 'string', default: 'ktrail-report.html' },
      url: { type: 'string' },
      'chdb-path': { type: 'string' },
      database: { type: 'string', default: 'ktrail' },
    },
  });
  const options = { from: parseTime(values.from), to: parseTime(values.to), database: values.database };
  let close = async () => {};
  let runner: SqlRunner;
  if (values['chdb-path'] !== undefined) {
    const { createClickHouse } = await import('../../processor/src/clickhouse/client.js');
    const client = await createClickHouse({
      kind: 'chdb',
      path: values['chdb-path'],
      database: values.database,
    });
    runner = clientRunner(client);
    close = () => client.close();
  } else {
    const { loadConfig } = await import('../../common/config.js');
    const { queryEndpointAccess } = await import('../../processor/src/query-endpoint.js');
    const access = queryEndpointAccess(loadConfig());
    runner = httpRunner(values.url ?? access.url, access.token);
  }
  try {
    const report = await buildReport(runner, options);
    writeFileSync(values.out, report.html);
    for (const [name, rows] of Object.entries(report.sections)) {
      if (name === 'cpu_timeseries') continue;
      console.log(`\n${CAPACITY_QUERIES[name as CapacityQuery]}`);
      if (rows.length > 0) console.table(rows.slice(0, 20));
      else console.log('  (no data in this range)');
    }
    console.log(`\nreport written to ${values.out}`);
  } finally {
    await close();
  }
}

if (process.argv[1]?.endsWith('report.ts')) {
  main().catch((err: Error) => {
    console.error(`report failed: ${err.message}`);
    process.exit(1);
  });
}
