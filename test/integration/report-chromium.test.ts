// The capacity report as a person sees it: built from a real chDB store (test/support/
// capacity-data.ts) and rendered by real headless Chromium, which lays the SVG out. A probe
// script in the page reads what was drawn (each line's and legend entry's name, colour and box)
// and the test checks that the charts say what the data says: a line per busy workload, the
// host among them but not alone, each legend entry naming its own line in its own colour,
// nothing outside the chart, no NaN. It also takes a screenshot (path in the log).
import { execFile } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { clientRunner } from '../../deploy/clickhouse/queries.js';
import { buildReport } from '../../deploy/clickhouse/report.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { CPU_SECONDS, fillCapacityStore, inserter, T0 } from '../support/capacity-data.js';
import { itReal } from '../support/real.js';

const run = promisify(execFile);
const DB = 'repchrome';

const chromium = await run('chromium', ['--version']).then(
  (r) => ({ version: r.stdout.trim() }),
  (err: Error) => ({ missing: `chromium unavailable (apt-get install -y chromium): ${err.message}` }),
);
const it = itReal('missing' in chromium ? chromium.missing : undefined);
const chromiumVersion = 'version' in chromium ? chromium.version : '';

/** Runs in the page after layout: what each chart drew, into #ktrail-probe. */
const PROBE = `<pre id="ktrail-probe"></pre><script>
// The visible text of a legend entry: its text nodes, not its <title> tooltip.
const box = (e) => { const b = e.getBBox(); return { x: b.x, y: b.y, width: b.width, height: b.height }; };
document.getElementById('ktrail-probe').textContent = JSON.stringify([...document.querySelectorAll('figure')].map((fig) => {
  const svg = fig.querySelector('svg');
  return {
    title: fig.querySelector('figcaption').textContent,
    width: svg.width.baseVal.value,
    height: svg.height.baseVal.value,
    nan: /NaN|undefined|Infinity/.test(svg.outerHTML),
    plot: (svg.dataset.plot || '').split(' ').map(Number),
    lines: [...svg.querySelectorAll('path[data-series]')].map((p) => ({ name: p.dataset.series, color: p.getAttribute('stroke'), dash: p.getAttribute('stroke-dasharray') || '', ...box(p) })),
    bars: [...svg.querySelectorAll('rect[data-series]')].map((r) => ({ name: r.dataset.series, color: r.getAttribute('fill'), ...box(r) })),
    legend: [...svg.querySelectorAll('[data-legend]')].map((g) => ({ name: g.dataset.legend, color: g.dataset.color, text: [...g.querySelector('text').childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join(''), swatch: (g.querySelector('line') || g.querySelector('rect')).getAttribute(g.querySelector('line') ? 'stroke' : 'fill'), ...box(g) })),
  };
}));
</script>`;

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}
interface Figure {
  title: string;
  width: number;
  height: number;
  nan: boolean;
  /** A line chart's plot area: left, top, right, bottom. */
  plot: number[];
  lines: (Box & { name: string; color: string; dash: string })[];
  bars: (Box & { name: string; color: string })[];
  legend: (Box & { name: string; color: string; text: string; swatch: string })[];
}

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--hide-scrollbars',
  '--virtual-time-budget=5000',
];

describe('the capacity report in a real browser', () => {
  let client: ClickHouseClient;
  const dir = mkdtempSync(join(tmpdir(), 'ktrail-report-chromium-'));

  beforeAll(async () => {
    client = await createClickHouse({ kind: 'chdb', path: join(dir, 'chdb'), database: DB });
    await migrate(client, { database: DB });
    await fillCapacityStore(inserter(client, DB));
  }, 120_000);

  afterAll(async () => {
    await client?.close();
  });

  it('draws a line per busy workload, legends that match their lines, nothing NaN', async () => {
    const report = await buildReport(clientRunner(client), {
      from: new Date(T0 - 3600e3),
      to: new Date(T0 + 3 * 3600e3),
      database: DB,
    });
    const page = join(dir, 'report.html');
    writeFileSync(page, report.html);
    const probed = join(dir, 'probed.html');
    writeFileSync(probed, report.html.replace('</body>', `${PROBE}</body>`));

    const { stdout } = await run('chromium', [...CHROMIUM_FLAGS, '--dump-dom', `file://${probed}`], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 60_000,
    });
    const json = /<pre id="ktrail-probe">([\s\S]*?)<\/pre>/.exec(stdout)?.[1];
    expect(json, 'the probe ran in the page').toBeTruthy();
    const figures = JSON.parse(
      (json as string).replaceAll('&quot;', '"').replaceAll('&amp;', '&'),
    ) as Figure[];
    expect(figures).toHaveLength(5);
    for (const f of figures) {
      expect(f.nan, f.title).toBe(false);
      // Every legend entry inside its chart (a clipped name is an unreadable one).
      for (const l of f.legend) {
        expect(l.x + l.width, `${f.title}: legend ${l.name}`).toBeLessThanOrEqual(f.width + 0.5);
        expect(l.swatch, `${f.title}: legend ${l.name}`).toBe(l.color);
      }
      // Each drawn series has a legend entry in its colour.
      const legend = new Map(f.legend.map((l) => [l.name, l.color]));
      for (const s of [...f.lines, ...f.bars])
        expect(legend.get(s.name), `${f.title}: ${s.name}`).toBe(s.color);
    }

    const [time, host, cpu, , failures] = figures as [Figure, Figure, Figure, Figure, Figure];
    expect(time.title).toMatch(/^CPU cores per minute, busiest workloads/);
    // One line per workload with CPU, busiest first, the host in a chart of its own (on a busy
    // node it would flatten every other line).
    const busy = Object.entries(CPU_SECONDS)
      .sort((a, b) => b[1] - a[1])
      .map(([name]) => name);
    expect(time.lines.map((l) => l.name)).toEqual(busy.filter((n) => n !== 'host'));
    expect(time.legend.map((l) => l.text)).toEqual(busy.filter((n) => n !== 'host'));
    expect(new Set(time.lines.map((l) => `${l.color}${l.dash}`)).size).toBe(busy.length - 1);
    expect(host.lines.map((l) => l.name)).toEqual(['host']);
    for (const chart of [time, host]) {
      const [left, top, right, bottom] = chart.plot as [number, number, number, number];
      for (const l of chart.lines) {
        // Each line runs the whole time axis (a minute without samples is drawn at 0), inside
        // the plot, and rises visibly off the axis: none is flattened by another's scale.
        expect(l.x, l.name).toBeGreaterThanOrEqual(left - 1);
        expect(l.x + l.width, l.name).toBeLessThanOrEqual(right + 1);
        expect(l.width, l.name).toBeGreaterThan(0.95 * (right - left));
        expect(l.y, l.name).toBeGreaterThanOrEqual(top - 1);
        expect(l.y + l.height, l.name).toBeLessThanOrEqual(bottom + 1);
        expect(bottom - l.y, `${l.name} rises off the axis`).toBeGreaterThan(8);
      }
    }
    expect(time.lines.find((l) => l.name === 'shop/api')?.height).toBeGreaterThan(100); // 0.5 -> 2 cores
    expect(time.lines.find((l) => l.name === 'web')?.height).toBeGreaterThan(0); // its five short lives

    expect(new Set(cpu.bars.map((b) => b.name))).toEqual(new Set(['p50', 'p95', 'max']));
    expect(cpu.bars.every((b) => b.width >= 0)).toBe(true);
    expect(failures.title).toMatch(/^Failures per workload/);

    const png = join(dir, 'report.png');
    await run(
      'chromium',
      [...CHROMIUM_FLAGS, '--window-size=1150,2400', `--screenshot=${png}`, `file://${page}`],
      {
        timeout: 60_000,
      },
    );
    expect(statSync(png).size).toBeGreaterThan(50_000);
    console.log(`[report-chromium] ${chromiumVersion}: screenshot ${png}, report ${page}`);
  }, 180_000);
});
