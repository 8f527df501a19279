// `./ktrail up`: the whole pipeline on this machine, on the embedded defaults.
//   Kafka broker (KRaft, loopback) -> topics -> dockerd (so containers can be run and named)
//   -> processor (embedded chDB at data/chdb, query endpoint) -> collector (eBPF).
// Prints where to look, then waits. Ctrl-C (or SIGTERM) stops the collector first (it
// flushes what it holds), then the processor (it flushes, commits), then what `up` started.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values: args } = parseArgs({
  options: {
    'chdb-path': { type: 'string', default: 'data/chdb' },
    'no-docker': { type: 'boolean', default: false },
    config: { type: 'string' },
  },
});

const QUERY_PORT = Number(process.env.KTRAIL_PROCESSOR_QUERY_PORT ?? 8124);
const COLLECTOR_HTTP = 9464;
const PROCESSOR_HTTP = 9465;
const say = (msg: string) => console.log(`[up] ${msg}`);

function run(name: string, ...rest: string[]): string {
  return execFileSync('bash', [`${root}/deploy/local/${name}`, ...rest], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

/** Runs a deploy/local script; on failure (it said why on stderr) stops what `up` started and exits 1. */
function script(name: string, ...rest: string[]): string {
  try {
    return run(name, ...rest);
  } catch {
    say(`${name} ${rest.join(' ')} failed (its message is above); stopping what up started`);
    for (const stop of startedHere.reverse()) {
      try {
        stop();
      } catch {
        // keep stopping the rest
      }
    }
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

const startedHere: Array<() => void> = [];

say('Kafka: starting the local broker (deploy/local/kafka.sh)');
const kafkaWasUp = running('kafka.sh', 'status');
process.stdout.write(script('kafka.sh', 'start'));
if (!kafkaWasUp) startedHere.push(() => process.stdout.write(run('kafka.sh', 'stop')));
process.stdout.write(script('kafka.sh', 'topics'));

if (!args['no-docker']) {
  say('Docker: starting dockerd so containers get names and images (deploy/local/docker.sh)');
  const dockerWasUp = running('docker.sh', 'status');
  process.stdout.write(script('docker.sh', 'all'));
  if (!dockerWasUp) startedHere.push(() => process.stdout.write(run('docker.sh', 'stop')));
}

const chdbPath = args['chdb-path'];
mkdirSync(chdbPath, { recursive: true });
const common = args.config ? ['--config', args.config] : [];

function launch(name: string, cliArgs: string[]): ChildProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', `${root}/${name}/src/cli.ts`, ...common, ...cliArgs],
    {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  child.on('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited unexpectedly (code ${code}, signal ${signal}); stopping the pipeline`);
      void stop(1);
    }
  });
  return child;
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
const processor = launch('processor', [
  '--chdb-path',
  chdbPath,
  '--set',
  `http.port=${PROCESSOR_HTTP}`,
  '--set',
  `processor.queryPort=${QUERY_PORT}`,
]);
if (!existsSync(`${root}/bpf/.output`)) say('WARNING: bpf/.output missing — run deploy/local/install.sh');
say('collector: eBPF source (bpf/.output), Docker metadata');
const collector = launch('collector', ['--set', `http.port=${COLLECTOR_HTTP}`]);

async function stopChild(child: ChildProcess, name: string): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  say(`stopping ${name}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await stopChild(collector, 'collector');
  await stopChild(processor, 'processor');
  for (const undo of startedHere.reverse()) undo();
  say('stopped');
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  await waitReady(PROCESSOR_HTTP, 'processor');
  await waitReady(COLLECTOR_HTTP, 'collector');
} catch (err) {
  say(`ERROR: ${(err as Error).message}`);
  await stop(1);
}
console.log(`
ktrail is running on this machine.
  SQL:        ./ktrail query "SELECT container_name, count() FROM ktrail.proc_exec GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
              or any ClickHouse HTTP client: http://127.0.0.1:${QUERY_PORT}/
  metrics:    collector http://127.0.0.1:${COLLECTOR_HTTP}/metrics   processor http://127.0.0.1:${PROCESSOR_HTTP}/metrics
  try:        docker run --rm --network none --name hello ktrail/busybox:latest sh -c 'echo hi; sleep 1'
  Kafka:      127.0.0.1:19092 (topics ktrail.*)
Ctrl-C stops the pipeline cleanly.`);
