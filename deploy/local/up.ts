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
// Output (up-view.ts): on a terminal, steps with progress and then a status block refreshed
// every 2 s (up-status.ts), full logs in <cache>/logs/; otherwise, or with --json /
// --log-format json, the JSON log lines of the processes as they come.
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
import { type ChildProcess, execFileSync, type StdioOptions, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type KtrailConfig, loadConfig } from '../../common/config.js';
import { runAs } from '../../common/run-as.js';
import { queryTokenFile } from '../../processor/src/query-endpoint.js';
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
import { startStatus } from './up-status.js';
import { humanView, jsonView, outputMode, type UpView } from './up-view.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** A path as a person in the checkout would type it: relative inside it, absolute outside. */
const shown = (path: string) => {
  const r = relative(root, path);
  return r === '' || r.startsWith('..') ? path : r;
};
const { values: args } = parseArgs({
  options: {
    'chdb-path': { type: 'string', default: 'data/chdb' },
    'no-docker': { type: 'boolean', default: false },
    config: { type: 'string' },
    json: { type: 'boolean', default: false },
    'log-format': { type: 'string' },
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

let mode: ReturnType<typeof outputMode>;
try {
  mode = outputMode(
    { json: args.json, logFormat: args['log-format'] },
    process.env,
    process.stdout.isTTY === true,
  );
} catch (err) {
  console.error(`[up] ${(err as Error).message}`);
  process.exit(2);
}
const STATE = stateFile(root);
const previous = readState(STATE);
if (previous !== undefined && alive(previous.up) && previous.up.pid !== process.pid) {
  // Before the view: it would start new log files under the running up's processes.
  console.error(`[up] already running in this checkout (up pid ${previous.up.pid}); ./ktrail stop stops it`);
  process.exit(1);
}
const logDir = join(cacheDir(root), 'logs');
mkdirSync(logDir, { recursive: true });
const view: UpView =
  mode === 'human'
    ? humanView({ out: process.stdout, logDir, shownLogDir: shown(logDir), steps: args['no-docker'] ? 4 : 5 })
    : jsonView();
const say = (msg: string, level?: 'info' | 'warn' | 'error') => view.say(msg, level);
const state: PipelineState = { up: refOf(process.pid) ?? { pid: process.pid, startTime: '' } };
writeState(STATE, state);

/** A deploy/local script; its output goes where the view says (the terminal, or up.log). */
function run(
  name: string,
  rest: string[],
  stdio: StdioOptions = ['ignore', view.stdio('up'), view.stdio('up')],
) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [`${root}/deploy/local/${name}`, ...rest], { cwd: root, stdio });
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${name} ${rest.join(' ')} exited with ${code ?? signal}`)),
    );
  });
}

const startedHere: Array<() => Promise<void>> = [];

async function undoStarted(): Promise<void> {
  for (const undo of startedHere.reverse()) {
    try {
      await undo();
    } catch {
      // keep stopping the rest; each script said why in its output
    }
  }
  startedHere.length = 0;
}

/** A start step running a script; on failure (it said why) stops what `up` started and exits 1. */
async function scriptStep(label: string, said: string, name: string, ...rest: string[]): Promise<void> {
  try {
    await view.step(label, said, () => run(name, rest));
  } catch {
    say(`${name} ${rest.join(' ')} failed (its message is above); stopping what up started`, 'error');
    await undoStarted();
    removeState(STATE);
    process.exit(1);
  }
}

const running = (name: string, ...rest: string[]) =>
  run(name, rest, 'ignore').then(
    () => true,
    () => false,
  );

const kafkaWasUp = await running('kafka.sh', 'status', ...CLUSTER);
await scriptStep(
  args.brokers === '1' ? `Kafka broker on 127.0.0.1:${KAFKA_PORT}` : 'Kafka: three-node KRaft cluster',
  args.brokers === '1'
    ? `Kafka: starting the local broker on 127.0.0.1:${KAFKA_PORT} (deploy/local/kafka.sh)`
    : 'Kafka: starting a three-node KRaft cluster (deploy/local/kafka.sh --brokers 3)',
  'kafka.sh',
  'start',
  ...CLUSTER,
);
if (!kafkaWasUp) startedHere.push(() => run('kafka.sh', ['stop', ...CLUSTER]));
const BROKERS =
  process.env.KTRAIL_KAFKA_BROKERS ??
  execFileSync('bash', [`${root}/deploy/local/kafka.sh`, 'bootstrap', ...CLUSTER], {
    cwd: root,
    encoding: 'utf8',
  }).trim();
await scriptStep('Kafka topics', 'Kafka: ensuring the ktrail topics', 'kafka.sh', 'topics', ...CLUSTER);

if (!args['no-docker']) {
  const dockerWasUp = await running('docker.sh', 'status');
  await scriptStep(
    'dockerd and the ktrail/busybox image',
    'Docker: starting dockerd so containers get names and images (deploy/local/docker.sh)',
    'docker.sh',
    'all',
  );
  if (!dockerWasUp) startedHere.push(() => run('docker.sh', ['stop']));
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
if (view.mode === 'human') {
  // Their output goes to log files: plain text, whatever a library thinks of the terminal.
  childEnv.NO_COLOR = '1';
  delete childEnv.FORCE_COLOR;
}
// The configuration the children will validate (they say what is wrong with it): here only for
// the query token's path and, in the status block, the consumer group's lag.
let config: KtrailConfig | undefined;
try {
  config = loadConfig({ file: args.config, env: childEnv, overrides: [`clickhouse.chdbPath=${chdbPath}`] });
} catch {
  config = undefined;
}
const tokenFile = config === undefined ? join(chdbPath, '..', 'query-token') : queryTokenFile(config);

function launch(name: 'collector' | 'processor', cliArgs: string[]): ChildProcess {
  const run = runAs(name, `${root}/${name}/src/cli.ts`, [...common, ...cliArgs], childEnv);
  return spawn(run.command, run.args, {
    cwd: root,
    env: run.env,
    stdio: ['ignore', view.stdio(name), view.stdio(name)],
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
let status: { stop(): Promise<void> } | undefined;
const logPoll = setInterval(() => view.pollLogs(), 1_000);
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
if (!existsSync(`${root}/bpf/.output`)) say('bpf/.output missing — run deploy/local/install.sh', 'warn');
const collector = supervised('collector', ['--set', `http.port=${COLLECTOR_HTTP}`], COLLECTOR_STOP_MS);

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await status?.stop();
  view.freeze();
  // Collector first: it flushes into Kafka while the processor still runs to write it.
  const collectorStopped = await collector.stop();
  view.pollLogs(); // its final line, before the processor's stop
  const results = { collector: collectorStopped, processor: await processor.stop() };
  removeState(STATE);
  await undoStarted();
  clearInterval(logPoll);
  view.pollLogs();
  const killed = Object.entries(results).filter(([, how]) => how === 'killed');
  say(
    killed.length === 0
      ? 'stopped'
      : `stopped; ${killed.map(([n]) => n).join(' and ')} needed SIGKILL (see above)`,
    killed.length === 0 ? 'info' : 'warn',
  );
  process.exit(killed.length === 0 ? code : 1);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
// A closed terminal: the children are in their own process group and would outlive up.
process.on('SIGHUP', () => void stop(0));

try {
  await view.step(
    `processor: chDB at ${chdbPath}`,
    `processor: embedded chDB at ${chdbPath}, query endpoint on 127.0.0.1:${QUERY_PORT}`,
    () => waitReady(PROCESSOR_HTTP, 'processor'),
    () => 'ready',
  );
  await view.step(
    'collector: eBPF and container metadata',
    'collector: eBPF source (bpf/.output), Docker metadata',
    () => waitReady(COLLECTOR_HTTP, 'collector'),
    () => 'ready',
  );
} catch (err) {
  say((err as Error).message, 'error');
  await stop(1);
}
const questions = FIRST_QUESTIONS.map((q) => `  # ${q.question}\n  ./ktrail query "${q.sql}"`).join('\n');
if (!stopping) {
  view.print(`
ktrail is running on this machine. First questions:
${questions}
  # a capacity report (tables and charts) of the last hour
  ./ktrail report --from 1h --out report.html

  SQL:        any ClickHouse HTTP client: http://127.0.0.1:${QUERY_PORT}/ with the token in ${shown(tokenFile)}
  metrics:    collector http://127.0.0.1:${COLLECTOR_HTTP}/metrics   processor http://127.0.0.1:${PROCESSOR_HTTP}/metrics
  try:        docker run --rm --network none --name hello ktrail/busybox:latest sh -c 'echo hi; sleep 1'
  Kafka:      ${BROKERS} (topics ktrail.*)
Ctrl-C or ./ktrail stop stops the pipeline cleanly; a crashed collector or processor is restarted.`);
  if (view.mode === 'human')
    status = startStatus({
      view,
      config,
      node: config?.node ?? '?',
      ports: { collector: COLLECTOR_HTTP, processor: PROCESSOR_HTTP, query: QUERY_PORT },
      tokenFile: shown(tokenFile),
      logs: `${shown(logDir)}/ (up.log, collector.log, processor.log)`,
      supervisors: { collector, processor },
    });
}
