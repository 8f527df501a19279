// Kernel-capture benchmark (root): how fast records get from the kernel into JavaScript
// through the native addon, compared with a bare C reader of the same ring buffer in the
// same run, and what each BPF program costs per event. Writes the "Kernel capture" section
// of docs/benchmarks.md. About 1 minute. See docs/native.md for the method.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  type CaptureCounters,
  type CaptureSettings,
  fixtureDir,
  type KernelCapture,
  missingKernelCapture,
  openCapture,
} from '../../collector/src/kernel/addon.js';
import { table, writeSection } from '../report.js';
import {
  aboveFloor,
  fmtSpread,
  measureCosts,
  median,
  objectsIn,
  type ProgramCost,
  withBpfStats,
} from './cost.js';

const repo = resolve(new URL('../..', import.meta.url).pathname);
const helpers = join(repo, 'native/build/bench');
const FIXTURE = join(fixtureDir, 'fixture.bpf.o');
const BURST = join(fixtureDir, 'burst_storm');
const BPF_DIR = join(repo, 'bpf/.output');
const RING_BYTES = 8 << 20; // the collector's default ring buffer
const BATCH = { batchMaxBytes: 256 << 10, batchMaxMs: 20 } as const;
const DRAIN_US = 500; // the addon's default drainIntervalUs; the bare reader gets the same
const RATES = [250_000, 500_000, 1_000_000, 2_000_000, 0]; // 0 = generator flat out
const STEP_SECONDS = 1;
const FLAT_OUT_RECORDS = 2_000_000;
const WARMUP_RECORDS = 250_000;
const STORM_SECONDS = 1.5;
const COST_ROUNDS = 5; // kernel cost per event: rounds of both storms, median and spread reported

interface Step {
  reader: 'addon' | 'bare C';
  targetRate: number;
  generated: number;
  generatorSeconds: number;
  delivered: number;
  kernelDrops: number;
  addonDrops: number;
  /** CPU time the reader used during the step (addon: the whole Node process, all threads). */
  readerCpuSeconds: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fmtRate = (r: number) => (r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${Math.round(r / 1e3)} k/s`);
const zero = (s: Step) => s.kernelDrops === 0 && s.addonDrops === 0 && s.delivered >= s.generated;
const genRate = (s: Step) => s.generated / s.generatorSeconds;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', rej);
    child.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`${cmd} exited ${code}`))));
  });
}

/** Starts the bare C reader; resolves once attached, with the first program's id. */
async function startBare(
  args: string[],
): Promise<{ child: ChildProcess; progId: number; result: Promise<string> }> {
  const child = spawn(join(helpers, 'bare_reader'), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: (id: number) => void = () => {};
  const ready = new Promise<number>((r) => {
    onReady = r;
  });
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    const m = /^ready (\d+)/m.exec(out);
    if (m) onReady(Number(m[1]));
  });
  const result = new Promise<string>((res, rej) => {
    child.on('exit', (code) =>
      code === 0
        ? res(out.split('\n').filter(Boolean).pop() ?? '')
        : rej(new Error(`bare_reader exited ${code}`)),
    );
  });
  const progId = await Promise.race([ready, result.then(() => -1)]);
  if (progId < 0) throw new Error('bare_reader did not start');
  return { child, progId, result };
}

async function stopBare(b: { child: ChildProcess; result: Promise<string> }) {
  b.child.kill('SIGINT');
  return JSON.parse(await b.result) as {
    records: number;
    kernelDrops: number;
    seconds: number;
    cpuSeconds: number;
  };
}

/** Waits until the delivered count stops moving (the reader caught up). */
async function settle(read: () => number): Promise<void> {
  let last = -1;
  while (read() !== last) {
    last = read();
    await sleep(100);
  }
}

interface Ladder {
  addon: Step[];
  bare: Step[];
  twice: { addon?: Step; bare?: Step };
}

async function burstLadder(): Promise<Ladder> {
  // Addon: one capture for the whole ladder; counters are diffed per step.
  let delivered = 0;
  const settings: CaptureSettings = {
    objects: [FIXTURE],
    programs: ['fixture_burst'],
    ringBufferBytes: RING_BYTES,
    drainIntervalUs: DRAIN_US,
    ...BATCH,
  };
  const capture = openCapture(settings, (buf) => {
    delivered += countRecords(buf); // the least a consumer does: walk every record by its header
  });
  const progId = capture.counters().programs[0]?.id ?? 0;
  const addon: Step[] = [];
  const bare: Step[] = [];
  const twice: { addon?: Step; bare?: Step } = {};
  const addonStep = async (rate: number, generators = 1): Promise<Step> => {
    const before = snapshot(capture.counters(), delivered);
    const cpu0 = process.cpuUsage();
    const count = rate === 0 ? FLAT_OUT_RECORDS : rate * STEP_SECONDS;
    const g = await generate(progId, count, rate, generators);
    await settle(() => delivered);
    const cpu = process.cpuUsage(cpu0);
    const after = snapshot(capture.counters(), delivered);
    return {
      reader: 'addon',
      targetRate: rate,
      generated: count,
      generatorSeconds: g.seconds,
      delivered: after.delivered - before.delivered,
      kernelDrops: after.kernel - before.kernel,
      addonDrops: after.lost - before.lost,
      readerCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  };
  const bareStep = async (rate: number, generators = 1): Promise<Step> => {
    const b = await startBare([
      '--ringbuf',
      String(RING_BYTES),
      '--drain-us',
      String(DRAIN_US),
      '--prog',
      'fixture_burst',
      FIXTURE,
    ]);
    const count = rate === 0 ? FLAT_OUT_RECORDS : rate * STEP_SECONDS;
    const g = await generate(b.progId, count, rate, generators);
    await sleep(300);
    const r = await stopBare(b);
    return {
      reader: 'bare C',
      targetRate: rate,
      generated: count,
      generatorSeconds: g.seconds,
      delivered: r.records,
      kernelDrops: r.kernelDrops,
      addonDrops: 0,
      readerCpuSeconds: r.cpuSeconds,
    };
  };
  try {
    // Not measured: the first burst in a fresh Node process also pays for JIT compilation
    // and start-up garbage collection, a one-time cost the C reader has no equivalent of.
    await generate(progId, WARMUP_RECORDS, RATES[0] ?? 0, 1);
    await settle(() => delivered);
    for (const rate of RATES) {
      const s = await addonStep(rate);
      addon.push(s);
      if (!zero(s)) break;
    }
    for (const rate of RATES) {
      const s = await bareStep(rate);
      bare.push(s);
      if (!zero(s)) break;
    }
    // Twice the best zero-drop rate (the generator may not be able to produce it: reported).
    const bestA = bestZero(addon);
    const bestB = bestZero(bare);
    // Two generator processes: one alone cannot double its own best rate.
    if (bestA) twice.addon = await addonStep(Math.round(2 * genRate(bestA)), 2);
    if (bestB) twice.bare = await bareStep(Math.round(2 * genRate(bestB)), 2);
  } finally {
    capture.close();
  }
  return { addon, bare, twice };
}

/** Runs `generators` burst_storm processes sharing `count` records and `rate`; seconds = the slowest. */
async function generate(
  progId: number,
  count: number,
  rate: number,
  generators: number,
): Promise<{ seconds: number }> {
  const share = Math.floor(count / generators);
  const runs = Array.from({ length: generators }, (_, i) =>
    run(BURST, [
      String(progId),
      String(i === 0 ? count - share * (generators - 1) : share),
      String(rate / generators),
    ]),
  );
  const results = (await Promise.all(runs)).map((out) => JSON.parse(out) as { seconds: number });
  return { seconds: Math.max(...results.map((r) => r.seconds)) };
}

function countRecords(buf: Buffer): number {
  let n = 0;
  for (let o = 0; o + 8 <= buf.length; o += (buf.readUInt32LE(o + 4) + 7) & ~7) n++;
  return n;
}

function snapshot(c: CaptureCounters, delivered: number) {
  return { delivered, lost: c.lostRecords, kernel: c.kernelDrops.reduce((a, b) => a + b, 0) };
}

function cpuPerRecord(steps: Step[]): number {
  const cpu = steps.reduce((a, s) => a + s.readerCpuSeconds, 0);
  const records = steps.reduce((a, s) => a + s.delivered, 0);
  return records > 0 ? (cpu * 1e9) / records : Number.NaN;
}

function bestZero(steps: Step[]): Step | undefined {
  return steps.filter(zero).sort((a, b) => genRate(b) - genRate(a))[0];
}

interface StormResult {
  workload: string;
  reader: string;
  generator: string;
  records: number;
  seconds: number;
  kernelDrops: number;
  addonDrops: number;
}

/** Exec and TCP storms against every real bpf/ object: addon, then the bare reader. */
async function storms(objects: string[]): Promise<StormResult[]> {
  const results: StormResult[] = [];
  const workloads = [
    { name: 'exec storm', cmd: join(helpers, 'exec_storm'), unit: 'execs' },
    { name: 'TCP storm', cmd: join(helpers, 'tcp_storm'), unit: 'connections' },
  ];
  for (const w of workloads) {
    let delivered = 0;
    const capture: KernelCapture = openCapture(
      { objects, ringBufferBytes: RING_BYTES, drainIntervalUs: DRAIN_US, ...BATCH },
      (buf, n) => {
        countRecords(buf);
        delivered += n;
      },
    );
    try {
      const before = capture.counters();
      const t0 = performance.now();
      const g = JSON.parse(await run(w.cmd, [String(STORM_SECONDS)])) as Record<string, number>;
      await settle(() => delivered);
      const seconds = (performance.now() - t0) / 1000;
      const after = capture.counters();
      const drops = (c: CaptureCounters) => c.kernelDrops.reduce((a, b) => a + b, 0);
      results.push({
        workload: w.name,
        reader: 'addon',
        generator: `${Math.round((g[w.unit] ?? 0) / (g.seconds ?? 1))} ${w.unit}/s`,
        records: after.records - before.records,
        seconds,
        kernelDrops: drops(after) - drops(before),
        addonDrops: after.lostRecords - before.lostRecords,
      });
    } finally {
      capture.close();
    }
    const b = await startBare(['--ringbuf', String(RING_BYTES), '--drain-us', String(DRAIN_US), ...objects]);
    const t0 = performance.now();
    const g = JSON.parse(await run(w.cmd, [String(STORM_SECONDS)])) as Record<string, number>;
    await sleep(300);
    const r = await stopBare(b);
    results.push({
      workload: w.name,
      reader: 'bare C',
      generator: `${Math.round((g[w.unit] ?? 0) / (g.seconds ?? 1))} ${w.unit}/s`,
      records: r.records,
      seconds: (performance.now() - t0) / 1000,
      kernelDrops: r.kernelDrops,
      addonDrops: 0,
    });
  }
  return results;
}

async function main(): Promise<void> {
  const missing = missingKernelCapture();
  if (missing !== undefined) throw new Error(`kernel benchmark needs: ${missing}`);
  execFileSync('make', ['-s', '-C', join(repo, 'bench/kernel'), `OUT=${helpers}`], { stdio: 'inherit' });
  if (!existsSync(BURST)) throw new Error('fixtures missing: run npm run build:native');
  // bpf stats (run_time_ns / run_cnt per program) for the whole run, restored after.
  await withBpfStats(async () => {
    const ladder = await burstLadder();
    const objects = existsSync(BPF_DIR) ? objectsIn(BPF_DIR) : [];
    const storm = objects.length > 0 ? await storms(objects) : undefined;
    const costs =
      objects.length > 0 ? (await measureCosts([objects], COST_ROUNDS, STORM_SECONDS))[0] : undefined;
    report(ladder, storm, costs, objects);
  });
}

function report(
  ladder: Ladder,
  storm: StormResult[] | undefined,
  costs: ProgramCost[] | undefined,
  objects: string[],
): void {
  // "2x" runs below are judged against the ladder's best; the best overall includes them.
  const bestAddon = bestZero(ladder.addon);
  const bestBare = bestZero(ladder.bare);
  const topAddon = bestZero([...ladder.addon, ...(ladder.twice.addon ? [ladder.twice.addon] : [])]);
  const topBare = bestZero([...ladder.bare, ...(ladder.twice.bare ? [ladder.twice.bare] : [])]);
  const addonRate = topAddon ? genRate(topAddon) : 0;
  const bareRate = topBare ? genRate(topBare) : 0;
  const all = [...ladder.addon, ...ladder.bare, ladder.twice.addon, ladder.twice.bare].filter(
    (x): x is Step => x !== undefined,
  );
  const generatorBound = all.every(zero);
  const addonCpu = cpuPerRecord(ladder.addon);
  const bareCpu = cpuPerRecord(ladder.bare);
  const halfByRate = bareRate > 0 && addonRate >= bareRate / 2;
  const halfByCpu = bareCpu / addonCpu >= 0.5;
  const twiceText = (best: Step | undefined, at: Step | undefined) => {
    if (!best || !at) return 'n/a (no zero-drop rate)';
    const lost = at.kernelDrops + at.addonDrops;
    const share = `${((lost / at.generated) * 100).toFixed(2)} % of records lost`;
    // The generator is one process on a shared core: it may not reach 2x.
    if (genRate(at) < 1.5 * genRate(best))
      return `${share} with target ${fmtRate(at.targetRate)}, but the generator only reached ${fmtRate(genRate(at))} (generator-bound)`;
    return `${share} at ${fmtRate(genRate(at))}`;
  };
  const rows = all.map((s) => [
    s.reader,
    s.targetRate === 0 ? 'flat out' : fmtRate(s.targetRate),
    fmtRate(genRate(s)),
    s.generated,
    s.delivered,
    s.kernelDrops,
    s.addonDrops,
    zero(s) ? 'yes' : `no (${(((s.kernelDrops + s.addonDrops) / s.generated) * 100).toFixed(1)} % lost)`,
    s.delivered > 0 ? ((s.readerCpuSeconds * 1e9) / s.delivered).toFixed(0) : 'n/a',
  ]);
  const lines = [
    `Method: see docs/native.md. Ring buffer ${RING_BYTES >> 20} MiB shared by all objects, addon batches of up to ${BATCH.batchMaxBytes >> 10} KiB / ${BATCH.batchMaxMs} ms, JS walks every record header; both readers sleep ${DRAIN_US} µs between drains while records flow (the addon's default \`drainIntervalUs\`); the addon's ladder starts after an unmeasured burst of ${WARMUP_RECORDS.toLocaleString('en')} records (JIT compilation and start-up garbage collection of a fresh Node process). kernel.bpf_stats_enabled=1 during the run, restored after.`,
    '',
    '### Highest zero-drop rate (synthetic kernel-side generator)',
    '',
    'Records come from `fixture_burst` (native/test/fixture.bpf.c), run in the kernel by `BPF_PROG_TEST_RUN` with `repeat` from native/test/burst_storm.c: a synthetic source, used because no syscall loop on this shared 2-core VM reaches these rates. It exercises the ring buffer -> reader path only; both readers read the same object and ring buffer size.',
    '',
    table(
      [
        'reader',
        'target',
        'generated rate',
        'generated',
        'delivered',
        'kernel drops',
        'addon drops',
        'zero drops',
        'reader CPU ns/record',
      ],
      rows,
    ),
    '',
    `- Highest zero-drop rate into JS: **${fmtRate(addonRate)}**; bare C reader: **${fmtRate(bareRate)}**; ratio addon/bare = **${bareRate > 0 ? (addonRate / bareRate).toFixed(2) : 'n/a'}**${generatorBound ? " — neither reader dropped at any rate the generator produced: both figures are what the generator reached (one or two processes on a shared 2-core machine, competing with the reader for CPU), not the readers' limits" : ''}.`,
    `- Reader CPU per record over the ladder (steadier than rates on a shared machine): addon ${addonCpu.toFixed(0)} ns (native thread + JS thread + GC, whole process), bare C ${bareCpu.toFixed(0)} ns. One core's capacity: addon **${fmtRate(1e9 / addonCpu)}** into JS, bare C ${fmtRate(1e9 / bareCpu)}, ratio **${(bareCpu / addonCpu).toFixed(2)}**. `,
    `- At twice the zero-drop rate, addon: ${twiceText(bestAddon, ladder.twice.addon)}; bare C: ${twiceText(bestBare, ladder.twice.bare)}.`,
    `- Targets: >= 500 k/s into JS with zero drops: **${addonRate >= 500_000 ? 'met' : 'NOT met'}**. >= half the bare C reader: by zero-drop rate **${halfByRate ? 'met' : 'NOT met'}** (${bareRate > 0 ? (addonRate / bareRate).toFixed(2) : 'n/a'}); by one-core CPU capacity **${halfByCpu ? 'met' : 'NOT met'}** (${(bareCpu / addonCpu).toFixed(2)}). The bare reader only counts records; the addon copies each into a batch and JS walks it, so per-record CPU is where the difference shows.`,
  ];
  if (storm && costs) {
    lines.push(
      '',
      `### Exec and TCP storms (real bpf/ objects: ${objects.map((o) => o.split('/').pop()).join(', ')})`,
      '',
      `Each storm runs ${STORM_SECONDS} s; records include whatever else ran on the machine. These generators are far below the readers' limits, so the rate is the generator's and "twice that" cannot be produced here.`,
      '',
      table(
        ['workload', 'reader', 'generator', 'records', 'records/s', 'kernel drops', 'addon drops'],
        storm.map((r) => [
          r.workload,
          r.reader,
          r.generator,
          r.records,
          Math.round(r.records / r.seconds),
          r.kernelDrops,
          r.addonDrops,
        ]),
      ),
      '',
      ...costSection(costs),
    );
  } else {
    lines.push(
      '',
      '_bpf/.output has no objects (run `npm run build:bpf`): exec/TCP storms and per-program costs skipped._',
    );
  }
  writeSection('Kernel capture', 'npm run bench -- kernel', lines.join('\n'));
  console.log(lines.join('\n'));
}

/** The "Kernel cost per event" table: each program against the floor of its hook, same run. */
function costSection(costs: ProgramCost[]): string[] {
  const rows = costs.map((p) => {
    const floor = p.rounds.map((r) => r.floorNs).filter(Number.isFinite);
    const total = p.rounds.filter((r) => r.runs > 0).map((r) => r.ns);
    const above = aboveFloor(p);
    const runs = p.rounds.reduce((a, r) => a + r.runs, 0);
    return [
      p.name,
      p.hook,
      runs,
      runs > 0 ? fmtSpread(total) : 'n/a (no runs)',
      fmtSpread(floor),
      fmtSpread(above),
      above.length > 0 && floor.length > 0 ? (median(above) / median(floor)).toFixed(1) : 'n/a',
    ];
  });
  return [
    '',
    `### Kernel cost per event (bpf stats: run_time_ns / run_cnt, ${COST_ROUNDS} rounds of both storms)`,
    '',
    `Each round loads every object plus bench/kernel/floor.bpf.c, which puts a program that only counts its runs on every hook a ktrail program uses: it sees the same events in the same round, so its ns per run is what the hook, the dispatch and bpf stats cost on this CPU. "Above floor" is what the ktrail program adds. Median over the rounds (min-max); the exec storm runs /bin/true with five arguments (argv is copied into the record).`,
    '',
    table(
      ['program', 'hook', 'runs', 'ns per run', 'floor ns per run', 'above floor', 'above / floor'],
      rows,
    ),
  ];
}

await main();
