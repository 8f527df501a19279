// What `./ktrail up` is running, for `./ktrail stop` (deploy/local/stop.ts) to find: up's own
// pid and those of the collector and processor it supervises, each with its kernel start
// time so a pid the kernel has since given to another process is never signalled. One file
// per checkout (or per KTRAIL_CACHE), so `stop` only ever touches what this checkout's `up`
// started; the brokers and container runtimes keep their own pid files (kafka.sh, docker.sh,
// containerd.sh) under the same cache directory.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface ProcessRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a reused pid apart. */
  startTime: string;
}

export interface PipelineState {
  up: ProcessRef;
  collector?: ProcessRef;
  processor?: ProcessRef;
}

/** KTRAIL_CACHE, else <repo>/.cache: the same directory the deploy/local scripts use. */
export function cacheDir(root: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.KTRAIL_CACHE ?? join(root, '.cache');
}

export function stateFile(root: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(root, env), 'up', 'pipeline.json');
}

/** The process's start time, or undefined when it does not exist or is a zombie. */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

export function refOf(pid: number): ProcessRef | undefined {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** Whether the process the reference names is still running (same pid, same start time). */
export function alive(ref: ProcessRef | undefined): boolean {
  return ref !== undefined && processStartTime(ref.pid) === ref.startTime;
}

export function readState(file: string): PipelineState | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PipelineState;
  } catch {
    return undefined;
  }
}

/** Whole file or nothing: a temp file renamed over the old one. */
export function writeState(file: string, state: PipelineState): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, file);
}

export function removeState(file: string): void {
  rmSync(file, { force: true });
}

/** SIGTERM, then SIGKILL after `deadlineMs`: 'gone' (already), 'exited' or 'killed'. */
export async function terminate(
  ref: ProcessRef | undefined,
  deadlineMs: number,
): Promise<'gone' | 'exited' | 'killed'> {
  if (!alive(ref) || ref === undefined) return 'gone';
  try {
    process.kill(ref.pid, 'SIGTERM');
  } catch {
    return 'gone';
  }
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (!alive(ref)) return 'exited';
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!alive(ref)) return 'exited';
  try {
    process.kill(ref.pid, 'SIGKILL');
  } catch {
    return 'exited';
  }
  // SIGKILL is not instant for a process in uninterruptible sleep: wait, but not forever.
  const killedBy = Date.now() + 10_000;
  while (alive(ref) && Date.now() < killedBy) await new Promise((r) => setTimeout(r, 50));
  return 'killed';
}
