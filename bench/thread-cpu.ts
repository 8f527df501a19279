// CPU time of a process's threads, from the scheduler: the first field of
// /proc/PID/task/TID/schedstat (sum_exec_runtime, ns). utime and stime in .../stat count the
// same time in 10 ms ticks, too coarse for a process at 1% of a core (±1 tick over 15 s is
// ±0.07%). A thread that ends within a window takes its time along.
import { readdirSync, readFileSync } from 'node:fs';

/** Seconds of CPU per thread group: `groupOf(name, tid)` names it (default: the thread's name). */
export function threadCpuSeconds(
  pid: number | 'self',
  groupOf: (name: string, tid: string) => string = (name) => name,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let name: string;
    let ns: number;
    try {
      name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const group = groupOf(name, tid);
    out.set(group, (out.get(group) ?? 0) + ns / 1e9);
  }
  return out;
}
