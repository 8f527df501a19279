// The report's charts: inline SVG, no scripts. Every drawn series carries data-series (its
// name) and every legend entry data-legend, so a test in a real browser can check that the
// legend names and colours match the lines (test/integration/report-chromium.test.ts).

export const esc = (v: unknown): string =>
  String(v ?? '').replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string,
  );

/** Tableau 10: as many distinct colours as the report draws lines (cpu_timeseries' limit). */
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];
/** Past ten series the colours repeat, each round with its own dash pattern. */
const DASHES = ['', '6 3', '2 2', '8 3 2 3'];

function stroke(j: number): { color: string; dash: string } {
  return {
    color: PALETTE[j % PALETTE.length] as string,
    dash: DASHES[Math.floor(j / PALETTE.length) % DASHES.length] as string,
  };
}

/** A finite number, 0 otherwise (a missing or NaN value draws nothing rather than breaking the SVG). */
const finite = (v: number): number => (Number.isFinite(v) ? v : 0);

const clip = (text: string, n: number): string => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

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

/** The top of a value axis: a round number at least `v`, at most 25% above it. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10])
    if (m * p >= v * (1 - 1e-9)) return +(m * p).toPrecision(6);
  return 10 * p;
}

const MINUTE = 60_000;
/** Time-axis ticks: whole multiples of a round step (1 minute .. 1 day), at most `most` of them. */
export function timeTicks(x0: number, x1: number, most = 6): number[] {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map((m) => m * MINUTE);
  const step = steps.find((s) => (x1 - x0) / s <= most - 1) ?? 1440 * MINUTE;
  const ticks: number[] = [];
  for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) ticks.push(t);
  return ticks;
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
  const left = 220;
  const width = 760;
  const height = labels.length * rowH + 40;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values.map(finite)));
  const scale = (v: number) => ((width - left - 90) * finite(v)) / max;
  const bars = labels
    .map((label, i) => {
      const y = 30 + i * rowH;
      const group = series
        .map((s, j) => {
          const v = finite(s.values[i] ?? 0);
          const { color } = stroke(j);
          return `<rect data-series="${esc(s.name)}" x="${left}" y="${y + j * 14}" width="${scale(v).toFixed(1)}" height="12" fill="${color}"><title>${esc(label)} ${esc(s.name)}: ${esc(unit(v))}</title></rect><text x="${(left + scale(v) + 4).toFixed(1)}" y="${y + j * 14 + 10}" class="v">${esc(unit(v))}</text>`;
        })
        .join('');
      return `<text x="${left - 6}" y="${y + 10}" text-anchor="end"><title>${esc(label)}</title>${esc(clip(label, 32))}</text>${group}`;
    })
    .join('\n');
  const legend = series
    .map((s, j) => {
      const { color } = stroke(j);
      return `<g data-legend="${esc(s.name)}" data-color="${color}"><rect x="${left + j * 110}" y="8" width="10" height="10" fill="${color}"/><text x="${left + j * 110 + 14}" y="17">${esc(s.name)}</text></g>`;
    })
    .join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img">${legend}${bars}</svg></figure>`;
}

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

/**
 * One line per series over time, a legend entry per line (its colour and dash, its name).
 * Points: [epoch ms, value], each series sorted by time.
 */
export function lineChart(
  title: string,
  series: Array<{ name: string; points: Array<[number, number]> }>,
  unit: string,
): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const [w, h, left, top, bottom] = [720, 280, 52, 16, 36];
  const xs = all.map((p) => p[0]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 60_000);
  const y1 = niceCeil(Math.max(...all.map((p) => finite(p[1]))));
  const px = (x: number) => left + ((w - left - 12) * (x - x0)) / (x1 - x0);
  const py = (y: number) => h - bottom - ((h - top - bottom) * finite(y)) / y1;
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const y = py(f * y1).toFixed(1);
      return `<line x1="${left}" y1="${y}" x2="${w - 12}" y2="${y}" stroke="${f === 0 ? '#888' : '#e4e4e4'}"/><text x="${left - 4}" y="${Number(y) + 4}" text-anchor="end">${esc(+(f * y1).toPrecision(3))}</text>`;
    })
    .join('');
  const ticks = timeTicks(x0, x1)
    .map((t, i, all) => {
      const x = px(t);
      const anchor = x - left < 20 ? 'start' : w - 12 - x < 20 ? 'end' : 'middle';
      return `<line x1="${x.toFixed(1)}" y1="${h - bottom}" x2="${x.toFixed(1)}" y2="${h - bottom + 4}" stroke="#888"/><text x="${x.toFixed(1)}" y="${h - bottom + 16}" text-anchor="${anchor}">${hhmm(t)}${i === all.length - 1 ? ' UTC' : ''}</text>`;
    })
    .join('');
  const axes = `${grid}${ticks}<line x1="${left}" y1="${top}" x2="${left}" y2="${h - bottom}" stroke="#888"/><text x="4" y="${top - 4}">${esc(unit)}</text>`;
  const lines = series
    .map((s, j) => {
      const { color, dash } = stroke(j);
      const d = s.points
        .map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`)
        .join(' ');
      return `<path data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}><title>${esc(s.name)}</title></path>`;
    })
    .join('\n');
  const legend = series
    .map((s, j) => {
      const { color, dash } = stroke(j);
      const y = top + 8 + j * 16;
      return `<g data-legend="${esc(s.name)}" data-color="${color}"><line x1="${w + 4}" y1="${y}" x2="${w + 26}" y2="${y}" stroke="${color}" stroke-width="3"${dash ? ` stroke-dasharray="${dash}"` : ''}/><text x="${w + 30}" y="${y + 4}"><title>${esc(s.name)}</title>${esc(clip(s.name, 34))}</text></g>`;
    })
    .join('\n');
  const height = Math.max(h, top + 16 * series.length + 8);
  // data-plot: the plot area (left top right bottom), for tests that check what was drawn.
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${w + 240}" height="${height}" role="img" data-plot="${left} ${top} ${w - 12} ${h - bottom}">${axes}${lines}${legend}</svg></figure>`;
}
