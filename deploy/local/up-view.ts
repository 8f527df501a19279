// How `./ktrail up` talks. Two modes (deploy/local/up.ts picks one; ./ktrail sets KTRAIL_OUTPUT):
//   json   the stream as it always was: up's "[up] ..." lines, the scripts' lines and the
//          collector's and processor's JSON log lines, on stdout, for a log collector.
//   human  for a person on a terminal: each start step one line that refreshes (spinner,
//          seconds) and ends ✓ or ✗; then one status block that refreshes in place, with
//          warnings and errors of the logs as one-line messages above it. The full logs go
//          to files (<cache>/logs/up.log, collector.log, processor.log), never the terminal.
// Plain ANSI cursor control: the block is redrawn by moving the cursor up over it and clearing
// to the end of the screen; every block line is cut to the terminal's width so none wraps.
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';

export type OutputMode = 'human' | 'json';
export type Level = 'info' | 'warn' | 'error';

/** --json / --log-format, else KTRAIL_OUTPUT (set by ./ktrail), else human on a terminal. */
export function outputMode(
  flags: { json?: boolean | undefined; logFormat?: string | undefined },
  env: NodeJS.ProcessEnv,
  isTTY: boolean,
): OutputMode {
  const wanted = flags.json === true ? 'json' : (flags.logFormat ?? env.KTRAIL_OUTPUT);
  if (wanted === undefined || wanted === '') return isTTY ? 'human' : 'json';
  if (wanted === 'human' || wanted === 'json') return wanted;
  throw new Error(`--log-format must be human or json, not "${wanted}"`);
}

const PINO_KEYS = new Set([
  'level',
  'time',
  'pid',
  'hostname',
  'name',
  'component',
  'node',
  'msg',
  'lib',
  'ns',
]);

function fieldText(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * A line of a process's log as a message for the terminal, or undefined when it is not one:
 * pino records at warn (40) and above, with their fields as key=value (an error's message
 * only); and plain lines a process printed itself (its final stats line, a config error), but
 * not the indented frames of a stack trace.
 */
export function describeLogLine(source: string, line: string): { level: Level; text: string } | undefined {
  if (line.startsWith('{')) {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    const level = Number(record.level);
    if (!(level >= 40)) return undefined;
    const fields = Object.entries(record)
      .filter(([k]) => !PINO_KEYS.has(k))
      .map(([k, v]) =>
        k === 'err' && typeof v === 'object' && v !== null
          ? `err=${fieldText((v as { message?: unknown }).message)}`
          : `${k}=${fieldText(v)}`,
      );
    const text = `${source}: ${String(record.msg ?? '')}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}`;
    return { level: level >= 50 ? 'error' : 'warn', text };
  }
  if (line.trim() === '' || /^\s/.test(line)) return undefined;
  const text = line.startsWith(source) ? line : `${source}: ${line}`;
  return { level: /\b(error|fatal)\b/i.test(line) ? 'error' : 'info', text };
}

/** New complete lines of a file that another process appends to. */
export function tailLines(file: string): () => string[] {
  let offset = 0;
  let partial = '';
  const chunk = Buffer.alloc(64 * 1024);
  return () => {
    if (!existsSync(file)) return [];
    const fd = openSync(file, 'r');
    let text = '';
    try {
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, offset);
        if (n === 0) break;
        offset += n;
        text += chunk.toString('utf8', 0, n);
      }
    } finally {
      closeSync(fd);
    }
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    return lines;
  };
}

/** The line cut to `cols` visible columns (colour codes dropped when it must be cut). */
export function fitWidth(line: string, cols: number): string {
  const plain = stripVTControlCharacters(line);
  return plain.length <= cols ? line : `${plain.slice(0, Math.max(0, cols - 1))}…`;
}

export interface UpView {
  readonly mode: OutputMode;
  /** Where a script or a child process writes: the terminal (json) or its log file (human). */
  stdio(file: 'up' | 'collector' | 'processor'): 'inherit' | number;
  /** A message of up's own: "[up] text" (json), a line above the block (human). */
  say(text: string, level?: Level): void;
  /** A start step: in json mode it only says `said`. A failure shows the step's output (human). */
  step<T>(label: string, said: string, work: () => Promise<T>, detail?: (result: T) => string): Promise<T>;
  /** Text for the terminal as it is (the banner). */
  print(text: string): void;
  /** Replaces the status block (human; ignored in json mode). */
  status(lines: string[]): void;
  /** Reads the processes' logs and shows their warnings and errors (human). */
  pollLogs(): void;
  /** The block becomes plain text: what follows (the stop) prints below it. */
  freeze(): void;
}

export function jsonView(): UpView {
  return {
    mode: 'json',
    stdio: () => 'inherit',
    say: (text) => console.log(`[up] ${text}`),
    async step(_label, said, work) {
      console.log(`[up] ${said}`);
      return work();
    },
    print: (text) => console.log(text),
    status: () => {},
    pollLogs: () => {},
    freeze: () => {},
  };
}

const utf8 = /utf-?8/i.test(process.env.LC_ALL || process.env.LC_CTYPE || process.env.LANG || '');
const SPIN = utf8 ? ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'] : ['-', '\\', '|', '/'];
const OK = utf8 ? '✓' : 'ok';
const FAIL = utf8 ? '✗' : 'FAILED';
/** A repeated warning shows once a minute, with how many were held back meanwhile. */
const REPEAT_MS = 60_000;

export interface HumanViewOptions {
  out: NodeJS.WriteStream;
  logDir: string;
  /** Steps in the start, for the [n/N] counter. */
  steps: number;
  /** logDir as the header shows it. */
  shownLogDir: string;
  now?: () => number;
}

/** The log files of the last run are kept as <name>.log.1. */
function openLog(dir: string, name: string): number {
  const file = join(dir, `${name}.log`);
  if (existsSync(file)) renameSync(file, `${file}.1`);
  return openSync(file, 'a');
}

export function humanView(o: HumanViewOptions): UpView {
  const now = o.now ?? Date.now;
  const colour = process.env.NO_COLOR === undefined || process.env.NO_COLOR === '';
  const paint = (code: string, text: string) => (colour ? `\x1b[${code}m${text}\x1b[0m` : text);
  const fds = {
    up: openLog(o.logDir, 'up'),
    collector: openLog(o.logDir, 'collector'),
    processor: openLog(o.logDir, 'processor'),
  };
  const tails = {
    collector: tailLines(join(o.logDir, 'collector.log')),
    processor: tailLines(join(o.logDir, 'processor.log')),
  };
  const shown = new Map<string, { at: number; held: number }>();
  let block: string[] = [];
  let drawn = 0;
  let stepNo = 0;
  const cols = () => Math.max(40, (o.out.columns || 100) - 1);
  // A closed terminal (SIGHUP) fails every write: up must still stop its processes in order,
  // and up.log has every line anyway.
  o.out.on?.('error', () => {});
  o.out.write(`ktrail up: start ${paint('2', `(full logs: ${o.shownLogDir}/)`)}\n`);

  function draw(): void {
    let text = drawn > 0 ? `\x1b[${drawn}A\r\x1b[J` : '';
    for (const line of block) text += `${fitWidth(line, cols())}\n`;
    if (text !== '') o.out.write(text);
    drawn = block.length;
  }
  /** Permanent lines above the block. */
  function emit(lines: string): void {
    o.out.write(`${drawn > 0 ? `\x1b[${drawn}A\r\x1b[J` : ''}${lines}\n`);
    drawn = 0;
    draw();
  }
  const clock = () => new Date(now()).toTimeString().slice(0, 8);
  const logUp = (text: string) => writeSync(fds.up, `[up] ${text}\n`);

  /** `repeats`: a log message that may come every few seconds (Kafka down); up's own never do. */
  function message(level: Level, text: string, repeats = false): void {
    const key = `${level}:${text.replace(/\d+/g, '#')}`;
    const seen = repeats ? shown.get(key) : undefined;
    const t = now();
    if (seen !== undefined && t - seen.at < REPEAT_MS) {
      seen.held++;
      return;
    }
    const more = seen !== undefined && seen.held > 0 ? ` (and ${seen.held} like it in the last minute)` : '';
    if (repeats) shown.set(key, { at: t, held: 0 });
    const tag =
      level === 'error'
        ? paint('31', 'error')
        : level === 'warn'
          ? paint('33', 'warn ')
          : paint('2', 'info ');
    emit(`${paint('2', clock())} ${tag} ${text}${more}`);
  }

  return {
    mode: 'human',
    stdio: (file) => fds[file],
    say(text, level = 'info') {
      logUp(text);
      message(level, text);
    },
    async step(label, said, work, detail) {
      stepNo++;
      logUp(said);
      const started = now();
      const offset = fstatSync(fds.up).size;
      const head = `[${stepNo}/${o.steps}] ${label}`;
      const secs = () => paint('2', `${Math.round((now() - started) / 1000)} s`);
      let frame = 0;
      const spin = () => {
        block = [`  ${SPIN[frame++ % SPIN.length]} ${head}  ${secs()}`];
        draw();
      };
      spin();
      const timer = setInterval(spin, 250);
      try {
        const result = await work();
        clearInterval(timer);
        block = [];
        const extra = detail?.(result);
        emit(`  ${paint('32', OK)} ${head}  ${extra ? `${paint('2', extra)}  ` : ''}${secs()}`);
        return result;
      } catch (err) {
        clearInterval(timer);
        block = [];
        emit(`  ${paint('31', FAIL)} ${head}  ${(err as Error).message}  ${secs()}`);
        const file = join(o.logDir, 'up.log');
        const output = readFileSync(file).subarray(offset).toString('utf8').trimEnd().split('\n').slice(-25);
        emit(`--- the end of its output (all of it: ${file}) ---\n${output.join('\n')}`);
        throw err;
      }
    },
    print(text) {
      writeSync(fds.up, `${text}\n`);
      emit(text);
    },
    status(lines) {
      block = ['', ...lines];
      draw();
    },
    pollLogs() {
      for (const source of ['collector', 'processor'] as const)
        for (const line of tails[source]()) {
          const m = describeLogLine(source, line);
          if (m !== undefined) message(m.level, m.text, true);
        }
    },
    freeze() {
      drawn = 0;
      block = [];
    },
  };
}
