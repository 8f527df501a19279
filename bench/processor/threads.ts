// CPU time of this process by thread, from /proc/self/task: splits the processor's own
// JavaScript (the main thread) from the embedded engine's work (chDB runs queries on libuv
// and its own pool threads, and merges in the background), which process.cpuUsage() lumps
// together.
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100; // Linux USER_HZ for utime/stime

/** Seconds of CPU per thread kind: 'main', or the thread's name without its number suffix. */
export function cpuByThread(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    const kind = tid === String(process.pid) ? 'main' : name.replace(/[0-9]+$/, '');
    out.set(kind, (out.get(kind) ?? 0) + seconds);
  }
  return out;
}

/** after - before, per kind, largest first. */
export function cpuSince(before: Map<string, number>): Array<[string, number]> {
  return [...cpuByThread()]
    .map(([kind, s]) => [kind, s - (before.get(kind) ?? 0)] as [string, number])
    .filter(([, s]) => s > 0)
    .sort((a, b) => b[1] - a[1]);
}

/**
 * The thread kinds that run the processor's own code: Node's main thread, V8's helpers (GC,
 * compilers) and its other platform threads, and libuv's pool. The embedded engine's threads
 * (ThreadPool, MergeMutate, BgSchPool, ...) are chDB's, not the processor's.
 */
const NODE_THREADS = new Set(['main', 'V8Worker', 'DelayedTaskSche', 'SignalInspector', 'libuv-worker']);

/** Seconds of CPU of the processor's own threads in a cpuSince() result. */
export function processorCpu(threads: ReadonlyArray<[string, number]>): number {
  return threads.reduce((s, [kind, sec]) => (NODE_THREADS.has(kind) ? s + sec : s), 0);
}

/**
 * This process's resident memory in MiB, split as the kernel counts it: anonymous (heaps,
 * allocators, buffers) and file-backed (the mapped pages of node and libchdb.so, which the
 * kernel can drop and read back).
 */
export function residentMiB(): { anon: number; file: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
}
