// `./ktrail up`: the whole pipeline on this machine, on the embedded defaults.
//   Kafka broker (KRaft, loopback) -> topics -> dockerd (so containers can be run and named)
//   -> processor (embedded chDB at data/chdb, query endpoint) -> collector (eBPF).
// Prints where to look, then waits. The collector and the processor run supervised
// (supervise.ts): one that crashes is restarted with backoff while the other keeps going, so
// a crashed processor only delays writes (Kafka holds the events) and never stops capture.
// Ctrl-C, or SIGTERM (what `./ktrail stop` sends, deploy/local/stop.ts), stops in order: the
// collector (it flushes; its final stats record carries the shutdown's drops), the processor
// (it writes and commits what the collector sent, then leaves its group), then the broker and
// dockerd if this `up` started them. The pids are in <cache>/up/pipeline.json for `stop`.
//
// Kafka: one broker by default; `--brokers 3` (or KTRAIL_UP_BROKERS=3) starts a three-node
// KRaft cluster instead, whose topics get three copies and min.insync.replicas 2 (docs/kafka.md).
//
// Ports, so two checkouts can run side by side (environment, default):
//   KTRAIL_KAFKA_PORT (19092): the broker; the children get it as KTRAIL_KAFKA_BROKERS
//     unless that is set (then the broker started here is not the one they use)
//   KTRAIL_KAFKA3_PORT (29092): with --brokers 3, node n listens on it + 2(n-1)
//   KTRAIL_PROCESSOR_QUERY_PORT (8124): SQL endpoint; ./ktrail query and report read it too
//   KTRAIL_UP_COLLECTOR_HTTP_PORT (9464), KTRAIL_UP_PROCESSOR_HTTP_PORT (9465): /metrics, /readyz
//   KTRAIL_CACHE (<repo>/.cache): pid files and logs of everything started here
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FIRST_QUESTIONS } from '../clickhouse/queries.js';
import {
  alive,
  cacheDir,
  type PipelineState,
  readState,
  refOf,
  removeState,
  stateFile,
  writeState,
} from './pipeline-state.js';
import { type Supervisor, supervise } from './supervise.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values: args } = parseArgs({
  options: {
    'chdb-path': { type: 'string', default: 'data/chdb' },
    'no-docker': { type: 'boolean', default: false },
    config: { type: 'string' },
    brokers: { type: 'string', default: process.env.KTRAIL_UP_BROKERS ?? '1' },
  },
});
if (args.brokers !== '1' && args.brokers !== '3') {
  console.error(`[up] --brokers (KTRAIL_UP_BROKERS) must be 1 or 3, got '${args.brokers}'`);
  process.exit(2);
}
const CLUSTER = ['--brokers', args.brokers];

const envPort = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    console.error(`[up] ${name}=${process.env[name]} is not a port`);
    process.exit(2);
  }
  return value;
};
const KAFKA_PORT = envPort('KTRAIL_KAFKA_PORT', 19092);
const QUERY_PORT = envPort('KTRAIL_PROCESSOR_QUERY_PORT', 8124);
const COLLECTOR_HTTP = envPort('KTRAIL_UP_COLLECTOR_HTTP_PORT', 9464);
const PROCESSOR_HTTP = envPort('KTRAIL_UP_PROCESSOR_HTTP_PORT', 9465);
// SIGTERM -> exit: the collector's shutdown deadline (10 s) plus its final stats (3 s); the
// processor's catch-up (10 s) and flush within its own --stop-timeout-ms (30 s).
const COLLECTOR_STOP_MS = 30_000;
const PROCESSOR_STOP_MS = 45_000;
const say = (msg: string) => console.log(`[up] ${msg}`);

const STATE = stateFile(root);
const previous = readState(STATE);
if (previous !== undefined && alive(previous.up) && previous.up.pid !== process.pid) {
  say(`already running in this checkout (up pid ${previous.up.pid}); ./ktrail stop stops it`);
  process.exit(1);
}
const state: PipelineState = { up: refOf(process.pid) ?? { pid: process.pid, startTime: '' } };
writeState(STATE, state);

function run(name: string, ...rest: string[]): string {
  return execFileSync('bash', [`${root}/deploy/local/${name}`, ...rest], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

const startedHere: Array<() => void> = [];

function undoStarted(): void {
  for (const undo of startedHere.reverse()) {
    try {
      undo();
    } catch {
      // keep stopping the rest; each script said why on stderr
    }
  }
  startedHere.length = 0;
}

/** Runs a deploy/local script; on failure (it said why on stderr) stops what `up` started and exits 1. */
function script(name: string, ...rest: string[]): string {
  try {
    return run(name, ...rest);
  } catch {
    say(`${name} ${rest.join(' ')} failed (its message is above); stopping what up started`);
    undoStarted();
    removeState(STATE);
    process.exit(1);
  }
}

function running(name: string, ...rest: string[]): boolean {
  try {
    run(name, ...rest);
    return true;
  } catch {
    return false;
  }
}

say(
  args.brokers === '1'
    ? `Kafka: starting the local broker on 127.0.0.1:${KAFKA_PORT} (deploy/local/kafka.sh)`
    : 'Kafka: starting a three-node KRaft cluster (deploy/local/kafka.sh --brokers 3)',
);
const kafkaWasUp = running('kafka.sh', 'status', ...CLUSTER);
process.stdout.write(script('kafka.sh', 'start', ...CLUSTER));
if (!kafkaWasUp) startedHere.push(() => process.stdout.write(run('kafka.sh', 'stop', ...CLUSTER)));
const BROKERS = process.env.KTRAIL_KAFKA_BROKERS ?? script('kafka.sh', 'bootstrap', ...CLUSTER).trim();
process.stdout.write(script('kafka.sh', 'topics', ...CLUSTER));

if (!args['no-docker']) {
  say('Docker: starting dockerd so containers get names and images (deploy/local/docker.sh)');
  const dockerWasUp = running('docker.sh', 'status');
  process.stdout.write(script('docker.sh', 'all'));
  if (!dockerWasUp) startedHere.push(() => process.stdout.write(run('docker.sh', 'stop')));
}

const chdbPath = args['chdb-path'];
mkdirSync(chdbPath, { recursive: true });
const common = args.config ? ['--config', args.config] : [];
const childEnv: NodeJS.ProcessEnv = {
  ...process.env,
  KTRAIL_KAFKA_BROKERS: BROKERS,
  // The collector's sequence numbers and unsent stats: per checkout, like everything else here.
  KTRAIL_STATE_DIR: process.env.KTRAIL_STATE_DIR ?? join(cacheDir(root), 'collector-state'),
};

function launch(name: 'collector' | 'processor', cliArgs: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', `${root}/${name}/src/cli.ts`, ...common, ...cliArgs], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'inherit', 'inherit'],
    // Its own process group: a Ctrl-C in the terminal reaches `up` alone, which stops the
    // children in order (collector first) instead of all at once.
    detached: true,
  });
}

function supervised(name: 'collector' | 'processor', cliArgs: string[], stopDeadlineMs: number): Supervisor {
  return supervise({
    name,
    start: () => launch(name, cliArgs),
    stopDeadlineMs,
    say,
    onStart(child) {
      const ref = child.pid === undefined ? undefined : refOf(child.pid);
      if (ref !== undefined) state[name] = ref;
      writeState(STATE, state);
    },
    onFatal: () => void stop(1),
  });
}

async function waitReady(port: number, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} not ready after ${timeoutMs / 1000}s`);
}

let stopping = false;
say(`processor: embedded chDB at ${chdbPath}, query endpoint on 127.0.0.1:${QUERY_PORT}`);
const processor = supervised(
  'processor',
  [
    '--chdb-path',
    chdbPath,
    '--set',
    `http.port=${PROCESSOR_HTTP}`,
    '--set',
    `processor.queryPort=${QUERY_PORT}`,
  ],
  PROCESSOR_STOP_MS,
);
if (!existsSync(`${root}/bpf/.output`)) say('WARNING: bpf/.output missing — run deploy/local/install.sh');
say('collector: eBPF source (bpf/.output), Docker metadata');
const collector = supervised('collector', ['--set', `http.port=${COLLECTOR_HTTP}`], COLLECTOR_STOP_MS);

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Collector first: it flushes into Kafka while the processor still runs to write it.
  const results = { collector: await collector.stop(), processor: await processor.stop() };
  removeState(STATE);
  undoStarted();
  const killed = Object.entries(results).filter(([, how]) => how === 'killed');
  say(
    killed.length === 0
      ? 'stopped'
      : `stopped; ${killed.map(([n]) => n).join(' and ')} needed SIGKILL (see above)`,
  );
  process.exit(killed.length === 0 ? code : 1);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
// A closed terminal: the children are in their own process group and would outlive up.
process.on('SIGHUP', () => void stop(0));

try {
  await waitReady(PROCESSOR_HTTP, 'processor');
  await waitReady(COLLECTOR_HTTP, 'collector');
} catch (err) {
  say(`ERROR: ${(err as Error).message}`);
  await stop(1);
}
const questions = FIRST_QUESTIONS.map((q) => `  # ${q.question}\n  ./ktrail query "${q.sql}"`).join('\n');
console.log(`
ktrail is running on this machine. First questions:
${questions}
  # a capacity report (tables and charts) of the last hour
  ./ktrail report --from 1h --out report.html

  SQL:        any ClickHouse HTTP client: http://127.0.0.1:${QUERY_PORT}/ with the token in data/query-token
  metrics:    collector http://127.0.0.1:${COLLECTOR_HTTP}/metrics   processor http://127.0.0.1:${PROCESSOR_HTTP}/metrics
  try:        docker run --rm --network none --name hello ktrail/busybox:latest sh -c 'echo hi; sleep 1'
  Kafka:      ${BROKERS} (topics ktrail.*)
Ctrl-C or ./ktrail stop stops the pipeline cleanly; a crashed collector or processor is restarted.`);
