// One eBPF collector per node against one agent per container, on the same workload: N busy
// busybox containers (N = 10, 50) that exec, connect over TCP and burn CPU, counting their
// own execs and connections (the ground truth), plus short-lived containers that live for one
// exec. Each N runs twice: once watched by the ktrail collector (real eBPF, to the local
// broker), once by a sidecar per container (agent.c: the container's PID and network
// namespaces, /proc and cgroup files polled every second). Reports the monitoring's CPU and
// memory and what each saw against the truth; writes the "Sidecar comparison" section of
// docs/benchmarks.md.
//
//   npm run bench -- sidecar      (or: npx tsx bench/sidecar/run.ts [--seconds N] [--n 10,50])
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { enableBpfStats } from '../../test/support/bpf-stats.js';
import { ensureDocker } from '../../test/support/docker.js';
import { deleteTopics, ensureKafka } from '../../test/support/kafka.js';
import { CLK_TCK, metric, procStat, startCollector } from '../collector/child.js';
import { readTopic } from '../collector/kafka-read.js';
import { table, writeSection } from '../report.js';
import { cgroupUsage, docker, type Truth, workloadScript } from './containers.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SECONDS = Number(arg('--seconds') ?? 20);
const COUNTS = (arg('--n') ?? '10,50').split(',').map(Number);
const SHORT_CONTAINERS = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.log(`[bench sidecar] ${msg}`);

interface Seen {
  execs: number;
  conns: number;
  shortCaught: number;
}
interface Phase {
  mode: 'ktrail' | 'sidecar';
  n: number;
  truth: Truth;
  seen: Seen;
  cpuCores: number;
  memBytes: number;
  kernelCores?: number;
}

interface Setup {
  image: string;
  work: string;
  agent: string;
  brokers: string[];
}

/** Starts n workload containers waiting for the go file; returns their ids. */
function startWorkloads(s: Setup, n: number, marker: string, port: number, go: string): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++)
    ids.push(
      docker([
        'run',
        '-d',
        '--name',
        `${marker}-w${i}`,
        '-v',
        `${go}:/go:ro`,
        '-e',
        `M=${marker}`,
        '-e',
        `P=${port}`,
        '-e',
        `D=${SECONDS}`,
        s.image,
        'sh',
        '-c',
        workloadScript(),
      ]),
    );
  return ids;
}

/** Short-lived containers, one exec each; `attach` may start something right after each. */
async function runShortContainers(s: Setup, marker: string, attach?: (id: string) => void): Promise<void> {
  for (let k = 0; k < SHORT_CONTAINERS; k++) {
    const id = docker(['run', '-d', s.image, '/bin/sh', '-c', 'sleep 0.2', `${marker}-short-${k}`]);
    attach?.(id);
    await sleep((SECONDS * 1000) / (SHORT_CONTAINERS + 1));
  }
}

/** Waits for the workloads to finish and reads their own counts from their logs. */
function collectTruth(ids: string[]): Truth {
  const truth: Truth = { execs: 0, conns: 0, containers: ids.length, shortContainers: SHORT_CONTAINERS };
  docker(['wait', ...ids]);
  for (const id of ids) {
    const out = docker(['logs', id]);
    const m = /truth execs=(\d+) conns=(\d+)/.exec(out);
    if (!m) throw new Error(`workload ${id} printed no counts: ${out.slice(-300)}`);
    truth.execs += Number(m[1]);
    truth.conns += Number(m[2]);
  }
  return truth;
}

/** Samples the summed CPU (ns) and memory of a set of containers every second until done. */
function sampleContainers(ids: () => string[]) {
  const cpu = new Map<string, number>();
  let memMax = 0;
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      let mem = 0;
      for (const id of ids()) {
        const u = cgroupUsage(id);
        if (!u) continue;
        cpu.set(id, u.cpuNs);
        mem += u.memBytes;
      }
      memMax = Math.max(memMax, mem);
      await sleep(1_000);
    }
  })();
  return {
    async done() {
      stop = true;
      await loop;
      let ns = 0;
      for (const v of cpu.values()) ns += v;
      return { cpuNs: ns, memMax };
    },
  };
}

async function ktrailPhase(s: Setup, n: number): Promise<Phase> {
  const marker = `kts${Date.now().toString(36)}`;
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const go = join(s.work, marker);
  mkdirSync(go);
  const prefix = `${marker}.`;
  const hold = await enableBpfStats();
  const run = await startCollector([
    '--node',
    'bench-sidecar',
    '--set',
    `kafka.brokers=${s.brokers.join(',')}`,
    '--set',
    `kafka.topicPrefix=${prefix}`,
    '--set',
    'kafka.partitions=1',
    '--set',
    'http.port=0',
    '--set',
    'collector.bpfObjectDir=bpf/.output',
  ]);
  const ids = startWorkloads(s, n, marker, port, go);
  await sleep(2_000);
  const pid = run.child.pid as number;
  const k0 = await metric(run.port, 'ktrail_collector_bpf_program_run_seconds_total');
  const s0 = procStat(pid);
  const t0 = performance.now();
  let rssMax = 0;
  const rss = setInterval(() => {
    rssMax = Math.max(rssMax, procStat(pid).rssBytes);
  }, 500);
  writeFileSync(join(go, 'start'), '');
  await runShortContainers(s, marker);
  const truth = collectTruth(ids);
  const secs = (performance.now() - t0) / 1000;
  clearInterval(rss);
  const s1 = procStat(pid);
  const k1 = await metric(run.port, 'ktrail_collector_bpf_program_run_seconds_total');
  await sleep(2_000); // the last batches out
  await run.stop();
  await hold.release();
  const seen = await countKtrail(s.brokers, `${prefix}events`, marker, port);
  docker(['rm', '-f', ...ids]);
  await deleteTopics({ brokers: s.brokers }, [`${prefix}events`, `${prefix}containers`, `${prefix}stats`]);
  return {
    mode: 'ktrail',
    n,
    truth,
    seen,
    cpuCores: (s1.cpuTicks - s0.cpuTicks) / CLK_TCK / secs,
    memBytes: rssMax,
    kernelCores: (k1 - k0) / secs,
  };
}

/** What the collector delivered about this run: marked execs, connections to the port. */
async function countKtrail(brokers: string[], topic: string, marker: string, port: number): Promise<Seen> {
  const resolver = createSchemaResolver();
  const seen: Seen = { execs: 0, conns: 0, shortCaught: 0 };
  const short = new Set<string>();
  for (const m of await readTopic(brokers, topic, 120_000))
    for (const e of (resolver.decodeAs('EventBatch', m.value) as EventBatch).events) {
      if (e.kind === 'proc_exec') {
        const args = e.args.join(' ');
        if (args.includes(`${marker}-exec`)) seen.execs++;
        const k = new RegExp(`${marker}-short-(\\d+)`).exec(args)?.[1];
        if (k !== undefined) short.add(k);
      } else if (e.kind === 'tcp_connect' && e.dport === port) seen.conns++;
    }
  seen.shortCaught = short.size;
  return seen;
}

async function sidecarPhase(s: Setup, n: number): Promise<Phase> {
  const marker = `kts${Date.now().toString(36)}`;
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const go = join(s.work, marker);
  mkdirSync(go);
  const ids = startWorkloads(s, n, marker, port, go);
  const agentArgs = (target: string) => [
    'run',
    '-d',
    `--pid=container:${target}`,
    `--network=container:${target}`,
    '-v',
    `${s.agent}:/agent:ro`,
    s.image,
    '/agent',
    `${marker}-`,
    String(port),
  ];
  const agents = ids.map((id) => docker(agentArgs(id)));
  const shortAgents: string[] = [];
  await sleep(2_000);
  const sampler = sampleContainers(() => [...agents, ...shortAgents]);
  const t0 = performance.now();
  writeFileSync(join(go, 'start'), '');
  // A short-lived container gets its agent as soon as the runtime allows: right after it started.
  await runShortContainers(s, marker, (id) => {
    const r = spawnSync('docker', agentArgs(id), { encoding: 'utf8' });
    if (r.status === 0) shortAgents.push(r.stdout.trim());
  });
  const truth = collectTruth(ids);
  const secs = (performance.now() - t0) / 1000;
  const usage = await sampler.done();
  const seen: Seen = { execs: 0, conns: 0, shortCaught: 0 };
  for (const a of [...agents, ...shortAgents]) {
    const out = spawnSync('docker', ['logs', a], { encoding: 'utf8' }).stdout ?? '';
    const pids = new Set<string>();
    const conns = new Set<string>();
    for (const line of out.split('\n')) {
      if (line.startsWith('P ')) pids.add(line);
      else if (line.startsWith('T ')) conns.add(line);
    }
    if (shortAgents.includes(a)) seen.shortCaught += pids.size > 0 ? 1 : 0;
    else {
      seen.execs += pids.size;
      seen.conns += conns.size;
    }
  }
  docker(['rm', '-f', ...agents, ...shortAgents, ...ids]);
  return { mode: 'sidecar', n, truth, seen, cpuCores: usage.cpuNs / 1e9 / secs, memBytes: usage.memMax };
}

const pct = (a: number, b: number) => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : '–');
const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 2 : 0)} MiB`;

function report(phases: Phase[]): void {
  const rows = phases.map((p) => [
    p.n,
    p.mode === 'ktrail' ? 'one ktrail collector' : `${p.n} sidecar agents`,
    p.cpuCores.toFixed(3),
    p.kernelCores === undefined ? '–' : p.kernelCores.toFixed(3),
    mib(p.memBytes),
    `${p.seen.execs} / ${p.truth.execs} (${pct(p.seen.execs, p.truth.execs)})`,
    `${p.seen.conns} / ${p.truth.conns} (${pct(p.seen.conns, p.truth.conns)})`,
    `${p.seen.shortCaught} / ${p.truth.shortContainers}`,
  ]);
  const body = `${table(
    [
      'containers',
      'watched by',
      'monitoring CPU (cores)',
      'BPF programs (cores)',
      'monitoring memory',
      'execs seen / done',
      'TCP connections seen / made',
      'short-lived containers caught',
    ],
    rows,
  )}

Method: each of N busybox containers (no network but loopback) waits for a start file, then
for ${SECONDS} s loops: exec \`/bin/sh -c : <marker>-exec\` (a process living ~1 ms), one TCP
connection to a listener in the same container (\`nc\`), and a short CPU loop; it counts its
own execs and connections and prints them (the truth). During the same window the bench
starts ${SHORT_CONTAINERS} short-lived containers, each one exec of \`sleep 0.2\`. The ktrail
run watches with one collector (the shipped entrypoint, all programs, to the local broker)
and counts what reached Kafka: \`proc_exec\` events carrying the marker, \`tcp_connect\` to the
run's port, short containers whose exec arrived. Its CPU is the process's utime+stime over the
window, its memory the peak RSS, and "BPF programs" the kernel time of its programs
(bpf stats, \`ktrail_collector_bpf_program_run_seconds_total\`) — on a shared machine it
watches everything on the node, not only the benchmark's containers. The sidecar run starts
one agent per container (\`bench/sidecar/agent.c\`, static C, in the container's PID and network
namespaces) that every second reads each process's cmdline and stat, the TCP tables and the
cgroup's CPU and memory files; it "sees" a marked process alive at a poll and a connection
present in the TCP table at a poll (TIME_WAIT included). A short-lived container gets its
agent right after \`docker run -d\` returns. Sidecar CPU and memory are the sum of the agents'
container cgroups (cpuacct, memory), sampled every second; their runtime shims are not
counted. One run per row, back to back on a shared 2-core machine: treat single digits of
percent as noise.`;
  writeSection('Sidecar comparison', 'npm run bench -- sidecar', body);
  console.log(body);
}

async function main(): Promise<void> {
  execFileSync('npm', ['run', '--silent', 'build:js'], { cwd: repo, stdio: 'inherit' });
  const { brokers } = await ensureKafka();
  const { image } = await ensureDocker();
  const work = mkdtempSync(join(tmpdir(), 'ktrail-bench-sidecar-'));
  const agent = join(work, 'agent');
  execFileSync('gcc', ['-O2', '-static', '-o', agent, join(repo, 'bench/sidecar/agent.c')]);
  const s: Setup = { image, work, agent, brokers };
  const phases: Phase[] = [];
  try {
    for (const n of COUNTS) {
      log(`N=${n}: ktrail`);
      phases.push(await ktrailPhase(s, n));
      log(JSON.stringify(phases.at(-1)));
      log(`N=${n}: sidecars`);
      phases.push(await sidecarPhase(s, n));
      log(JSON.stringify(phases.at(-1)));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  report(phases);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
