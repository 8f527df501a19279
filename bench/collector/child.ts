// The collector as a child process for the benchmarks: the shipped entrypoint (compiled
// JavaScript), its /metrics, and its CPU and RSS from /proc.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));
export const CLK_TCK = 100; // Linux USER_HZ for /proc/<pid>/stat utime/stime

export interface CollectorRun {
  child: ChildProcess;
  port: number;
  stop(): Promise<string>;
}

/** BENCH_CPU_PROF=DIR: each collector child writes a V8 CPU profile (.cpuprofile) there on exit. */
function profileOptions(): Record<string, string> {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return {};
  const prior = process.env.NODE_OPTIONS ? `${process.env.NODE_OPTIONS} ` : '';
  return { NODE_OPTIONS: `${prior}--cpu-prof --cpu-prof-dir=${dir}` };
}

export async function startCollector(args: string[]): Promise<CollectorRun> {
  // The collector as it ships: the image's entrypoint (compiled JavaScript, its environment).
  const child = spawn('sh', [join(repo, 'deploy/docker/entrypoint.sh'), 'collector', ...args], {
    cwd: repo,
    env: { ...process.env, KTRAIL_LOG_LEVEL: 'info', ...profileOptions() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`collector did not start: ${stderr.slice(-2000)}`)),
      120_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+),"msg":"metrics on/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
        out = '';
      } else if (out.length > 1_000_000) out = out.slice(-10_000);
    });
    child.once('exit', (code) => reject(new Error(`collector exited ${code}: ${stderr.slice(-2000)}`)));
  });
  child.stdout?.resume();
  return {
    child,
    port,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve(stderr));
        child.kill('SIGTERM');
      }),
  };
}

export async function metric(port: number, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export function procStat(pid: number): { cpuTicks: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime, stime
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuTicks, rssBytes: rssKb * 1024 };
}
