// `./ktrail stop` against a real `./ktrail up` running as another process (issue #13, item 7):
// it stops the collector first (it flushes, its final stats record written after the drain),
// then the processor (it writes what the collector sent), then the broker, dockerd and
// containerd this stack started, leaving a dockerd it did not start alone; nothing of the
// stack is left running; collector_stats then shows exactly the delivered and dropped counts
// of the collector's final log line. On the way, the collector is SIGKILLed once: up restarts
// it, and the time it did not capture shows in the capture_gaps view. The second test stops
// with the broker already gone: the drops are kept on disk and reach SQL on the next `up`.
// Output (issue #19): the first `up` writes to a pipe, so its stdout is the JSON log stream;
// the second test's second `up` runs on a pseudo-terminal and shows the human view (steps, a
// status block with numbers, no JSON) while the JSON logs go to files. No log file of either
// holds an ANSI escape. A healthy start logs no warning or error.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import type { Row } from '../../deploy/clickhouse/queries.js';
import { itReal, missingRoot } from '../support/real.js';
import {
  chdbRows,
  type LogLine,
  logsWithEscapes,
  processesOf,
  ROOT,
  runningBanner,
  startUp,
  type UpStack,
} from '../support/up-stack.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const it = itReal(missingRoot());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST_STATS = { KTRAIL_COLLECTOR_STATS_INTERVAL_MS: '2000', KTRAIL_COLLECTOR_BATCH_MAX_MS: '200' };

function pidIn(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  try {
    return pid !== undefined && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

/** The dockerd answering on the machine-wide socket before the test, if any. */
async function dockerdBefore(): Promise<number | undefined> {
  try {
    await run('bash', [join(ROOT, 'deploy/local/docker.sh'), 'status'], { timeout: 30_000 });
    return pidIn('/var/run/docker.pid');
  } catch {
    return undefined;
  }
}

async function execs(marker: string, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) await run('/bin/true', [`${marker}-${i}`]);
}

/** Polls the running stack's SQL until `pick` accepts the first row. */
function sqlUntil<T>(s: UpStack, what: string, query: string, pick: (row: Row) => T | undefined): Promise<T> {
  return waitFor(
    what,
    async () => {
      const [row] = await s.sql(query).catch(() => []);
      return row === undefined ? undefined : pick(row);
    },
    120_000,
    1_000,
  );
}

/** `n` rows of proc_exec whose argv[1] starts with `marker-`. */
function seen(s: UpStack, marker: string, n: number): Promise<true> {
  return sqlUntil(
    s,
    `${n} execs ${marker} in SQL`,
    `SELECT count() AS n FROM ktrail.proc_exec WHERE node = '${s.node}' AND startsWith(args[2], '${marker}-')`,
    (row) => (Number(row.n) === n ? true : undefined),
  );
}

/** The collector's last line: `collector stopped: captured C, delivered D, dropped X {by reason}, pending P, unaccounted U`. */
function finalLine(lines: readonly string[]) {
  const line = [...lines].reverse().find((l) => l.startsWith('collector stopped: ')) ?? '';
  const m =
    /^collector stopped: captured (\d+), delivered (\d+), dropped (\d+) (\{.*\}), pending (\d+), unaccounted (-?\d+)/.exec(
      line,
    );
  if (m === null) throw new Error(`no final collector line among ${lines.length} lines`);
  return {
    captured: Number(m[1]),
    delivered: Number(m[2]),
    dropped: Number(m[3]),
    byReason: JSON.parse(m[4] as string) as Record<string, number>,
    pending: Number(m[5]),
    unaccounted: Number(m[6]),
  };
}

/** Not on a terminal: up's stdout is the log stream, the processes' lines JSON, nothing drawn. */
function expectJsonStream(s: UpStack): void {
  expect(s.output().includes('\x1b'), 'an ANSI escape in the non-terminal output').toBe(false);
  const from = (c: string) => s.lines.filter((l) => String(l.json?.component ?? '').startsWith(c)).length;
  expect(from('collector')).toBeGreaterThan(0);
  expect(from('processor')).toBeGreaterThan(0);
  expect(s.lines.some((l) => l.raw.startsWith('ktrail up · node'))).toBe(false);
}

/** On a terminal: the install and start steps, a status block with numbers, no JSON line. */
function expectHumanView(s: UpStack): void {
  const shown = s.lines.map((l: LogLine) => l.raw);
  const has = (re: RegExp) => shown.some((l) => re.test(l));
  for (const step of ['Debian packages', 'npm packages', 'Kafka broker jars', 'eBPF objects', 'native addon'])
    expect(has(new RegExp(`✓ \\[\\d/\\d\\] ${step}`)), `install step ${step}`).toBe(true);
  expect(has(/✓ \[\d\/4\] Kafka broker on 127\.0\.0\.1:\d+/)).toBe(true);
  expect(has(/✓ \[4\/4\] collector: .* ready/)).toBe(true);
  expect(has(/^ {2}captured +\d[\d,.]* events\/s +\d[\d,]* in all$/), 'a captured rate').toBe(true);
  expect(has(/^ {2}delivered +[\d,.–]+ events\/s +\d[\d,]* in all +dropped \d+/)).toBe(true);
  expect(has(/^ {2}written +[\d,.–]+ rows\/s +\d[\d,]* in all +consumer lag \d[\d,]* messages$/)).toBe(true);
  const ports = [s.env.KTRAIL_UP_COLLECTOR_HTTP_PORT, s.env.KTRAIL_UP_PROCESSOR_HTTP_PORT];
  expect(
    has(
      new RegExp(
        `metrics +http://127\\.0\\.0\\.1:${ports[0]}/metrics +http://127\\.0\\.0\\.1:${ports[1]}/metrics`,
      ),
    ),
  ).toBe(true);
  expect(has(new RegExp(`SQL +http://127\\.0\\.0\\.1:${s.env.KTRAIL_PROCESSOR_QUERY_PORT}/`))).toBe(true);
  expect(has(/collector stopped: captured \d+, delivered \d+, dropped \d+/)).toBe(true);
  expect(
    shown.filter((l) => l.trimStart().startsWith('{')),
    'JSON lines on the terminal',
  ).toEqual([]);
  // The full logs are in files, as JSON lines.
  for (const name of ['collector', 'processor']) {
    const log = readFileSync(join(s.cache, 'logs', `${name}.log`), 'utf8').split('\n');
    expect(log.filter((l) => l.startsWith('{"level":')).length, `${name}.log`).toBeGreaterThan(3);
  }
}

const noneLeft = (cache: string) =>
  waitFor(
    'no process of the stack left',
    () => (processesOf(cache).length === 0 ? true : undefined),
    30_000,
    500,
  );

describe('./ktrail stop stops what ./ktrail up runs, in order, and no drop escapes SQL', () => {
  const stacks: UpStack[] = [];
  afterAll(async () => {
    for (const s of stacks) await s.cleanup();
  });

  it('stop from another process: everything gone, collector_stats = the final log line, a restart is a gap', async () => {
    const dockerd = await dockerdBefore();
    const s = await startUp({ name: 'up-stop', docker: true, env: FAST_STATS });
    stacks.push(s);
    await s.line('the pipeline running', runningBanner, 300_000);
    // A containerd such as a test run leaves behind: private socket and state, this stack's cache.
    await run('bash', [join(ROOT, 'deploy/local/containerd.sh'), 'start'], {
      env: {
        ...s.env,
        KTRAIL_CONTAINERD_SOCK: join(s.cache, 'containerd', 'containerd.sock'),
        KTRAIL_CONTAINERD_ROOT: join(s.cache, 'containerd-root'),
      },
      timeout: 120_000,
    });
    const containerd = pidIn(join(s.cache, 'containerd', 'containerd.pid'));
    expect(alive(containerd)).toBe(true);
    await execs(`${s.node}-a`, 20);
    await seen(s, `${s.node}-a`, 20);
    // A healthy start says nothing alarming: no warning or error line from any process.
    const alarming = s.lines.filter((l) => Number(l.json?.level) >= 40).map((l) => l.raw);
    expect(alarming, 'warnings or errors in a healthy start').toEqual([]);

    // SIGKILL the collector: up restarts it; the gap is what capture_gaps must show.
    const first = s.state()?.collector;
    expect(first).toBeDefined();
    const killedAt = Date.now();
    process.kill(first?.pid as number, 'SIGKILL');
    await s.line('the collector restarted', (l) => l.raw.startsWith('[up] collector restarted'), 60_000);
    const port = Number(s.env.KTRAIL_UP_COLLECTOR_HTTP_PORT);
    const ready = async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok;
    await waitFor(
      'the restarted collector ready',
      async () => ((await ready()) ? true : undefined),
      120_000,
      200,
    );
    const readyAt = Date.now();
    expect(s.state()?.collector?.pid).not.toBe(first?.pid);
    await execs(`${s.node}-b`, 20);
    await seen(s, `${s.node}-b`, 20);
    await sleep(3_000); // a stats interval or so of steady running before the stop

    const from = s.lines.length;
    const stopStarted = Date.now();
    const stopped = await s.stop();
    console.log(`[up-stop] ./ktrail stop took ${Date.now() - stopStarted} ms:\n${stopped.output}`);
    expect(stopped.code).toBe(0);
    expect(await s.upExit).toBe(0);

    // In order: collector (its final line), then processor, then the broker up started.
    const after = s.lines.slice(from).map((l) => l.raw);
    const at = (re: RegExp) => after.findIndex((l) => re.test(l));
    const order = [
      at(/^\[up\] stopping collector/),
      at(/^collector stopped: /),
      at(/^\[up\] stopping processor/),
      at(/"msg":"stop: caught up with the end offsets"/),
      at(/^\[kafka\.sh\] cluster 1: stopping/),
      at(/^\[up\] stopped$/),
    ];
    expect(
      order.every((i) => i >= 0),
      `a stop step is missing: ${order}`,
    ).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(stopped.output).toMatch(/\[stop\] \.\/ktrail up has stopped/);
    expect(stopped.output).not.toMatch(/: SIGKILL|needed SIGKILL/);

    expectJsonStream(s);
    expect(logsWithEscapes(s.cache)).toEqual([]);

    // Nothing of the stack is left; a dockerd it did not start is still there.
    await noneLeft(s.cache);
    expect(alive(containerd)).toBe(false);
    if (dockerd !== undefined) expect(alive(dockerd)).toBe(true);

    // collector_stats of the last run = the collector's final line.
    const final = finalLine(after);
    expect(final.captured).toBeGreaterThan(0);
    expect(final.pending).toBe(0);
    expect(final.unaccounted).toBe(0);
    const chdb = join(s.cache, 'chdb');
    const gaps = await chdbRows(
      chdb,
      `SELECT gap_ms, toString(toUnixTimestamp64Nano(gap_end)) AS end_ns FROM ktrail.capture_gaps WHERE node = '${s.node}'`,
    );
    expect(gaps).toHaveLength(1);
    const gap = gaps[0] as { gap_ms: string; end_ns: string };
    const gapMs = Number(gap.gap_ms);
    console.log(
      `[up-stop] capture gap ${gapMs} ms (kill -> restarted collector ready ${readyAt - killedAt} ms)`,
    );
    // At least the restart backoff; at most the outage plus one stats interval (the killed
    // run's last record) and some slack for timing.
    expect(gapMs).toBeGreaterThanOrEqual(1_000);
    expect(gapMs).toBeLessThanOrEqual(readyAt - killedAt + 2_000 + 3_000);
    const [last] = await chdbRows(
      chdb,
      `SELECT count() AS records, toString(sum(events_delivered)) AS delivered,
              toString(sum(arraySum(mapValues(buffer_drops_by_reason)))) AS dropped
       FROM ktrail.collector_stats WHERE node = '${s.node}' AND interval_start_ns >= ${gap.end_ns}`,
    );
    console.log('[up-stop] final line:', final, 'collector_stats:', last);
    expect(Number(last?.records)).toBeGreaterThanOrEqual(2);
    expect(Number(last?.delivered)).toBe(final.delivered);
    expect(Number(last?.dropped)).toBe(final.dropped);
  });

  it('Kafka down at stop: the drops are kept on disk and reach collector_stats on the next up', async () => {
    const first = await startUp({ name: 'up-down', docker: false, env: FAST_STATS });
    stacks.push(first);
    await first.line('the pipeline running', runningBanner, 300_000);
    await execs(`${first.node}-a`, 10);
    await seen(first, `${first.node}-a`, 10);
    // The broker goes first (what `stop` used to do): the collector holds what it captures.
    await run('bash', [join(ROOT, 'deploy/local/kafka.sh'), 'stop'], { env: first.env, timeout: 120_000 });
    await execs(`${first.node}-b`, 20);
    await sleep(2_000);
    const from = first.lines.length;
    const stopStarted = Date.now();
    const stopped = await first.stop();
    console.log(
      `[up-down] ./ktrail stop with the broker gone took ${Date.now() - stopStarted} ms:\n${stopped.output}`,
    );
    expect(stopped.code).toBe(0);
    expect(await first.upExit).toBe(0);
    const run1 = finalLine(first.lines.slice(from).map((l) => l.raw));
    console.log('[up-down] first run:', run1);
    expect(run1.byReason.shutdown_deadline).toBeGreaterThanOrEqual(20);
    expect(run1.unaccounted).toBe(0);
    const kept = join(first.cache, 'collector-state', `unsent-stats-${first.node}`);
    expect(readFileSync(kept, 'utf8')).toContain('"messages"');

    // The next up sends the kept records first: run 1's totals are then in SQL. It runs on a
    // terminal: the human view.
    const second = await startUp({ name: 'up-down', docker: false, again: first, tty: true });
    await second.line('the pipeline running again', runningBanner, 300_000);
    const startNs = await sqlUntil(
      second,
      'the gap between the two runs',
      `SELECT toString(toUnixTimestamp64Nano(gap_start)) AS start_ns FROM ktrail.capture_gaps WHERE node = '${second.node}'`,
      (row) => row.start_ns as string | undefined,
    );
    const totals = await sqlUntil(
      second,
      "run 1's kept stats in SQL",
      `SELECT toString(sum(events_delivered)) AS delivered,
              toString(sum(arraySum(mapValues(buffer_drops_by_reason)))) AS dropped,
              toString(sum(buffer_drops_by_reason['shutdown_deadline'])) AS shutdown
       FROM ktrail.collector_stats WHERE node = '${second.node}' AND interval_end_ns <= ${startNs}`,
      (row) => (Number(row.shutdown) > 0 ? row : undefined),
    );
    console.log('[up-down] run 1 in collector_stats:', totals);
    expect(Number(totals.delivered)).toBe(run1.delivered);
    expect(Number(totals.dropped)).toBe(run1.dropped);
    expect(Number(totals.shutdown)).toBe(run1.byReason.shutdown_deadline);
    // The batches it numbered and dropped are a hole in the sequence once run 2's arrive.
    const missing = await sqlUntil(
      second,
      'missing batches in completeness_hourly',
      `SELECT sum(batches_missing) AS m FROM ktrail.completeness_hourly WHERE node = '${second.node}'`,
      (row) => (Number(row.m) > 0 ? Number(row.m) : undefined),
    );
    console.log(`[up-down] completeness_hourly: ${missing} batches missing`);
    await waitFor(
      'the kept file removed once sent',
      () => (existsSync(kept) ? undefined : true),
      30_000,
      500,
    );

    // The block reads the group's lag once the processor has committed: wait for a number.
    await second.line(
      'the status block with the consumer lag',
      (l) => /consumer lag \d/.test(l.raw),
      120_000,
    );
    const secondStop = Date.now();
    expect((await second.stop()).code).toBe(0);
    expect(await second.upExit).toBe(0);
    console.log(
      `[up-down] ./ktrail stop of the second up (on a terminal) took ${Date.now() - secondStop} ms`,
    );
    await noneLeft(first.cache);
    console.log(
      `[up-down] the terminal, last 14 lines:\n${second.lines
        .slice(-14)
        .map((l) => l.raw)
        .join('\n')}`,
    );
    expectHumanView(second);
    expect(logsWithEscapes(first.cache)).toEqual([]);
  });
});
