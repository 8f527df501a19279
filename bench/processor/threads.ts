// CPU time of this process by thread, from /proc/self/task: splits the processor's own
// JavaScript (the main thread) from the embedded engine's work (chDB runs queries on libuv
// and its own pool threads, and merges in the background), which process.cpuUsage() lumps
// together.
import { readFileSync } from 'node:fs';
import { threadCpuSeconds } from '../thread-cpu.js';

/** Seconds of CPU per thread kind: 'main', or the thread's name without its number suffix. */
export function cpuByThread(): Map<string, number> {
  return threadCpuSeconds('self', (name, tid) =>
    tid === String(process.pid) ? 'main' : name.replace(/[0-9]+$/, ''),
  );
}

/** after - before, per kind, largest first. */
export function cpuSince(before: Map<string, number>): Array<[string, number]> {
  return [...cpuByThread()]
    .map(([kind, s]) => [kind, s - (before.get(kind) ?? 0)] as [string, number])
    .filter(([, s]) => s >= 0.005) // what prints as 0.01 s or more
    .sort((a, b) => b[1] - a[1]);
}

/** CPU from now until end(): the process's seconds (every thread), wall seconds, and by thread kind. */
export function cpuWindow(): { end(): { cpuS: number; wallS: number; byThread: Array<[string, number]> } } {
  const cpu0 = process.cpuUsage();
  const threads0 = cpuByThread();
  const t0 = performance.now();
  return {
    end() {
      const c = process.cpuUsage(cpu0);
      return {
        cpuS: (c.user + c.system) / 1e6,
        wallS: (performance.now() - t0) / 1000,
        byThread: cpuSince(threads0),
      };
    },
  };
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
 * kernel can drop and read back), and of the anonymous memory V8's heap (its committed size).
 */
export function residentMiB(): { anon: number; file: number; heap: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  // V8's heap is part of the anonymous memory; the rest of it is chDB's and Node's allocators.
  return {
    anon: kib('RssAnon') / 1024,
    file: kib('RssFile') / 1024,
    heap: process.memoryUsage().heapTotal / 2 ** 20,
  };
}
