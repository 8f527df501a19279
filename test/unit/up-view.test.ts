// `./ktrail up`'s output for a person (deploy/local/up-view.ts) and its status block
// (deploy/local/up-status.ts): which mode, which log lines become messages, what the block
// says from two readings, and how the block is redrawn. A fake terminal (a stream that keeps
// what it is given) and a fake Kafka admin; the real terminal is test/e2e/up-stop.test.ts.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Admin } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  consumerLag,
  duration,
  type ProcessView,
  readingFrom,
  STATUS_METRICS,
  statusLines,
  sumByName,
} from '../../deploy/local/up-status.js';
import { describeLogLine, fitWidth, humanView, outputMode, tailLines } from '../../deploy/local/up-view.js';

describe('output mode', () => {
  it('human on a terminal, json otherwise; a flag or KTRAIL_OUTPUT decides first', () => {
    expect(outputMode({}, {}, true)).toBe('human');
    expect(outputMode({}, {}, false)).toBe('json');
    expect(outputMode({ json: true }, {}, true)).toBe('json');
    expect(outputMode({ logFormat: 'json' }, {}, true)).toBe('json');
    expect(outputMode({ logFormat: 'human' }, {}, false)).toBe('human');
    expect(outputMode({}, { KTRAIL_OUTPUT: 'json' }, true)).toBe('json');
    expect(() => outputMode({ logFormat: 'xml' }, {}, true)).toThrow(/human or json/);
  });
});

describe('log lines as messages', () => {
  it('pino warnings and errors with their fields; info records stay in the file', () => {
    const warn = JSON.stringify({
      level: 40,
      time: '2026-01-01T00:00:00Z',
      pid: 7,
      component: 'processor.outputs',
      msg: 'output down; skipping it',
      output: 'alerts',
      err: { type: 'KafkaJSError', message: 'broker gone', stack: 'at ...' },
    });
    expect(describeLogLine('processor', warn)).toEqual({
      level: 'warn',
      text: 'processor: output down; skipping it  output=alerts err=broker gone',
    });
    expect(describeLogLine('processor', JSON.stringify({ level: 50, msg: 'stop failed' }))?.level).toBe(
      'error',
    );
    expect(
      describeLogLine('collector', JSON.stringify({ level: 30, msg: 'cgroup scan done' })),
    ).toBeUndefined();
  });

  it('plain lines a process printed itself, but not stack frames', () => {
    expect(describeLogLine('collector', 'collector stopped: captured 5, delivered 5, dropped 0')).toEqual({
      level: 'info',
      text: 'collector stopped: captured 5, delivered 5, dropped 0',
    });
    expect(describeLogLine('processor', 'Error: boom')).toEqual({
      level: 'error',
      text: 'processor: Error: boom',
    });
    expect(describeLogLine('processor', '    at main (cli.ts:1:1)')).toBeUndefined();
    expect(describeLogLine('processor', '{not json')).toBeUndefined();
  });

  it('reads only what was appended since, in whole lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-tail-'));
    try {
      const file = join(dir, 'x.log');
      const next = tailLines(file);
      expect(next()).toEqual([]);
      writeFileSync(file, 'one\ntw');
      expect(next()).toEqual(['one']);
      writeFileSync(file, 'one\ntwo\nthree\n');
      expect(next()).toEqual(['two', 'three']);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('cuts a line to the width, colours and all', () => {
    expect(fitWidth('\x1b[32mok\x1b[0m', 10)).toBe('\x1b[32mok\x1b[0m');
    expect(fitWidth('\x1b[32mabcdefghij\x1b[0m', 5)).toBe('abcd…');
  });
});

const proc = (pid: number, restarts = 0): ProcessView => ({ state: 'running', pid, restarts });
const ctx = {
  startedAtMs: 0,
  node: 'n1',
  metricsUrls: ['http://127.0.0.1:9464/metrics', 'http://127.0.0.1:9465/metrics'],
  queryUrl: 'http://127.0.0.1:8124/',
  tokenFile: 'data/query-token',
  logs: '.cache/logs/',
};

describe('status block', () => {
  const collectorText = (captured: number, delivered: number) =>
    [
      '# HELP ktrail_collector_events_captured_total x',
      `ktrail_collector_events_captured_total{kind="proc_exec",component="collector",node="n1"} ${captured - 10}`,
      `ktrail_collector_events_captured_total{kind="cpu_sample",component="collector",node="n1"} 10`,
      `ktrail_collector_events_delivered_total{component="collector",node="n1"} ${delivered}`,
      'ktrail_collector_events_dropped_total{reason="buffer_full"} 2',
      'ktrail_collector_events_dropped_total{reason="shutdown_deadline"} 0',
      'ktrail_collector_kernel_drops_total{program="process"} 3',
    ].join('\n');

  it('sums samples by metric name', () => {
    const sums = sumByName(collectorText(100, 90));
    expect(sums.get('ktrail_collector_events_captured_total')).toBe(100);
    expect(sums.get('ktrail_collector_events_dropped_total')).toBe(2);
    expect(STATUS_METRICS.collector).toContain('ktrail_collector_events_delivered_total');
  });

  it('rates between two readings, totals, drops with the kernel part, lag, where to look', () => {
    const views = { collector: proc(11), processor: proc(12, 1) };
    const rows = (n: number) => new Map([['ktrail_processor_rows_written_total', n]]);
    const a = readingFrom(10_000, sumByName(collectorText(100, 90)), rows(80), 4, views);
    const b = readingFrom(12_000, sumByName(collectorText(2_100, 2_090)), rows(1_080), 0, views);
    const lines = statusLines(ctx, a, b);
    expect(lines[0]).toBe('ktrail up · node n1 · running 12s');
    expect(lines[1]).toMatch(/^ {2}captured +1,000 events\/s +2,100 in all$/);
    expect(lines[2]).toMatch(/^ {2}delivered +1,000 events\/s +2,090 in all +dropped 5 \(3 in the kernel\)$/);
    expect(lines[3]).toMatch(/^ {2}written +500 rows\/s +1,080 in all +consumer lag 0 messages$/);
    expect(lines[4]).toMatch(/collector running \(pid 11\) +processor running \(pid 12, 1 restart\)/);
    expect(lines.join('\n')).toContain('http://127.0.0.1:9464/metrics  http://127.0.0.1:9465/metrics');
    expect(lines.join('\n')).toContain('http://127.0.0.1:8124/  (token in data/query-token)');
  });

  it('says "–" for what it could not read, and for a rate across a restart', () => {
    const views = { collector: { state: 'restarting', restarts: 1 }, processor: proc(12) };
    const a = readingFrom(0, sumByName(collectorText(500, 500)), undefined, undefined, views);
    const b = readingFrom(2_000, sumByName(collectorText(50, 50)), undefined, undefined, views);
    const lines = statusLines(ctx, a, b);
    expect(lines[1]).toMatch(/captured +– events\/s +50 in all/);
    expect(lines[3]).toMatch(/written +– rows\/s +– in all +consumer lag –$/);
    expect(lines[4]).toMatch(/collector restarting +processor running/);
    expect(duration(3_725_000)).toBe('1h02m');
  });

  it('lag: end offsets minus the group commits, from the start where nothing is committed', async () => {
    const admin = {
      fetchTopicOffsets: async () => [
        { partition: 0, offset: '10', high: '10', low: '0' },
        { partition: 1, offset: '7', high: '7', low: '5' },
        { partition: 2, offset: '3', high: '3', low: '0' },
      ],
      fetchOffsets: async () => [
        {
          topic: 'ktrail.events',
          partitions: [
            { partition: 0, offset: '4' },
            { partition: 1, offset: '-1' },
            { partition: 2, offset: '3' },
          ],
        },
      ],
    } as unknown as Admin;
    expect(await consumerLag(admin, 'g', 'ktrail.events')).toBe(6 + 2 + 0);
  });
});

describe('human view', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function terminal() {
    const written: string[] = [];
    const out = { columns: 60, write: (s: string) => written.push(s) > 0 } as unknown as NodeJS.WriteStream;
    const logDir = mkdtempSync(join(tmpdir(), 'ktrail-view-'));
    dirs.push(logDir);
    let t = 1_000;
    const view = humanView({ out, logDir, shownLogDir: logDir, steps: 2, now: () => t });
    return { view, written, logDir, advance: (ms: number) => (t += ms) };
  }

  it('a step ends in one line with its seconds; a failure shows its output', async () => {
    const { view, written, logDir, advance } = terminal();
    await view.step(
      'Kafka broker',
      'Kafka: starting',
      async () => advance(3_000),
      () => 'ready',
    );
    expect(written.at(-1)).toMatch(/(✓|ok).*\[1\/2\] Kafka broker .*ready.*3 s/);
    await expect(
      view.step('topics', 'topics', async () => {
        appendFileSync(join(logDir, 'up.log'), 'the script says why\n');
        throw new Error('kafka.sh topics exited with 1');
      }),
    ).rejects.toThrow();
    expect(written.join('')).toMatch(/(✗|FAILED).*\[2\/2\] topics {2}kafka\.sh topics exited with 1/);
    expect(written.join('')).toContain('the script says why');
    expect(readFileSync(join(logDir, 'up.log'), 'utf8')).toContain('[up] Kafka: starting');
  });

  it('redraws the block in place and prints messages above it, a repeated log warning once a minute', () => {
    const { view, written, logDir, advance } = terminal();
    view.status(['line one', 'line two that is far too long for a terminal of sixty columns, really']);
    // 59 columns: one is kept free so the terminal never wraps a line.
    expect(written.at(-1)).toBe('\nline one\nline two that is far too long for a terminal of sixty colu…\n');
    view.say('collector exited unexpectedly', 'warn');
    // Up over the 3 lines drawn, clear, the message, then the block again.
    const message = written.at(-2) ?? '';
    expect(message.startsWith('\x1b[3A\r\x1b[J')).toBe(true);
    expect(message).toMatch(/warn.*collector exited unexpectedly\n$/);
    const warn = `${JSON.stringify({ level: 40, msg: 'output down', output: 'alerts' })}\n`;
    writeFileSync(join(logDir, 'processor.log'), warn.repeat(3));
    view.pollLogs();
    advance(61_000);
    writeFileSync(join(logDir, 'processor.log'), warn.repeat(4));
    view.pollLogs();
    const shown = written
      .join('')
      .split('\n')
      .filter((l) => l.includes('processor: output down'));
    expect(shown).toHaveLength(2);
    expect(shown[1]).toContain('(and 2 like it in the last minute)');
  });
});
