// A memory-limited cgroup for one child process, as a pod's limit would be: the child is
// started inside it, and the test reads back whether the kernel OOM-killed anything and
// how high usage went.
//
// cgroup v2 when the v2 hierarchy has the memory controller (`memory.max`, `memory.events`
// oom_kill, `memory.peak`). On this fleet it has none: v2 is mounted at /sys/fs/cgroup/unified
// with only hugetlb, and memory is a v1 controller (DESIGN.md) that cannot be moved to v2
// while other processes use it. There the same limit is a v1 memory cgroup
// (`memory.limit_in_bytes`, `memory.oom_control` oom_kill, `memory.max_usage_in_bytes`):
// what the kernel enforces is the same, and it is what the process's budget rule reads
// (common/cgroup-memory.ts). No swap is configured on these machines; swappiness 0 anyway.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { cgroupV2Root, inCgroups } from './bpf.js';

export interface MemoryCgroup {
  dir: string;
  version: 1 | 2;
  limitBytes: number;
  /** Starts `command args` inside the cgroup (the shell moves itself in, then execs). */
  spawn(command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** OOM kills the kernel made in this cgroup. */
  oomKills(): number;
  /** Times usage reached the limit (the kernel reclaimed to stay under it). */
  limitHits(): number;
  /** Highest usage the kernel saw (includes page cache and kernel memory charged here). */
  peakBytes(): number;
  usageBytes(): number;
  /** Removes the cgroup once its processes are gone (waits up to 5 s). */
  remove(): Promise<void>;
}

const V1_MEMORY = '/sys/fs/cgroup/memory';

/** Undefined when a memory-limited cgroup can be made here, else why not. */
export function missingMemoryCgroup(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (creates a memory cgroup)';
  const v2 = cgroupV2Root;
  if (readOr(join(v2, 'cgroup.controllers')).split(/\s+/).includes('memory')) return undefined;
  if (existsSync(join(V1_MEMORY, 'memory.limit_in_bytes'))) return undefined;
  return 'no memory controller in cgroup v2 or v1';
}

export function createMemoryCgroup(tag: string, limitBytes: number): MemoryCgroup {
  const name = `ktrail-test-${tag}-${process.pid}-${Date.now().toString(36)}`;
  const v2 = cgroupV2Root;
  const version: 1 | 2 = readOr(join(v2, 'cgroup.controllers')).split(/\s+/).includes('memory') ? 2 : 1;
  const dir = join(version === 2 ? v2 : V1_MEMORY, name);
  if (version === 2) {
    // The root's children get the controller only when the root delegates it.
    if (!readOr(join(v2, 'cgroup.subtree_control')).includes('memory'))
      writeFileSync(join(v2, 'cgroup.subtree_control'), '+memory');
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.max'), String(limitBytes));
    if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
  } else {
    mkdirSync(dir);
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    try {
      writeFileSync(join(dir, 'memory.swappiness'), '0');
    } catch {}
  }
  const file = (v2name: string, v1name: string) => join(dir, version === 2 ? v2name : v1name);
  return {
    dir,
    version,
    limitBytes,
    spawn(command, args, options = {}) {
      const quoted = [command, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      return spawn('/bin/sh', inCgroups([join(dir, 'cgroup.procs')], quoted), options);
    },
    oomKills() {
      const text = readOr(file('memory.events', 'memory.oom_control'));
      return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
    },
    limitHits() {
      if (version === 1) return Number(readOr(join(dir, 'memory.failcnt')).trim() || 0);
      return Number(/^max (\d+)$/m.exec(readOr(join(dir, 'memory.events')))?.[1] ?? 0);
    },
    peakBytes() {
      return Number(readOr(file('memory.peak', 'memory.max_usage_in_bytes')).trim() || 0);
    },
    usageBytes() {
      return Number(readOr(file('memory.current', 'memory.usage_in_bytes')).trim() || 0);
    },
    async remove() {
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(dir);
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}

/** VmRSS and VmHWM (peak RSS) of a process, in bytes; undefined once it is gone. */
export function processRss(pid: number): { rss: number; hwm: number } | undefined {
  const status = readOr(`/proc/${pid}/status`);
  const kb = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  const rss = kb('VmRSS');
  return Number.isNaN(rss) ? undefined : { rss: rss * 1024, hwm: kb('VmHWM') * 1024 };
}

/** `limits.memory` of a workload in deploy/k8s ("256Mi", "1Gi") in bytes. */
export function manifestMemoryLimit(file: string): number {
  const workload = parseAllDocuments(readFileSync(file, 'utf8'))
    .map(
      (d) =>
        d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: unknown[] } } } } | null,
    )
    .find((d) => d?.kind === 'DaemonSet' || d?.kind === 'Deployment');
  const container = workload?.spec?.template?.spec?.containers?.[0] as
    | { resources?: { limits?: { memory?: string } } }
    | undefined;
  const m = /^(\d+)(Mi|Gi)$/.exec(String(container?.resources?.limits?.memory));
  if (m === null) throw new Error(`no limits.memory in ${file}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 ** 3 : 1024 ** 2);
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
