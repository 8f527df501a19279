// `./ktrail up` as a child process, for the e2e tests of up and stop: a stack of its own on
// this machine (its own KTRAIL_CACHE for pid files, broker data and logs; its own broker,
// HTTP and query ports; its own chDB directory and node name), so the tests neither use nor
// stop what other checkouts or other tests run. Everything the stack starts inherits
// KTRAIL_CACHE=<its cache>, which is how the tests find what is left running and how
// cleanup() ends it even after a failure. With `tty`, up runs on a pseudo-terminal (util-linux's
// `script`), as a person at a terminal sees it: the human view instead of the JSON stream.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { type AddressInfo, createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify, stripVTControlCharacters } from 'node:util';
import { httpRunner, type Row } from '../../deploy/clickhouse/queries.js';
import { type PipelineState, readState, stateFile } from '../../deploy/local/pipeline-state.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
export const ROOT = new URL('../..', import.meta.url).pathname;

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (open: boolean) => {
      s.destroy();
      resolve(open);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.connect(port, '127.0.0.1');
  });
}

/** A broker port whose controller port (+1) is free too, above the suite's own broker. */
async function freeKafkaPort(): Promise<number> {
  const base = Number(process.env.KTRAIL_KAFKA_PORT ?? 19092) + 200;
  for (let p = base; p < base + 400; p += 10) if (!(await portOpen(p)) && !(await portOpen(p + 1))) return p;
  throw new Error(`no free broker port pair in ${base}-${base + 400}`);
}

/** A base port for a three-node cluster: six free ports from it on (clients and controllers). */
async function freeClusterPort(): Promise<number> {
  const base = Number(process.env.KTRAIL_KAFKA3_PORT ?? 29092) + 300;
  for (let p = base; p < base + 400; p += 10) {
    const open = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => portOpen(p + i)));
    if (!open.includes(true)) return p;
  }
  throw new Error(`no six free ports for a cluster in ${base}-${base + 400}`);
}

/** Pids of processes (other than this one) that carry `KTRAIL_CACHE=<cache>` or name the cache. */
export function processesOf(cache: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')) continue;
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      if (environ.split('\0').includes(`KTRAIL_CACHE=${cache}`) || cmdline.includes(cache)) found.push(pid);
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return found;
}

export interface LogLine {
  /** The line; on a terminal, what it shows last (colours and cursor moves taken out). */
  raw: string;
  /** The parsed pino record when the line is one. */
  json?: Record<string, unknown>;
}

export interface UpStack {
  cache: string;
  node: string;
  env: NodeJS.ProcessEnv;
  up: ChildProcess;
  lines: LogLine[];
  /** Every byte up wrote, as it came (on a terminal: with its colours and cursor moves). */
  output(): string;
  upExit: Promise<number | null>;
  sql(query: string): Promise<Row[]>;
  state(): PipelineState | undefined;
  /** Resolves with the first line (from index `from` on) that `match` accepts. */
  line(what: string, match: (l: LogLine) => boolean, timeoutMs: number, from?: number): Promise<LogLine>;
  /** `./ktrail stop` as another process: its exit code and output. */
  stop(): Promise<{ code: number; output: string }>;
  /** After a test, passed or failed: stop, then SIGKILL whatever is left, delete the cache. */
  cleanup(): Promise<void>;
}

export interface StartOptions {
  name: string;
  docker: boolean;
  env?: Record<string, string>;
  /** Start again on a stopped stack's cache, ports, chDB and node (a second `./ktrail up`). */
  again?: UpStack;
  /** On a pseudo-terminal of 120 columns: the human view. */
  tty?: boolean;
  /** More arguments for `./ktrail up` (`--brokers 3`). */
  args?: string[];
}

async function stackEnv(options: StartOptions): Promise<NodeJS.ProcessEnv> {
  if (options.again !== undefined) return options.again.env;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KTRAIL_CACHE: mkdtempSync(join(tmpdir(), `ktrail-${options.name}-`)),
    KTRAIL_KAFKA_PORT: String(await freeKafkaPort()),
    KTRAIL_KAFKA3_PORT: String(await freeClusterPort()),
    KTRAIL_PROCESSOR_QUERY_PORT: String(await freePort()),
    KTRAIL_UP_COLLECTOR_HTTP_PORT: String(await freePort()),
    KTRAIL_UP_PROCESSOR_HTTP_PORT: String(await freePort()),
    KTRAIL_NODE: `${options.name}-${Date.now().toString(36)}`,
    KTRAIL_LOG_LEVEL: 'info',
    ...options.env,
  };
  // The suite's own broker is not this stack's.
  delete env.KTRAIL_KAFKA_BROKERS;
  return env;
}

export async function startUp(options: StartOptions): Promise<UpStack> {
  const env = await stackEnv(options);
  const cache = env.KTRAIL_CACHE as string;
  const node = env.KTRAIL_NODE as string;
  const queryPort = Number(env.KTRAIL_PROCESSOR_QUERY_PORT);
  const args = [
    'up',
    '--chdb-path',
    join(cache, 'chdb'),
    ...(options.docker ? [] : ['--no-docker']),
    ...(options.args ?? []),
  ];
  const up =
    options.tty === true
      ? spawn(
          'script',
          ['-q', '-e', '-c', `stty cols 120 rows 50; exec ${ROOT}ktrail ${args.join(' ')}`, '/dev/null'],
          {
            cwd: ROOT,
            // A terminal as a person has one: UTF-8, colours allowed.
            env: { ...withoutColourSettings(env), LANG: 'C.UTF-8' },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        )
      : spawn(`${ROOT}ktrail`, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const chunks: Buffer[] = [];
  let partial = '';
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    const text = partial + chunk.toString();
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const written of parts) {
      const raw = options.tty === true ? shownLast(written) : written;
      let json: Record<string, unknown> | undefined;
      if (raw.startsWith('{'))
        try {
          json = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
      lines.push(json === undefined ? { raw } : { raw, json });
      if (raw.startsWith('[up]') || raw.startsWith('collector stopped'))
        console.log(`[${options.name}] ${raw}`);
    }
  };
  up.stdout?.on('data', onData);
  up.stderr?.on('data', onData);
  const upExit = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
  // The processor writes its query token beside its store once it starts: read it per query.
  const tokenFile = join(cache, 'query-token');
  const sql = {
    rows: (query: string) =>
      httpRunner(`http://127.0.0.1:${queryPort}/`, readFileSync(tokenFile, 'utf8').trim()).rows(query),
  };

  const stack: UpStack = {
    cache,
    node,
    env,
    up,
    lines,
    output: () => Buffer.concat(chunks).toString(),
    upExit,
    sql: (query) => sql.rows(query),
    state: () => readState(stateFile(ROOT, env)),
    line(what, match, timeoutMs, from = 0) {
      return waitFor(
        what,
        () => {
          const found = lines.slice(from).find(match);
          if (found === undefined && up.exitCode !== null)
            throw new Error(`./ktrail up exited (${up.exitCode}) before ${what}: ${tail(lines)}`);
          return found;
        },
        timeoutMs,
        200,
      );
    },
    async stop() {
      try {
        const { stdout, stderr } = await run(`${ROOT}ktrail`, ['stop'], { cwd: ROOT, env, timeout: 300_000 });
        return { code: 0, output: stdout + stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return {
          code: typeof e.code === 'number' ? e.code : 1,
          output: `${e.stdout ?? ''}${e.stderr ?? ''}`,
        };
      }
    },
    async cleanup() {
      if (processesOf(cache).length > 0) await stack.stop();
      for (const pid of processesOf(cache))
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      rmSync(cache, { recursive: true, force: true });
    },
  };
  return stack;
}

const tail = (lines: LogLine[]): string =>
  lines
    .slice(-15)
    .map((l) => l.raw.slice(0, 300))
    .join(' | ');

/** Rows of a query on a chDB directory no process holds any more (chDB: one process per directory). */
export async function chdbRows(path: string, query: string): Promise<Row[]> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', 'test/support/chdb-rows.ts', path, query],
    {
      cwd: ROOT,
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, KTRAIL_LOG_LEVEL: 'warn' },
    },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Row[];
}

function withoutColourSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { NO_COLOR: _no, FORCE_COLOR: _force, ...rest } = env;
  return rest;
}

/** What a terminal line shows in the end: colours and cursor moves out, the text after the last \r. */
function shownLast(written: string): string {
  const parts = stripVTControlCharacters(written)
    .split('\r')
    .filter((p) => p !== '');
  return parts.at(-1) ?? '';
}

/**
 * Log files under `dir` (names ending in .log, or .log.1 for a previous run's) holding an ESC
 * byte. Kafka's partition segments (under kraft/) end in .log too but are binary data.
 */
export function logsWithEscapes(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const file = join(dir, entry);
    if (!/\.log(\.1)?$/.test(entry) || entry.split('/').includes('kraft')) continue;
    if (!statSync(file, { throwIfNoEntry: false })?.isFile()) continue;
    if (readFileSync(file).includes(0x1b)) found.push(file);
  }
  return found;
}

/** The stack's pipeline is running: up printed its banner. */
export function runningBanner(l: LogLine): boolean {
  return l.raw.startsWith('ktrail is running on this machine');
}
