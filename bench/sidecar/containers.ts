// Docker helpers of the sidecar comparison: the CLI, the workload's script, and a
// container's CPU and memory from its cgroup (v1 cpuacct/memory or v2).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface Truth {
  execs: number;
  conns: number;
  containers: number;
  shortContainers: number;
}

export function docker(args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8', maxBuffer: 256 << 20 }).trim();
}

/**
 * Busybox sh, env M (marker), P (port), D (seconds): waits for /go/start, then loops exec,
 * one loopback TCP connection and a little CPU, counting its own execs and connections.
 */
export function workloadScript(): string {
  return [
    'nc -ll -p "$P" -e true &',
    'while [ ! -e /go/start ]; do sleep 0.1; done',
    'end=$(( $(date +%s) + D )); e=0; c=0',
    'while [ "$(date +%s)" -lt "$end" ]; do',
    '  /bin/sh -c : "$M-exec" && e=$((e+1))',
    '  nc -w 1 127.0.0.1 "$P" </dev/null && c=$((c+1))',
    '  i=0; while [ $i -lt 300 ]; do i=$((i+1)); done',
    'done',
    'echo "truth execs=$e conns=$c"',
  ].join('\n');
}

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** CPU ns used and resident (anon) bytes of a container's cgroup; undefined once it is gone. */
export function cgroupUsage(id: string): { cpuNs: number; memBytes: number } | undefined {
  const v1cpu = read(`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`);
  if (v1cpu !== undefined) {
    const stat = read(`/sys/fs/cgroup/memory/docker/${id}/memory.stat`) ?? '';
    const rss = Number(/^total_rss (\d+)/m.exec(stat)?.[1] ?? 0);
    return { cpuNs: Number(v1cpu), memBytes: rss };
  }
  for (const dir of [`/sys/fs/cgroup/system.slice/docker-${id}.scope`, `/sys/fs/cgroup/docker/${id}`]) {
    if (!existsSync(dir)) continue;
    const usec = Number(/^usage_usec (\d+)/m.exec(read(`${dir}/cpu.stat`) ?? '')?.[1] ?? 0);
    const anon = Number(/^anon (\d+)/m.exec(read(`${dir}/memory.stat`) ?? '')?.[1] ?? 0);
    return { cpuNs: usec * 1000, memBytes: anon };
  }
  return undefined;
}
