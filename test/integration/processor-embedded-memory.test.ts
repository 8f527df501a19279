// The processor on the embedded chDB engine in the smallest memory limit its budget rule
// accepts (common/memory-budget.ts PROCESSOR_BASELINE_BYTES.embedded): the CLI as production
// starts it (deploy/docker/entrypoint.sh's Node flags, processor/src/cli.ts, its own store)
// inside a 500 MiB memory cgroup, its budget and pending bound derived from that limit, while
// ~19k events/s arrive over 24 partitions, then the load stops. Checked: the rule accepted the
// limit, no OOM kill, the process alive throughout and exiting 0 on SIGTERM, and every event
// a row exactly once (through the processor's own query endpoint: chDB is one process per
// store). The drain of a backlog in the same limit is the processor bench's (memory-limit.ts).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject } from 'vitest';
import { createTestTopics, kafkaClient } from '../../bench/processor/harness.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { runAs } from '../../common/run-as.js';
import { processorSql } from '../support/cli-child.js';
import {
  createMemoryCgroup,
  type MemoryCgroup,
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
const LIMIT = 500 * 2 ** 20;
const PARTITIONS = STEADY_LOAD.partitions;
const LOAD_MS = 60_000;

const work = mkdtempSync(join(tmpdir(), 'ktrail-embedded-memory-'));
let child: ChildProcess | undefined;
let cgroup: MemoryCgroup | undefined;
afterAll(async () => {
  child?.kill('SIGKILL');
  await cgroup?.remove();
  rmSync(work, { recursive: true, force: true });
});

itReal(kafka.missing ?? missingMemoryCgroup())(
  '24 partitions at ~19k events/s on the embedded engine in 500 MiB: no OOM kill, no loss',
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const prefix = `embmem-${Date.now().toString(36)}.`;
    const client = kafkaClient(brokers);
    const names = await createTestTopics(client, prefix, PARTITIONS);
    const [httpPort, queryPort] = await freePorts(2);
    const sets = [
      ...processorSettingsForLoad(brokers, prefix, PARTITIONS, httpPort as number),
      `processor.queryPort=${queryPort}`,
    ];
    const chdbDir = join(work, 'store', 'chdb');
    const run = runAs('processor', join(REPO_ROOT, 'processor/src/cli.ts'), [
      '--chdb-path',
      chdbDir,
      ...sets.flatMap((s) => ['--set', s]),
    ]);
    cgroup = createMemoryCgroup('embedded-memory', LIMIT);
    const group = cgroup;
    const logFile = join(work, 'processor.log');
    const { child: proc, exit, tail } = spawnLogged(group, run.command, run.args, logFile, run.env);
    child = proc;
    const sql = await Promise.race([
      processorSql(join(work, 'store'), queryPort as number),
      waitFor('the processor to exit', exit, 180_000, 200).then(() => {
        throw new Error(`the processor exited ${JSON.stringify(exit())}:\n${tail()}`);
      }),
    ]);
    const logLines = readFileSync(logFile, 'utf8').split('\n');
    const plan = JSON.parse(logLines.find((l) => l.includes('pendingMaxRows')) ?? '{}') as {
      pid?: number;
      budget?: { bytes: number; source: string };
      pendingMaxRows?: number;
    };
    expect(plan.budget).toMatchObject({ bytes: LIMIT, source: 'cgroup' });
    expect(plan.pendingMaxRows).toBeGreaterThanOrEqual(10_000);
    const pid = plan.pid as number;

    const load = await startPartitionLoad(client, names.events, 'emb');
    const rss: number[] = [];
    const loadEnd = Date.now() + LOAD_MS;
    while (Date.now() < loadEnd) {
      await sleep(1_000);
      expect(exit(), `the processor exited under load:\n${tail()}`).toBeUndefined();
      rss.push(processRss(pid)?.rss ?? 0);
    }
    await load.stop();
    const { produced, messages } = load;
    const rows = async () => {
      const [r] = await sql.rows(
        `SELECT count() AS n, uniqExact(node, ts_ns) AS d FROM ktrail.cpu_sample WHERE node LIKE 'emb-%'`,
      );
      return { n: Number(r?.n), d: Number(r?.d) };
    };
    const deadline = Date.now() + 120_000;
    let final = await rows();
    while (final.n < produced && Date.now() < deadline && exit() === undefined) {
      await sleep(1_000);
      final = await rows();
    }
    const [batches] = await sql.rows(`SELECT count() AS n FROM ktrail.event_batches WHERE node LIKE 'emb-%'`);
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    rss.sort((a, b) => a - b);
    console.log(
      `[embedded-memory] limit ${mb(LIMIT)}, pendingMaxRows ${plan.pendingMaxRows}; under load RSS median ` +
        `${mb(rss[rss.length >> 1] ?? 0)}, max ${mb(rss.at(-1) ?? 0)}, peak ${mb(processRss(pid)?.hwm ?? 0)}; ` +
        `cgroup peak ${mb(group.peakBytes())}, limit reached ${group.limitHits()} times; peak pending ` +
        `${metric(text, 'ktrail_processor_pending_rows_peak')}; rows ${final.n} of ${produced}, distinct ${final.d}`,
    );

    expect(exit(), `the processor exited:\n${tail()}`).toBeUndefined();
    expect(group.oomKills()).toBe(0);
    expect(final.n).toBe(produced);
    expect(final.d).toBe(produced);
    expect(Number(batches?.n)).toBe(messages);

    proc.kill('SIGTERM');
    await waitFor('the processor to stop', exit, 60_000, 200);
    expect(exit()).toEqual({ code: 0, signal: null });
    expect(group.oomKills()).toBe(0);
    // Its topics go with the run's (test/support/global-setup.ts deletes what a run created).
  },
  420_000,
);
