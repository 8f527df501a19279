// Kernel cost per event of every ktrail BPF program, against a floor measured in the same
// run: bench/kernel/floor.bpf.c puts a program that only counts on every hook ktrail uses,
// so "above floor" is what ktrail adds on this CPU, whatever the CPU. Costs come from the
// kernel's own accounting (kernel.bpf_stats_enabled=1: run_time_ns / run_cnt per program)
// over an exec storm (with arguments) and a loopback TCP storm, in several rounds.
//
// Used by run.ts (the "Kernel cost per event" table of docs/benchmarks.md), and on its own to
// compare two builds back to back (root):
//   npx tsx bench/kernel/cost.ts [--rounds 5] [--seconds 1.5] [--baseline ROOT]
// --baseline: another built checkout of ktrail (e.g. main's: its bpf/.output and its addon);
// rounds alternate baseline and current (order reversed every other round), each in a process
// of its own, so each build is read by its own addon.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureCounters, openCapture } from '../../collector/src/kernel/addon.js';
import { setLogLevel } from '../../common/log.js';

const repo = resolve(new URL('../..', import.meta.url).pathname);
export const benchHelpers = join(repo, 'native/build/bench');
const FLOOR = join(benchHelpers, 'floor.bpf.o');
const STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** One program's cost in one round. */
interface RoundCost {
  runs: number;
  ns: number;
  floorNs: number;
}

export interface ProgramCost {
  name: string;
  object: string;
  /** The hook, as the section names it (sched_switch, inet_sock_set_state, ingress, ...). */
  hook: string;
  rounds: RoundCost[];
}

/** Median of the values (NaN-free input). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? (s[m] as number)
      : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const hookOf = (section: string) => section.split('/').pop() ?? section;

function runHelper(cmd: string, args: string[]): Promise<Record<string, number>> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', rej);
    child.on('exit', (code) =>
      code === 0 ? res(JSON.parse(out) as Record<string, number>) : rej(new Error(`${cmd} exited ${code}`)),
    );
  });
}

type Totals = Map<string, { object: string; section: string; ns: number; runs: number }>;

function totals(c: CaptureCounters): Totals {
  const t: Totals = new Map();
  for (const p of c.programs)
    t.set(p.name, { object: p.object, section: p.section, ns: p.runTimeNs ?? 0, runs: p.runCount ?? 0 });
  return t;
}

/** One round: objects + floor loaded together, both storms, per-program deltas. */
async function round(
  objects: string[],
  seconds: number,
): Promise<Map<string, ProgramCost & { r: RoundCost }>> {
  const capture = openCapture(
    { objects: [...objects, FLOOR], ringBufferBytes: 8 << 20, batchMaxBytes: 256 << 10, batchMaxMs: 20 },
    () => {},
  );
  try {
    const before = totals(capture.counters());
    await runHelper(join(benchHelpers, 'exec_storm'), [String(seconds)]);
    await runHelper(join(benchHelpers, 'tcp_storm'), [String(seconds)]);
    const after = totals(capture.counters());
    const delta = (name: string) => {
      const a = after.get(name);
      const b = before.get(name);
      return { runs: (a?.runs ?? 0) - (b?.runs ?? 0), ns: (a?.ns ?? 0) - (b?.ns ?? 0) };
    };
    const floorByHook = new Map<string, number>();
    for (const [name, p] of after) {
      if (p.object !== FLOOR) continue;
      const d = delta(name);
      if (d.runs > 0) floorByHook.set(hookOf(p.section), d.ns / d.runs);
    }
    const out = new Map<string, ProgramCost & { r: RoundCost }>();
    for (const [name, p] of after) {
      if (p.object === FLOOR) continue;
      const d = delta(name);
      const hook = hookOf(p.section);
      const r = {
        runs: d.runs,
        ns: d.runs > 0 ? d.ns / d.runs : Number.NaN,
        floorNs: floorByHook.get(hook) ?? Number.NaN,
      };
      out.set(name, { name, object: p.object.split('/').pop() ?? p.object, hook, rounds: [], r });
    }
    return out;
  } finally {
    capture.close();
  }
}

/** Runs `rounds` rounds for each set of objects, alternating sets round by round. */
export async function measureCosts(
  sets: string[][],
  rounds: number,
  seconds: number,
): Promise<ProgramCost[][]> {
  const results = sets.map(() => new Map<string, ProgramCost>());
  for (let i = 0; i < rounds; i++) {
    for (const [s, objects] of sets.entries()) {
      for (const [name, c] of await round(objects, seconds)) {
        const acc = results[s]?.get(name) ?? { name, object: c.object, hook: c.hook, rounds: [] };
        acc.rounds.push(c.r);
        results[s]?.set(name, acc);
      }
    }
  }
  return results.map((m) => [...m.values()].sort((a, b) => a.name.localeCompare(b.name)));
}

/** Runs `fn` with kernel.bpf_stats_enabled=1, restoring what was there. */
export async function withBpfStats<T>(fn: () => Promise<T>): Promise<T> {
  const before = readFileSync(STATS, 'utf8').trim();
  writeFileSync(STATS, '1');
  try {
    return await fn();
  } finally {
    writeFileSync(STATS, before);
  }
}

/** Cost above the floor per round (rounds without runs left out). */
export function aboveFloor(p: ProgramCost): number[] {
  return p.rounds.filter((r) => r.runs > 0 && Number.isFinite(r.floorNs)).map((r) => r.ns - r.floorNs);
}

export const fmtSpread = (v: number[]) =>
  v.length === 0
    ? 'n/a'
    : `${median(v).toFixed(0)} (${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)})`;

export function objectsIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.bpf.o'))
    .sort()
    .map((f) => join(dir, f));
}

/** One round in a child process, with `root`'s addon and objects; its costs as JSON. */
function childRound(root: string, seconds: number): Promise<Array<ProgramCost & { r: RoundCost }>> {
  const env = { ...process.env, KTRAIL_NATIVE_ADDON: join(root, 'native/build/Release/ktrail_native.node') };
  const args = [
    '--import',
    'tsx',
    new URL(import.meta.url).pathname,
    '--one-round',
    join(root, 'bpf/.output'),
  ];
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [...args, '--seconds', String(seconds)], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', rej);
    child.on('exit', (code) =>
      code === 0
        ? res(JSON.parse(out) as Array<ProgramCost & { r: RoundCost }>)
        : rej(new Error(`round exited ${code}`)),
    );
  });
}

/** Baseline and current builds, round by round, each round in its own process. */
async function compare(roots: string[], rounds: number, seconds: number): Promise<ProgramCost[][]> {
  const results = roots.map(() => new Map<string, ProgramCost>());
  for (let i = 0; i < rounds; i++) {
    // Every other round in reverse order: a build measured always right after the other one
    // would carry whatever that round leaves behind (warm caches, a busy neighbour) alone.
    const order = [...roots.keys()];
    if (i % 2 === 1) order.reverse();
    for (const s of order) {
      const root = roots[s] as string;
      for (const c of await childRound(root, seconds)) {
        const acc = results[s]?.get(c.name) ?? { name: c.name, object: c.object, hook: c.hook, rounds: [] };
        acc.rounds.push(c.r);
        results[s]?.set(c.name, acc);
      }
    }
  }
  return results.map((m) => [...m.values()].sort((a, b) => a.name.localeCompare(b.name)));
}

function printComparison(cur: ProgramCost[], base: ProgramCost[] | undefined, rounds: number): void {
  console.log(`${rounds} rounds; ns per run above the floor: median (min-max)`);
  for (const p of cur) {
    const floor = p.rounds.map((r) => r.floorNs).filter(Number.isFinite);
    const runs = p.rounds.reduce((a, r) => a + r.runs, 0);
    const now = aboveFloor(p);
    const b = base?.find((q) => q.name === p.name);
    const was = b ? aboveFloor(b) : [];
    const ratio = b && was.length > 0 && now.length > 0 ? (median(now) / median(was)).toFixed(2) : '';
    console.log(
      [
        p.name.padEnd(22),
        p.hook.padEnd(20),
        String(runs).padStart(8),
        `floor ${fmtSpread(floor)}`.padEnd(22),
        b ? `before ${fmtSpread(was)}`.padEnd(24) : '',
        `now ${fmtSpread(now)}`.padEnd(22),
        ratio,
      ].join(' '),
    );
  }
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '1.5' },
      baseline: { type: 'string' },
      'one-round': { type: 'string' },
    },
  });
  const seconds = Number(values.seconds);
  const oneRound = values['one-round'];
  if (oneRound !== undefined) {
    // A child of compare(): bpf stats are already on; one round, its costs on stdout.
    console.log(JSON.stringify([...(await round(objectsIn(oneRound), seconds)).values()]));
    return;
  }
  execFileSync('make', ['-s', '-C', join(repo, 'bench/kernel'), `OUT=${benchHelpers}`], { stdio: 'inherit' });
  const rounds = Number(values.rounds);
  const baseline = values.baseline;
  if (baseline === undefined) {
    const [cur] = await withBpfStats(() =>
      measureCosts([objectsIn(join(repo, 'bpf/.output'))], rounds, seconds),
    );
    printComparison(cur ?? [], undefined, rounds);
    return;
  }
  const [base, cur] = await withBpfStats(() => compare([resolve(baseline), repo], rounds, seconds));
  printComparison(cur ?? [], base, rounds);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) await main();
