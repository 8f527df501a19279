// Memory of containers shorter than the sampling interval, through everything real: Docker
// containers that touch a known amount of memory, the eBPF collector CLI (the kernel reads
// each memory cgroup's peak at its removal), the broker, the processor CLI on chDB. Every
// container gets exactly one memory_sample row with flag 16 (KT_F_MEMORY_RELEASE) whose peak
// is within 10% of what it touched: one that holds 64 MiB for 1 s, one whose process lives
// less than 100 ms, and one OOM-killed at a 32 MiB limit.
import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import type { httpRunner, Row } from '../../deploy/clickhouse/queries.js';
import { launchCli, startProcessorCli, stopCli } from '../support/cli-child.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { freePort } from '../support/up-stack.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const kafka = inject('kafka');
const docker = inject('docker');
const missing = missingRoot() ?? endpointOrReason(kafka).missing ?? endpointOrReason(docker).missing;
const it = itReal(missing);
const IMAGE = endpointOrReason(docker).value?.image ?? '';

const RUN = `peak${Date.now().toString(36)}`;
const NODE = `${RUN}-node`;
const MiB = 1024 * 1024;
const MEMORY_RELEASE = 16;

/** `docker run --rm` of a busybox command line; resolves to the container id (kept in a cidfile). */
async function runContainer(what: string, dockerArgs: string[], command: string[]): Promise<string> {
  const cidDir = mkdtempSync(join(tmpdir(), 'ktrail-peak-'));
  const cidfile = join(cidDir, 'cid');
  await run(
    'docker',
    [
      'run',
      '--rm',
      '--network',
      'none',
      '--cidfile',
      cidfile,
      '--label',
      `ktrail.e2e=${RUN}`,
      '--name',
      `${RUN}-${what}`,
      ...dockerArgs,
      IMAGE,
      ...command,
    ],
    { timeout: 60_000 },
  ).catch((err: Error & { code?: number }) => {
    if (typeof err.code !== 'number') throw err; // a non-zero exit is the container's (OOM kill)
  });
  const id = readFileSync(cidfile, 'utf8').trim();
  rmSync(cidDir, { recursive: true, force: true });
  return id;
}

describe('peak memory of short containers: docker -> eBPF -> Kafka -> processor -> chDB', () => {
  const logs = { collector: [] as string[], processor: [] as string[] };
  const chdbDir = join(mkdtempSync(join(tmpdir(), 'ktrail-peak-')), 'chdb');
  let collector: ChildProcess | undefined;
  let processor: ChildProcess | undefined;
  let sql: ReturnType<typeof httpRunner>;
  const one = async (query: string): Promise<Row | undefined> => (await sql.rows(query))[0];

  beforeAll(async () => {
    if (missing !== undefined || 'missing' in kafka) return;
    const common = {
      KTRAIL_NODE: NODE,
      KTRAIL_KAFKA_BROKERS: kafka.brokers.join(','),
      KTRAIL_KAFKA_TOPIC_PREFIX: `${RUN}.`,
      KTRAIL_KAFKA_PARTITIONS: '1',
      KTRAIL_LOG_LEVEL: 'info',
    };
    const started = await startProcessorCli(
      { ...common, KTRAIL_PROCESSOR_GROUP_ID: `${RUN}-processors`, KTRAIL_PROCESSOR_BATCH_MAX_MS: '500' },
      chdbDir,
      logs.processor,
    );
    processor = started.child;
    sql = started.sql;
    collector = launchCli(
      'collector',
      {
        ...common,
        KTRAIL_HTTP_PORT: String(await freePort()),
        KTRAIL_COLLECTOR_BATCH_MAX_MS: '200',
      },
      logs.collector,
    );
    await waitFor(
      'first events from the collector',
      async () =>
        Number((await one(`SELECT count() AS n FROM ktrail.event_batches WHERE node = '${NODE}'`))?.n) > 0
          ? true
          : undefined,
      120_000,
      1000,
    );
  }, 300_000);

  afterAll(async () => {
    const collectorExit = await stopCli(collector);
    await stopCli(processor);
    if (collectorExit !== 0 && collector)
      console.error(`collector log tail:\n${logs.collector.slice(-40).join('')}`);
    else rmSync(join(chdbDir, '..'), { recursive: true, force: true });
  }, 120_000);

  /** The container's release rows (flag 16), found through its cgroup in the containers table. */
  async function releaseRows(id: string): Promise<Row[]> {
    return sql.rows(
      `SELECT toString(peak_bytes) AS peak, toString(current_bytes) AS current,
              toString(limit_bytes) AS lim, toString(oom_events) AS ooms, toString(cgroup_id) AS cgroup,
              container_id, join_state
       FROM ktrail.memory_sample
       WHERE node = '${NODE}' AND bitAnd(flags, ${MEMORY_RELEASE}) != 0
         AND cgroup_id IN (SELECT cgroup_id FROM ktrail.containers WHERE node = '${NODE}' AND container_id = '${id}')`,
    );
  }

  const released = (what: string, id: string) =>
    waitFor(
      `the release row of the ${what} container`,
      async () => {
        const rows = await releaseRows(id);
        return rows.length > 0 ? rows : undefined;
      },
      90_000,
      1000,
    );

  it('every container has one release row; its peak is what it touched, within 10%', async () => {
    // 64 MiB filled by dd and held for 1 s (dd blocks writing to a pipe nobody reads).
    const held = await runContainer(
      'held',
      [],
      ['sh', '-c', 'dd if=/dev/zero bs=64M count=1 2>/dev/null | sleep 1'],
    );
    // 32 MiB, and the process exits at once.
    const flash = await runContainer(
      'flash',
      [],
      ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=32M', 'count=1'],
    );
    // 64 MiB asked for under a 32 MiB limit: OOM-killed.
    const oom = await runContainer(
      'oom',
      ['--memory', '32m', '--memory-swap', '32m'],
      ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
    );

    const heldRows = await released('64 MiB', held);
    const flashRows = await released('32 MiB', flash);
    const oomRows = await released('OOM-killed', oom);
    // Time for a duplicate to show up, were one written.
    await new Promise((r) => setTimeout(r, 3_000));
    for (const id of [held, flash, oom]) expect(await releaseRows(id)).toHaveLength(1);

    const peak = (rows: Row[]) => Number(rows[0]?.peak);
    for (const [rows, touched] of [
      [heldRows, 64 * MiB],
      [flashRows, 32 * MiB],
    ] as const) {
      expect(peak(rows)).toBeGreaterThanOrEqual(touched);
      expect(peak(rows)).toBeLessThanOrEqual(touched * 1.1);
      expect(rows[0]).toMatchObject({ lim: '0' });
    }
    expect(oomRows[0]).toMatchObject({ lim: String(32 * MiB) });
    expect(peak(oomRows)).toBeGreaterThan(30 * MiB);
    expect(peak(oomRows)).toBeLessThanOrEqual(32 * MiB);

    // Each OOM kill is counted once over a cgroup's rows: a periodic sample taken between the
    // kill and the cgroup's removal reports it, and the release row then reports only the rest.
    // The rollup the right-sizing and memory-peak queries read carries the same peak and count.
    for (const [rows, ooms] of [
      [heldRows, '0'],
      [flashRows, '0'],
      [oomRows, '1'],
    ] as const) {
      const cgroup = rows[0]?.cgroup;
      const samples = await one(
        `SELECT toString(max(peak_bytes)) AS peak, toString(sum(oom_events)) AS ooms FROM ktrail.memory_sample
         WHERE node = '${NODE}' AND cgroup_id = ${cgroup}`,
      );
      expect(samples).toEqual({ peak: rows[0]?.peak, ooms });
      const rollup = await one(
        `SELECT toString(max(mem_peak_bytes)) AS peak, toString(sum(oom_events)) AS ooms FROM ktrail.usage_1h
         WHERE node = '${NODE}' AND cgroup_id = ${cgroup}`,
      );
      expect(rollup).toEqual(samples);
    }

    // The 32 MiB container's command lived less than 100 ms: the kernel's exec of dd -> its
    // exit. The process itself is older: it was runc's init before the exec.
    const flashCgroup = String(flashRows[0]?.cgroup);
    const life = await waitFor(
      'the 32 MiB container process exit',
      () =>
        one(
          `SELECT (any(x.ts_ns) - min(e.ts_ns)) / 1e6 AS ms
           FROM ktrail.proc_exec AS e INNER JOIN ktrail.proc_exit AS x ON x.tgid = e.tgid AND x.cgroup_id = e.cgroup_id
           WHERE e.node = '${NODE}' AND x.node = '${NODE}' AND e.cgroup_id = ${flashCgroup} AND x.comm = 'dd'
           HAVING count() > 0`,
        ),
      60_000,
      1000,
    );
    expect(Number(life.ms)).toBeLessThan(100);
    const cgroupLife = await one(
      `SELECT (max(r.ts_ns) - max(m.ts_ns)) / 1e6 AS ms
       FROM ktrail.cgroup_mkdir AS m, ktrail.cgroup_rmdir AS r
       WHERE m.node = '${NODE}' AND r.node = '${NODE}' AND m.cgroup_id = ${flashCgroup} AND r.cgroup_id = ${flashCgroup}`,
    );
    console.log(
      `[peak-memory] 64 MiB held 1 s: peak ${peak(heldRows)} B (+${((peak(heldRows) / (64 * MiB) - 1) * 100).toFixed(2)}%), ` +
        `32 MiB: peak ${peak(flashRows)} B (+${((peak(flashRows) / (32 * MiB) - 1) * 100).toFixed(2)}%), ` +
        `dd lived ${Number(life.ms).toFixed(1)} ms, cgroup ${Number(cgroupLife?.ms).toFixed(1)} ms; ` +
        `OOM: peak ${peak(oomRows)} B at a ${32 * MiB} B limit; ` +
        `join states ${[heldRows, flashRows, oomRows].map((r) => r[0]?.join_state).join(', ')}`,
    );
  });
});
