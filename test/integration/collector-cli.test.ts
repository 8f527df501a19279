// The collector CLI as a process: --dry-run prints decoded events as JSON lines (u64 as
// strings), a bad setting exits 2 naming it, and SIGTERM during a looping replay into the
// real broker flushes what it holds, exits 0, and its final counters match the topic.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { deleteTopics } from '../support/kafka.js';
import { endpointOrReason, itReal } from '../support/real.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const kafka = endpointOrReason(inject('kafka'));
const dir = mkdtempSync(join(tmpdir(), 'ktrail-collector-cli-'));
const topicPrefix = `cli-${Date.now().toString(36)}.`;
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (kafka.value) await deleteTopics(kafka.value, Object.values(topicNames(topicPrefix)));
});

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function collector(args: string[]): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'collector/src/cli.ts'), ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

describe('collector CLI', () => {
  it('--dry-run prints every decoded event as a JSON line, u64 values as strings', async () => {
    const file = join(dir, 'dry.ktcap');
    const written = await writeSyntheticCapture(file, { records: 2_000, perBatch: 250, malformedEvery: 50 });
    const run = collector(['--dry-run', '--replay', file]);
    expect(await run.exit).toBe(0);
    const events = run
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{"kind"'))
      .map((l) => JSON.parse(l) as { kind: string; tsNs: unknown; cgroupId: unknown });
    expect(events).toHaveLength(written.valid);
    expect(typeof events[0]?.tsNs).toBe('string');
    expect(BigInt(events[0]?.cgroupId as string)).toBeGreaterThan(0n);
    expect(run.stderr()).toContain(`${written.records - written.valid} malformed records`);
  }, 120_000);

  it('a bad setting exits 2 and names it', async () => {
    const run = collector(['--set', 'collector.batchMaxMs=soon']);
    expect(await run.exit).toBe(2);
    expect(run.stderr()).toMatch(/collector\.batchMaxMs/);
  }, 120_000);

  itReal(kafka.missing)(
    'SIGTERM flushes within the deadline, exits 0, and the final counters match the topic',
    async () => {
      const brokers = kafka.value?.brokers as string[];
      const file = join(dir, 'loop.ktcap');
      await writeSyntheticCapture(file, { records: 3_000, perBatch: 100 });
      const run = collector([
        '--replay',
        file,
        '--replay-loop',
        '--replay-rate',
        '5000',
        '--node',
        'cli-node',
        '--set',
        `kafka.brokers=${brokers.join(',')}`,
        '--set',
        `kafka.topicPrefix=${topicPrefix}`,
        '--set',
        'http.port=0',
        '--set',
        'collector.batchMaxMs=2000', // so SIGTERM finds an open batch to flush
      ]);
      const until = Date.now() + 90_000;
      while (!run.stdout().includes('"msg":"topics ready')) {
        if (Date.now() > until) throw new Error(`collector did not get going: ${run.stderr().slice(-1000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 3_000));
      // The metrics endpoint tells the same story while it runs.
      const port = Number(/"port":(\d+),"msg":"metrics on/.exec(run.stdout())?.[1]);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const value = (name: string): number =>
        Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
      expect(value('ktrail_collector_events_delivered_total')).toBeGreaterThan(0);
      expect(metrics).toMatch(/ktrail_collector_events_captured_total\{kind="tcp_close"/);
      expect(metrics).toMatch(/ktrail_collector_events_dropped_total\{reason="buffer_full"/);
      expect(metrics).toContain('ktrail_collector_oldest_unsent_seconds');
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const t0 = Date.now();
      run.child.kill('SIGTERM');
      expect(await run.exit).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000 + 5_000); // the default deadline, plus exit
      const line =
        /collector stopped: captured (\d+), delivered (\d+), dropped (\d+) .* unaccounted (-?\d+)/.exec(
          run.stderr(),
        );
      expect(line).not.toBeNull();
      const [captured, delivered, dropped, unaccounted] = (line as RegExpExecArray).slice(1).map(Number);
      expect(unaccounted).toBe(0);
      expect(dropped).toBe(0);
      expect(delivered).toBe(captured);
      expect(captured).toBeGreaterThan(5_000);

      const resolver = createSchemaResolver();
      const inKafka = (await readTopic(brokers, topicNames(topicPrefix).events))
        .map((m) => resolver.decodeAs('EventBatch', m.value) as EventBatch)
        .reduce((n, b) => n + b.events.length, 0);
      expect(inKafka).toBe(delivered);
    },
    180_000,
  );
});
