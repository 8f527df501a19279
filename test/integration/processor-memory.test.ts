// The processor within its Deployment's memory limit through a ClickHouse outage (DESIGN.md
// pitfall 17). The processor runs as a process of its own (test/support/processor-child.ts:
// the CLI's service path, processor/src/run.ts) inside a memory cgroup whose limit is the
// Deployment's `limits.memory`, over 24 partitions, while ~19k events/s are produced; its
// ClickHouse server (Debian's 18.16 on ports of this test, as processor-outage does: minimal
// tables, no dedup tokens) is stopped for 60 s, so every insert fails.
//
// Without a bound every partition holds a cut being written plus an open batch of up to
// batchMaxRows: ~1.1M rows by the end of the outage, twice the V8 heap Node gives itself in
// 1 GiB. With it (processor.pendingMaxRows, derived from the cgroup's limit at start) the
// member pauses fetching at the bound and the rest waits in Kafka. Checked: no OOM kill, the
// process alive throughout and exiting 0, pending rows held at the bound, and after the
// outage every event is a row (twice only if it was in flight as the server went away: this
// server has no dedup tokens; exactly-once is shown on chDB).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject } from 'vitest';
import { createTestTopics, kafkaClient } from '../../bench/processor/harness.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import {
  createLegacyEventTables,
  type PrivateServer,
  queryRows,
  startPrivateClickHouseServer,
} from '../support/clickhouse.js';
import {
  createMemoryCgroup,
  type MemoryCgroup,
  manifestMemoryLimit,
  missingMemoryCgroup,
  processRss,
} from '../support/memory-cgroup.js';
import {
  metric,
  processorSettingsForLoad,
  STEADY_LOAD,
  spawnLogged,
  startPartitionLoad,
} from '../support/partition-load.js';
import { freePorts } from '../support/ports.js';
import { endpointOrReason, itReal } from '../support/real.js';
import { waitFor } from '../support/wait.js';

const kafka = endpointOrReason(inject('kafka'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PARTITIONS = STEADY_LOAD.partitions;
const OUTAGE_MS = 60_000;
const LIMIT = manifestMemoryLimit(join(REPO_ROOT, 'deploy/k8s/processor-deployment.yaml'));

const work = mkdtempSync(join(tmpdir(), 'ktrail-processor-memory-'));
let server: PrivateServer | undefined;
let serverMissing = missingMemoryCgroup();
if (serverMissing === undefined)
  try {
    server = await startPrivateClickHouseServer(work);
  } catch (err) {
    serverMissing = `clickhouse-server unavailable: ${(err as Error).message.split('\n')[0]}`;
  }

const serverOf = (): PrivateServer => server as PrivateServer;
let child: ChildProcess | undefined;
let cgroup: MemoryCgroup | undefined;
afterAll(async () => {
  child?.kill('SIGKILL');
  await cgroup?.remove();
  await server?.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

/** The processor child (test/support/processor-child.ts) in a cgroup of the Deployment's limit, ready. */
async function startProcessor(brokers: string[], prefix: string, url: string, database: string) {
  const [httpPort] = await freePorts(1);
  const group = createMemoryCgroup('processor-memory', LIMIT);
  cgroup = group;
  const log = join(work, 'processor.log');
  const sets = processorSettingsForLoad(brokers, prefix, PARTITIONS, httpPort as number);
  const {
    child: proc,
    exit,
    tail,
  } = spawnLogged(
    group,
    process.execPath,
    [
      '--import',
      'tsx',
      'test/support/processor-child.ts',
      ...['--clickhouse-url', url, '--database', database],
      ...sets.flatMap((s) => ['--set', s]),
    ],
    log,
  );
  child = proc;
  const metrics = async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  await waitFor(
    'the processor to join and restore',
    async () => {
      if (exit() !== undefined) throw new Error(`processor exited ${JSON.stringify(exit())}:\n${tail()}`);
      const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined);
      return res?.status === 200 || undefined;
    },
    120_000,
    500,
  );
  return { child: proc, cgroup: group, log, exit, tail, metrics };
}

itReal(kafka.missing ?? serverMissing)(
  `24 partitions, ClickHouse down 60 s under load, in the Deployment's ${LIMIT / 2 ** 20} MiB: no OOM kill, no loss`,
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const server = serverOf();
    const prefix = `procmem-${Date.now().toString(36)}.`;
    const database = `ktrail_mem_${Date.now().toString(36)}`;
    const client = kafkaClient(brokers);
    const names = await createTestTopics(client, prefix, PARTITIONS);
    const ch = await createClickHouse({
      kind: 'server',
      url: server.url,
      database,
      allowWithoutDedupToken: true,
    });
    await createLegacyEventTables(ch, database);

    const proc = await startProcessor(brokers, prefix, server.url, database);
    const { tail, metrics } = proc;
    const plan = JSON.parse(
      readFileSync(proc.log, 'utf8')
        .split('\n')
        .find((l) => l.includes('pendingMaxRows')) ?? '{}',
    ) as { budget?: { bytes: number; source: string }; pendingMaxRows?: number };
    expect(plan.budget).toMatchObject({ bytes: LIMIT, source: 'cgroup' });
    const maxRows = plan.pendingMaxRows as number;

    const load = await startPartitionLoad(client, names.events, 'mem');
    const rows = async () => {
      const [r] = await queryRows<{ n: string; d: string }>(
        ch,
        `SELECT count() AS n, uniqExact(node, ts_ns) AS d FROM ${database}.cpu_sample`,
      );
      return { n: Number(r?.n), d: Number(r?.d) };
    };
    await waitFor('rows flowing', async () => ((await rows()).n > 50_000 ? true : undefined), 60_000, 500);
    const before = { rss: processRss(proc.child.pid as number)?.rss ?? 0, usage: proc.cgroup.usageBytes() };

    await server.stop();
    const samples: Array<{ pending: number; paused: number }> = [];
    const outageEnd = Date.now() + OUTAGE_MS;
    while (Date.now() < outageEnd) {
      await sleep(1_000);
      expect(proc.exit(), `the processor exited during the outage:\n${tail()}`).toBeUndefined();
      const text = await metrics();
      samples.push({
        pending: metric(text, 'ktrail_processor_pending_rows'),
        paused: metric(text, 'ktrail_processor_fetch_paused_partitions'),
      });
    }
    const atOutageEnd = load.produced;
    await server.start();
    await load.stop();
    const { produced, messages } = load;

    const deadline = Date.now() + 150_000;
    let final = await rows();
    while (final.n < produced && Date.now() < deadline && proc.exit() === undefined) {
      await sleep(1_000);
      final = await rows();
    }
    const text = await metrics();
    const peakRss = processRss(proc.child.pid as number)?.hwm ?? 0; // over the whole run, drain included
    const peakPending = metric(text, 'ktrail_processor_pending_rows_peak');
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    console.log(
      `[processor-memory] limit ${mb(LIMIT)}, pendingMaxRows ${maxRows}; before the outage RSS ${mb(before.rss)}, ` +
        `cgroup ${mb(before.usage)}; outage: produced ` +
        `${atOutageEnd}, peak pending ${peakPending}, paused partitions up to ` +
        `${Math.max(...samples.map((s) => s.paused))}, pauses ${metric(text, 'ktrail_processor_fetch_pauses_total')}; ` +
        `peak RSS ${mb(peakRss)}, cgroup peak ${mb(proc.cgroup.peakBytes())}; ` +
        `rows ${final.n} of ${produced}, distinct ${final.d} (pending 1 s into the outage ${samples[0]?.pending})`,
    );

    expect(proc.exit(), `the processor exited:\n${tail()}`).toBeUndefined();
    expect(proc.cgroup.oomKills()).toBe(0);
    expect(proc.cgroup.peakBytes()).toBeLessThan(LIMIT);
    expect(peakRss).toBeLessThan(LIMIT);
    // The bound engaged and held: a message is taken whole, so at most one message's rows past it.
    expect(Math.max(...samples.map((s) => s.paused))).toBeGreaterThan(0);
    expect(peakPending).toBeLessThanOrEqual(maxRows + STEADY_LOAD.eventsPerMessage + 1);
    expect(Math.max(...samples.map((s) => s.pending))).toBeGreaterThanOrEqual(maxRows);
    // Nothing lost. Written twice only what may have landed as the server went away: 18.16 has
    // no dedup tokens, so an insert in flight at the stop whose reply was lost is written again
    // on retry. Such rows were all still pending 1 s into the outage (nothing commits while it
    // lasts), and each is at most twice: later attempts are refused outright.
    const inFlightBound = samples[0]?.pending ?? 0;
    expect(final.d).toBe(produced);
    expect(final.n - final.d).toBeLessThanOrEqual(inFlightBound);
    const [copies] = await queryRows<{ c: string }>(
      ch,
      `SELECT max(c) AS c FROM (SELECT count() AS c FROM ${database}.cpu_sample GROUP BY node, ts_ns)`,
    );
    expect(Number(copies?.c)).toBeLessThanOrEqual(2);
    const [batches] = await queryRows<{ n: string; d: string }>(
      ch,
      `SELECT count() AS n, uniqExact(node, sequence) AS d FROM ${database}.event_batches`,
    );
    expect(Number(batches?.d)).toBe(messages);
    expect(Number(batches?.n) - messages).toBeLessThanOrEqual(
      Math.ceil(inFlightBound / STEADY_LOAD.eventsPerMessage),
    );

    proc.child.kill('SIGTERM');
    await waitFor('the processor to stop', proc.exit, 60_000, 200);
    expect(proc.exit()).toEqual({ code: 0, signal: null });
    expect(proc.cgroup.oomKills()).toBe(0);
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await ch.close();
  },
  290_000,
);
