// The backlog drain inside a memory cgroup of the target (500 MiB), as a pod's limit holds
// the processor. Unlimited, the process keeps what the kernel lets it keep: ~250 MiB of
// libchdb.so's and node's file-backed pages (dropped and read back under pressure) and a V8
// heap sized by the machine (24 GiB here). Under a limit the kernel reclaims the former and
// V8 sizes its heap by the limit; this run shows whether the drain fits, and at what CPU.
//
// The runner (bench/run.ts) calls runLimitedDrain() before the processor bench, from a process
// that has not loaded libchdb.so: its pages are dropped from the page cache first, so the
// child's loading charges them to the child's cgroup as a fresh pod's would. The child is the
// processor bench itself in BENCH_ONLY=limited mode (drain only); it writes its figures to
// BENCH_LIMITED_RESULT, the runner adds the cgroup's, and the bench's report reads them.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { runAs } from '../../common/run-as.js';
import { createMemoryCgroup, missingMemoryCgroup } from '../../test/support/memory-cgroup.js';

export const MEMORY_TARGET_BYTES = 500 * 2 ** 20;
const f = (n: number) => Math.round(n).toLocaleString('en-US');

/** What the child measured of its drain (run.ts drainBacklog). */
export interface LimitedDrainChild {
  produced: number;
  wallS: number;
  cpuS: number;
  peakRss: number;
  peakResident: { anon: number; file: number; heap: number };
  pendingMaxRows: number;
  heapLimitBytes: number;
}

export type LimitedDrain =
  | (LimitedDrainChild & {
      limitBytes: number;
      /** Highest usage charged to the cgroup: anonymous memory, page cache, kernel memory. */
      chargedPeakBytes: number;
      limitHits: number;
      oomKills: number;
      cgroupVersion: 1 | 2;
    })
  | { failed: string; oomKills: number };

/** libchdb.so's path in this checkout's node_modules. */
function libchdbPath(): string {
  const index = createRequire(import.meta.url).resolve('@chdb/lib-linux-x64-gnu');
  return join(dirname(index), 'libchdb.so');
}

/**
 * Runs `script` (the processor bench) in BENCH_ONLY=limited mode inside a fresh memory cgroup
 * of MEMORY_TARGET_BYTES; writes the result as JSON to `resultFile`. The broker must already
 * run outside the cgroup (the child's ensureKafka would otherwise start it inside).
 */
export async function runLimitedDrain(script: string, resultFile: string): Promise<LimitedDrain> {
  const missing = missingMemoryCgroup();
  const save = (r: LimitedDrain) => {
    writeFileSync(resultFile, JSON.stringify(r));
    return r;
  };
  if (missing !== undefined) return save({ failed: `no memory cgroup: ${missing}`, oomKills: 0 });
  // GNU dd's nocache with count=0 drops the whole file's clean pages from the page cache
  // (posix_fadvise DONTNEED); pages another running process maps stay, charged where they are.
  spawnSync('dd', [`if=${libchdbPath()}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
  const group = createMemoryCgroup('bench-processor', MEMORY_TARGET_BYTES);
  try {
    const run = runAs('processor', script, [], {
      ...process.env,
      BENCH_ONLY: 'limited',
      BENCH_LIMITED_RESULT: resultFile,
    });
    const child = group.spawn(run.command, run.args, { stdio: 'inherit', env: run.env });
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    if (exit.code !== 0)
      return save({ failed: `exit ${exit.code ?? exit.signal}`, oomKills: group.oomKills() });
    const measured = JSON.parse(readFileSync(resultFile, 'utf8')) as LimitedDrainChild;
    return save({
      ...measured,
      limitBytes: group.limitBytes,
      chargedPeakBytes: group.peakBytes(),
      limitHits: group.limitHits(),
      oomKills: group.oomKills(),
      cgroupVersion: group.version,
    });
  } finally {
    await group.remove();
  }
}

/** The runner's result for the report; undefined when the bench runs without the runner. */
export function readLimitedDrain(file: string | undefined): LimitedDrain | undefined {
  if (file === undefined) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LimitedDrain;
  } catch {
    return undefined;
  }
}

/** The report's rows for this run, beside the unlimited drain's CPU seconds per event. */
export function limitedDrainRows(
  limited: LimitedDrain | undefined,
  unlimitedCpuPerEvent: number,
): string[][] {
  const label = `the backlog drain inside a memory cgroup of ${f(MEMORY_TARGET_BYTES / 2 ** 20)} MiB (its own process, libchdb.so's pages charged to it)`;
  const target = `<= ${f(MEMORY_TARGET_BYTES / 2 ** 20)} MiB`;
  if (limited === undefined) return [[label, 'not run: `npm run bench -- processor` runs it', '']];
  if ('failed' in limited)
    return [[label, `failed (${limited.failed}), OOM kills ${limited.oomKills}`, `${target}: **missed**`]];
  const r = limited.peakResident;
  const fits = limited.oomKills === 0 && limited.peakRss <= MEMORY_TARGET_BYTES;
  return [
    [
      label,
      `peak RSS ${f(limited.peakRss / 2 ** 20)} MiB: ${f(r.anon)} anonymous (V8's heap ${f(r.heap)}), ${f(r.file)} file-backed; ` +
        `charged to the cgroup at most ${f(limited.chargedPeakBytes / 2 ** 20)} MiB, the limit reached ${f(limited.limitHits)} times, ` +
        `OOM kills ${limited.oomKills}`,
      `${target}, no OOM kill: **${fits ? 'met' : 'missed'}**`,
    ],
    [
      '  its CPU against the drain above (no limit)',
      `${limited.cpuS.toFixed(1)} s for ${f(limited.produced)} events: ${(limited.cpuS / limited.produced / unlimitedCpuPerEvent).toFixed(2)} x per event ` +
        `(V8's heap limit ${f(limited.heapLimitBytes / 2 ** 20)} MiB, at most ${f(limited.pendingMaxRows)} rows held)`,
      '',
    ],
  ];
}
