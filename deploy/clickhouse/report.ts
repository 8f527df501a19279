// Capacity report for a time range: every capacity query as a table, plus charts, in one
// self-contained HTML page (inline SVG, no scripts, no network) — people would rather look
// than read. Also prints the tables to the terminal.
//
//   ./ktrail report [--from 24h|ISO] [--to now|ISO] [--out report.html]
//                   [--url http://127.0.0.1:8124/ | --chdb-path DIR] [--database ktrail]
// Default source: the running pipeline's query endpoint; --chdb-path reads a stopped store.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
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

export interface ReportOptions {
  from: Date;
  to: Date;
  database: string;
  topN?: number;
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
  };
  const sections = {} as Record<CapacityQuery, Row[]>;
  for (const name of Object.keys(CAPACITY_QUERIES) as CapacityQuery[])
    sections[name] = await runner.rows(capacityQuerySql(name, options.database), params);
  return { html: renderHtml(sections, options), sections };
}

// ---- rendering -----------------------------------------------------------------------

const esc = (v: unknown): string =>
  String(v ?? '').replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string,
  );
const num = (v: unknown): number => (v === null || v === undefined || v === '' ? 0 : Number(v));
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'];

function formatCell(key: string, v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (/bytes/.test(key) && v !== '' && !Number.isNaN(Number(v))) return humanBytes(Number(v));
  return esc(v);
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
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

/** Horizontal grouped bars: one row per label, one bar per series. */
export function barChart(
  title: string,
  labels: string[],
  series: Array<{ name: string; values: number[] }>,
  unit: (n: number) => string,
): string {
  if (labels.length === 0) return '';
  const rowH = 14 * series.length + 10;
  const left = 180;
  const width = 720;
  const height = labels.length * rowH + 40;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const scale = (v: number) => ((width - left - 80) * v) / max;
  const bars = labels
    .map((label, i) => {
      const y = 30 + i * rowH;
      const group = series
        .map((s, j) => {
          const v = s.values[i] ?? 0;
          return `<rect x="${left}" y="${y + j * 14}" width="${scale(v).toFixed(1)}" height="12" fill="${PALETTE[j % PALETTE.length]}"><title>${esc(s.name)}: ${esc(unit(v))}</title></rect><text x="${left + scale(v) + 4}" y="${y + j * 14 + 10}" class="v">${esc(unit(v))}</text>`;
        })
        .join('');
      return `<text x="${left - 6}" y="${y + 10}" text-anchor="end">${esc(label.slice(0, 28))}</text>${group}`;
    })
    .join('\n');
  const legend = series
    .map(
      (s, j) =>
        `<rect x="${left + j * 120}" y="8" width="10" height="10" fill="${PALETTE[j % PALETTE.length]}"/><text x="${left + j * 120 + 14}" y="17">${esc(s.name)}</text>`,
    )
    .join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img">${legend}${bars}</svg></figure>`;
}

/** One line per series over time. Points: [epoch ms, value]. */
export function lineChart(
  title: string,
  series: Array<{ name: string; points: Array<[number, number]> }>,
  unit: string,
): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const [w, h, pad] = [720, 260, 44];
  const xs = all.map((p) => p[0]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 60_000)];
  const y1 = Math.max(1e-9, ...all.map((p) => p[1]));
  const px = (x: number) => pad + ((w - 2 * pad) * (x - x0)) / (x1 - x0);
  const py = (y: number) => h - pad - ((h - 2 * pad) * y) / y1;
  const lines = series
    .map((s, j) => {
      const d = s.points
        .map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`)
        .join(' ');
      return `<path d="${d}" fill="none" stroke="${PALETTE[j % PALETTE.length]}" stroke-width="2"><title>${esc(s.name)}</title></path><text x="${w - pad + 4}" y="${20 + j * 14}" fill="${PALETTE[j % PALETTE.length]}">${esc(s.name.slice(0, 20))}</text>`;
    })
    .join('\n');
  const axes = `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#888"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="#888"/><text x="${pad - 4}" y="${pad}" text-anchor="end">${y1.toFixed(2)}</text><text x="${pad - 4}" y="${h - pad}" text-anchor="end">0</text><text x="${pad}" y="${h - pad + 16}">${esc(new Date(x0).toISOString().slice(11, 16))}</text><text x="${w - pad}" y="${h - pad + 16}" text-anchor="end">${esc(new Date(x1).toISOString().slice(11, 16))} UTC</text><text x="4" y="14">${esc(unit)}</text>`;
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${w + 120}" height="${h}" role="img">${axes}${lines}</svg></figure>`;
}

function renderHtml(sections: Record<CapacityQuery, Row[]>, options: ReportOptions): string {
  const cpu = sections.cpu_by_container.slice(0, options.topN ?? 10);
  const mem = sections.memory_peaks.slice(0, options.topN ?? 10);
  const byContainer = new Map<string, Array<[number, number]>>();
  for (const r of sections.cpu_timeseries) {
    const points = byContainer.get(String(r.container)) ?? [];
    points.push([Date.parse(`${String(r.minute).replace(' ', 'T')}Z`), num(r.cores)]);
    byContainer.set(String(r.container), points);
  }
  const charts = [
    lineChart(
      'CPU cores per minute (busiest containers)',
      [...byContainer].map(([name, points]) => ({ name, points })),
      'cores',
    ),
    barChart(
      'CPU per container: p50, p95 and max cores',
      cpu.map((r) => String(r.container)),
      [
        { name: 'p50', values: cpu.map((r) => num(r.p50_cores)) },
        { name: 'p95', values: cpu.map((r) => num(r.p95_cores)) },
        { name: 'max', values: cpu.map((r) => num(r.max_cores)) },
      ],
      (n) => n.toFixed(2),
    ),
    barChart(
      'Memory: peak and limit',
      mem.map((r) => String(r.container)),
      [
        { name: 'peak', values: mem.map((r) => Math.max(num(r.max_bytes), num(r.kernel_peak_bytes))) },
        { name: 'limit', values: mem.map((r) => num(r.limit_bytes)) },
      ],
      humanBytes,
    ),
  ].join('\n');
  const tables = (Object.keys(CAPACITY_QUERIES) as CapacityQuery[])
    .filter((name) => name !== 'cpu_timeseries')
    .map((name) => `<section><h2>${esc(CAPACITY_QUERIES[name])}</h2>${htmlTable(sections[name])}</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ktrail capacity report</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}svg text{font-size:11px}svg text.v{fill:#555}
.empty{color:#888}
</style></head><body>
<h1>ktrail capacity report</h1>
<p>${esc(options.from.toISOString())} — ${esc(options.to.toISOString())} · database <code>${esc(options.database)}</code> · generated ${esc(new Date().toISOString())}</p>
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
