// The collector within its DaemonSet's memory limit through a Kafka outage (DESIGN.md
// pitfall 17). The compiled collector runs through the image's entrypoint, as shipped, as a
// process of its own inside a memory cgroup whose limit is the DaemonSet's `limits.memory`
// (test/support/memory-cgroup.ts: v2 memory.max where v2 has the controller, the v1 memory
// controller on these hybrid machines). It replays a synthetic capture at 120k events/s into
// a broker of this test's own, which is stopped for 60 s: long enough to fill the events
// buffer its budget allows (derived at start from the cgroup's limit) and drop the oldest.
// Checked: no OOM kill, the process alive throughout and exiting 0, the buffer at its bound,
// and captured = delivered + dropped(buffer_full) exactly, against the topic's contents.
import { type ChildProcess, execFile } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { writeSyntheticCapture } from '../../bench/collector/synthetic.js';
import { topicNames } from '../../common/kafka-topics.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { createSchemaResolver } from '../../schemas/codec.js';
import type { EventBatch } from '../../schemas/types.js';
import { type PrivateBroker, privateBroker, sharedKafkaLibs } from '../support/kafka.js';
import {
  createMemoryCgroup,
  type MemoryCgroup,
  manifestMemoryLimit,
  missingMemoryCgroup,
  processRss,
} from '../support/memory-cgroup.js';
import { freePorts } from '../support/ports.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RATE = 120_000;
const OUTAGE_MS = 60_000;
const LIMIT = manifestMemoryLimit(join(REPO_ROOT, 'deploy/k8s/collector-daemonset.yaml'));
const NODE = 'mem-node';
const MiB = 2 ** 20;

const kafka = endpointOrReason(inject('kafka'));
const missing =
  kafka.missing ??
  missingMemoryCgroup() ??
  (existsSync(sharedKafkaLibs) ? undefined : `no Kafka jars in ${sharedKafkaLibs}`);

const work = mkdtempSync(join(tmpdir(), 'ktrail-collector-memory-'));
let own: PrivateBroker | undefined;
let child: ChildProcess | undefined;
let cgroup: MemoryCgroup | undefined;

beforeAll(async () => {
  // What ships: compiled JavaScript through the image's entrypoint (its node flags and env).
  await run('npm', ['run', '--silent', 'build:js'], { cwd: REPO_ROOT, timeout: 180_000 });
}, 200_000);
afterAll(async () => {
  child?.kill('SIGKILL');
  await cgroup?.remove();
  await own?.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

/** Sums of the collector's counters in Prometheus text (labelled series added up). */
function counters(text: string) {
  const sum = (name: string, label?: string) => {
    let total = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (label !== undefined && !line.includes(label)) continue;
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  };
  return {
    captured: sum('ktrail_collector_events_captured_total'),
    delivered: sum('ktrail_collector_events_delivered_total'),
    bufferFull: sum('ktrail_collector_events_dropped_total', 'reason="buffer_full"'),
    bufferBytes: sum('ktrail_collector_buffer_bytes'),
  };
}

itReal(missing)(
  `Kafka down 60 s at ${RATE / 1000}k events/s in the DaemonSet's ${LIMIT / MiB} MiB: no OOM kill, exact accounting`,
  async () => {
    own = await privateBroker(work);
    await own.start();
    const file = join(work, 'stream.ktcap');
    await writeSyntheticCapture(file, { records: 100_000, perBatch: 512 });
    const topicPrefix = `colmem-${Date.now().toString(36)}.`;
    const [httpPort] = await freePorts(1);

    cgroup = createMemoryCgroup('collector-memory', LIMIT);
    const log = join(work, 'collector.log');
    const out = createWriteStream(log);
    let stderr = '';
    child = cgroup.spawn(
      'sh',
      [
        join(REPO_ROOT, 'deploy/docker/entrypoint.sh'),
        'collector',
        '--replay',
        file,
        '--replay-rate',
        String(RATE),
        '--replay-loop',
        '--node',
        NODE,
        ...['--set', `kafka.brokers=${own.brokers.join(',')}`, '--set', `kafka.topicPrefix=${topicPrefix}`],
        ...['--set', `http.port=${httpPort}`, '--set', 'collector.shutdownDeadlineMs=60000'],
      ],
      { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.pipe(out);
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let exit: { code: number | null; signal: string | null } | undefined;
    child.once('exit', (code, signal) => {
      exit = { code, signal };
    });
    const tail = () => `${readFileSync(log, 'utf8').split('\n').slice(-10).join('\n')}\n${stderr}`;
    const scrape = async () => counters(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text());

    await waitFor(
      'first deliveries',
      async () => {
        if (exit !== undefined) throw new Error(`collector exited ${JSON.stringify(exit)}:\n${tail()}`);
        const c = await scrape().catch(() => undefined);
        return c !== undefined && c.delivered > 0 ? c : undefined;
      },
      60_000,
      500,
    );
    const plan = JSON.parse(
      readFileSync(log, 'utf8')
        .split('\n')
        .find((l) => l.includes('"bufferMaxBytes"')) ?? '{}',
    ) as { budget?: { bytes: number; source: string }; bufferMaxBytes?: number };
    expect(plan.budget).toMatchObject({ bytes: LIMIT, source: 'cgroup' });
    const bufferMaxBytes = plan.bufferMaxBytes as number;
    await sleep(5_000);
    const before = { rss: processRss(child.pid as number)?.rss ?? 0, usage: cgroup.usageBytes() };

    await own.stop();
    const atStop = await scrape();
    const outageStart = Date.now();
    const samples: number[] = []; // buffered bytes
    while (Date.now() - outageStart < OUTAGE_MS) {
      await sleep(1_000);
      expect(exit, `the collector exited during the outage:\n${tail()}`).toBeUndefined();
      const c = await scrape();
      samples.push(c.bufferBytes);
    }
    const atEnd = await scrape();
    const rate = (atEnd.captured - atStop.captured) / ((Date.now() - outageStart) / 1000);
    await own.start();
    // The backlog drains: what is buffered falls to the live stream's open batches.
    await waitFor(
      'catch-up',
      async () => ((await scrape()).bufferBytes < 8 * MiB ? true : undefined),
      120_000,
      500,
    );

    const peakRss = processRss(child.pid as number)?.hwm ?? 0; // over the whole run, drain included
    child.kill('SIGTERM');
    await waitFor('the collector to stop', () => exit, 90_000, 200);
    const line =
      /collector stopped: captured (\d+), delivered (\d+), dropped (\d+) (\{[^}]*\}), pending (\d+), unaccounted (-?\d+)/.exec(
        stderr,
      );
    expect(line, `final counters on stderr:\n${tail()}`).not.toBeNull();
    const [, captured, delivered, droppedTotal, droppedJson, pending, unaccounted] = line as RegExpExecArray;
    const dropped = JSON.parse(droppedJson as string) as Record<string, number>;

    const mb = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
    const peakBuffer = Math.max(...samples);
    console.log(
      `[collector-memory] limit ${mb(LIMIT)}, bufferMaxBytes ${mb(bufferMaxBytes)}; before the outage RSS ` +
        `${mb(before.rss)}, cgroup ${mb(before.usage)}; outage at ${Math.round(rate)} events/s: peak buffer ` +
        `${mb(peakBuffer)}, peak RSS ${mb(peakRss)}, cgroup peak ${mb(cgroup.peakBytes())}; captured ${captured}, ` +
        `delivered ${delivered}, dropped ${droppedJson}, pending ${pending}`,
    );

    expect(exit).toEqual({ code: 0, signal: null });
    expect(cgroup.oomKills()).toBe(0);
    expect(cgroup.peakBytes()).toBeLessThan(LIMIT);
    expect(peakRss).toBeLessThan(LIMIT);
    expect(
      rate,
      `the replay's rate during the outage: under 50k events/s the buffer cannot fill in 60 s (a machine too busy for this test)`,
    ).toBeGreaterThanOrEqual(50_000);
    // The buffer filled to its bound and dropped the oldest, and nothing else was dropped.
    expect(peakBuffer).toBeLessThanOrEqual(bufferMaxBytes);
    expect(peakBuffer).toBeGreaterThan(bufferMaxBytes * 0.95);
    expect(dropped.buffer_full).toBeGreaterThan(0);
    expect(Number(droppedTotal)).toBe(dropped.buffer_full);
    expect(Number(pending)).toBe(0);
    expect(Number(unaccounted)).toBe(0);
    expect(Number(captured)).toBe(Number(delivered) + (dropped.buffer_full as number));

    // What the topic holds, deduplicated by sequence (a lost acknowledgement may repeat a
    // batch), is what was delivered; only a batch whose send failed mid-request may also be
    // there although counted as dropped (droppedUnconfirmed, docs/collector.md).
    const resolver = createSchemaResolver();
    const bySeq = new Map<bigint, number>();
    for (const m of await readTopic(own.brokers, topicNames(topicPrefix).events, 180_000)) {
      const batch = resolver.decodeAs('EventBatch', m.value) as EventBatch;
      if (batch.node === NODE) bySeq.set(batch.sequence, batch.events.length);
    }
    const inKafka = [...bySeq.values()].reduce((a, n) => a + n, 0);
    const unconfirmed = Number(/"droppedUnconfirmed":(\d+)/.exec(readFileSync(log, 'utf8'))?.[1] ?? 0);
    expect(inKafka).toBeGreaterThanOrEqual(Number(delivered));
    expect(inKafka).toBeLessThanOrEqual(Number(delivered) + unconfirmed);
    const maxSeq = [...bySeq.keys()].reduce((a, s) => (s > a ? s : a), -1n);
    expect(Number(maxSeq) + 1 - bySeq.size).toBeGreaterThan(0); // the drops are sequence gaps downstream
  },
  290_000,
);
