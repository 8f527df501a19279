// Containers that exit at once are named everywhere: 20 `docker run --rm ... true` and 20
// `ctr run --rm ... true` (real dockerd and containerd), seen by the real eBPF collector,
// through the real broker to the processor CLI on chDB. Every row of every one of them, in
// every event table, is joined with the container's name and image, and so is every event
// of them in the enriched topic (what alerting jobs read); no container in `containers`
// stops before it starts.
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Consumer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { kafkaClient } from '../../bench/processor/harness.js';
import type { httpRunner, Row } from '../../deploy/clickhouse/queries.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
import type { EnrichedBatch } from '../../schemas/types.js';
import { launchCli, startProcessorCli, stopCli } from '../support/cli-child.js';
import { type ContainerdEndpoint, ensureContainerd } from '../support/docker.js';
import { endpointOrReason, itReal, missingRoot } from '../support/real.js';
import { freePort } from '../support/up-stack.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const kafka = inject('kafka');
const docker = inject('docker');
const rootMissing = missingRoot();
const containerd: { value?: ContainerdEndpoint; missing?: string } = rootMissing
  ? { missing: rootMissing }
  : await ensureContainerd().then(
      (value) => ({ value }),
      (err: Error) => ({ missing: `containerd unavailable: ${err.message}` }),
    );
const missing =
  rootMissing ?? endpointOrReason(kafka).missing ?? endpointOrReason(docker).missing ?? containerd.missing;
const it = itReal(missing);
const DOCKER_IMAGE = endpointOrReason(docker).value?.image ?? '';

const RUNS = 20;
const RUN = `brief${Date.now().toString(36)}`;
const NODE = `${RUN}-node`;

/** A container the test ran: its id, and the name and image every row of it must carry. */
type Expected = { id: string; name: string; image: string };

describe('containers that exit at once: named in every table and in the enriched topic', () => {
  const logs = { collector: [] as string[], processor: [] as string[] };
  const chdbDir = join(mkdtempSync(join(tmpdir(), 'ktrail-brief-')), 'chdb');
  let collector: ChildProcess | undefined;
  let processor: ChildProcess | undefined;
  let consumer: Consumer | undefined;
  let sql: ReturnType<typeof httpRunner>;
  const enriched: EnrichedBatch[] = [];
  const expected: Expected[] = [];
  const common = {
    KTRAIL_NODE: NODE,
    KTRAIL_KAFKA_BROKERS: 'missing' in kafka ? '' : kafka.brokers.join(','),
    KTRAIL_KAFKA_TOPIC_PREFIX: `${RUN}.`,
    KTRAIL_KAFKA_PARTITIONS: '2',
    KTRAIL_LOG_LEVEL: 'info',
  };
  const rows = (query: string): Promise<Row[]> => sql.rows(query);

  /** `docker run --rm` of `true`: the container is gone before `docker run` returns. */
  async function dockerOnce(i: number): Promise<void> {
    const name = `${RUN}-d${i}`;
    const cidfile = join(chdbDir, '..', `${name}.cid`);
    await run('docker', [
      'run',
      '--rm',
      '--network',
      'none',
      '--cidfile',
      cidfile,
      '--label',
      `ktrail.e2e=${RUN}`,
      '--name',
      name,
      DOCKER_IMAGE,
      'true',
    ]);
    expected.push({ id: readFileSync(cidfile, 'utf8').trim(), name, image: DOCKER_IMAGE });
    rmSync(cidfile);
  }

  /** `ctr run --rm` of `true` in containerd's k8s.io namespace; a plain container is named by its id. */
  async function containerdOnce(): Promise<void> {
    const ep = containerd.value as ContainerdEndpoint;
    const id = randomBytes(32).toString('hex');
    await run('ctr', ['--address', ep.socketPath, '-n', ep.namespace, 'run', '--rm', ep.image, id, 'true']);
    expected.push({ id, name: id, image: ep.image });
  }

  beforeAll(async () => {
    if (missing !== undefined || 'missing' in kafka) return;
    const proc = await startProcessorCli(
      { ...common, KTRAIL_PROCESSOR_GROUP_ID: `${RUN}-processors` },
      chdbDir,
      logs.processor,
    );
    processor = proc.child;
    sql = proc.sql;
    collector = launchCli(
      'collector',
      { ...common, KTRAIL_HTTP_PORT: String(await freePort()), KTRAIL_COLLECTOR_BATCH_MAX_MS: '200' },
      logs.collector,
    );
    await waitFor(
      'first events from the collector',
      async () =>
        Number((await rows(`SELECT count() AS n FROM ktrail.event_batches WHERE node = '${NODE}'`))[0]?.n) > 0
          ? true
          : undefined,
      120_000,
      1000,
    );
    const decode = createTopicDecoder();
    consumer = kafkaClient(kafka.brokers, `${RUN}-enriched-reader`).consumer({ groupId: `${RUN}-enriched` });
    await consumer.connect();
    await consumer.subscribe({ topic: `${RUN}.events.enriched`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.value !== null) enriched.push(decode('enriched', message.value));
      },
    });

    const started = Date.now();
    for (let i = 0; i < RUNS; i++) await dockerOnce(i);
    for (let i = 0; i < RUNS; i++) await containerdOnce();
    console.log(`[short-lived] ${expected.length} containers ran in ${Date.now() - started} ms`);
  }, 600_000);

  afterAll(async () => {
    await consumer?.disconnect();
    const collectorExit = await stopCli(collector);
    await stopCli(processor);
    if (collectorExit !== 0 && collector)
      console.error(`collector log tail:\n${logs.collector.slice(-40).join('')}`);
  }, 120_000);

  it('every row of every container is joined with its name and image, in every event table and the enriched topic', async () => {
    const ids = expected.map((e) => `'${e.id}'`).join(',');
    // The cgroup of each container, as the collector's records named it.
    const cgroups = await waitFor(
      'a cgroup id for every container',
      async () => {
        const found = await rows(
          `SELECT DISTINCT container_id, cgroup_id FROM ktrail.containers
           WHERE node = '${NODE}' AND container_id IN (${ids}) AND cgroup_id != 0`,
        );
        return new Set(found.map((r) => r.container_id)).size === expected.length ? found : undefined;
      },
      60_000,
      1000,
    );
    const byCgroup = new Map<string, Expected>();
    for (const c of cgroups)
      byCgroup.set(String(c.cgroup_id), expected.find((e) => e.id === c.container_id) as Expected);
    const cgroupList = [...byCgroup.keys()].join(',');
    await waitFor(
      'the exec and the exit of every container',
      async () => {
        const r = await rows(
          `SELECT uniqExact(cgroup_id) AS n FROM ktrail.proc_exit
           WHERE node = '${NODE}' AND cgroup_id IN (${cgroupList})
             AND cgroup_id IN (SELECT cgroup_id FROM ktrail.proc_exec WHERE node = '${NODE}')`,
        );
        return Number(r[0]?.n) === byCgroup.size ? true : undefined;
      },
      60_000,
      1000,
    );
    // A row that found no name waits at most the late-metadata wait (5 s), then goes out pending.
    await new Promise((r) => setTimeout(r, 8_000));

    const tables = (
      await rows(
        `SELECT table FROM system.columns WHERE database = 'ktrail' AND name = 'join_state'
           AND table IN (SELECT name FROM system.tables WHERE database = 'ktrail' AND engine LIKE '%MergeTree')`,
      )
    ).map((r) => String(r.table));
    expect(tables).toEqual(expect.arrayContaining(['proc_exec', 'proc_exit', 'proc_fork', 'cpu_sample']));
    const written = await rows(
      tables
        .map(
          (t) =>
            `SELECT '${t}' AS tbl, toString(cgroup_id) AS cgroup, toString(join_state) AS state,
               container_id, container_name, image, count() AS n
             FROM ktrail.${t} WHERE node = '${NODE}' AND cgroup_id IN (${cgroupList})
             GROUP BY cgroup, state, container_id, container_name, image`,
        )
        .join(' UNION ALL '),
    );
    const rowCount = written.reduce((sum, r) => sum + Number(r.n), 0);
    for (const r of written) {
      const want = byCgroup.get(String(r.cgroup)) as Expected;
      expect({ table: r.tbl, ...r }).toMatchObject({
        state: 'joined',
        container_id: want.id,
        container_name: want.name,
        image: want.image,
      });
    }
    for (const kind of ['proc_exec', 'proc_exit'])
      expect(new Set(written.filter((r) => r.tbl === kind).map((r) => r.cgroup)).size, kind).toBe(
        byCgroup.size,
      );

    // The enriched topic: every event of these cgroups, joined, pointing at its name and image.
    await waitFor(
      'the enriched events of every container',
      () => {
        let n = 0;
        for (const b of enriched) for (const e of b.events) if (byCgroup.has(String(e.event.cgroupId))) n++;
        return n >= rowCount ? true : undefined;
      },
      30_000,
      500,
    );
    let events = 0;
    for (const batch of enriched)
      for (const e of batch.events) {
        const want = byCgroup.get(String(e.event.cgroupId));
        if (want === undefined) continue;
        events++;
        expect(e.joinState, `${e.event.kind} of ${want.name}`).toBe('joined');
        expect(batch.containers[e.container]).toMatchObject({
          containerId: want.id,
          containerName: want.name,
          image: want.image,
        });
      }
    const perTable: Record<string, number> = {};
    for (const r of written) perTable[String(r.tbl)] = (perTable[String(r.tbl)] ?? 0) + Number(r.n);
    console.log(
      `[short-lived] ${rowCount} rows ${JSON.stringify(perTable)} and ${events} enriched events of ${byCgroup.size} containers, all named`,
    );
  });

  it('no container stops before it starts (Docker stamps a quick exit before its start); the last record names it', async () => {
    // Every record of every container the collector saw on this machine meanwhile, all versions.
    const inverted = await rows(
      `SELECT container_id, name, state, started_at_ns, stopped_at_ns FROM ktrail.containers
       WHERE node = '${NODE}' AND stopped_at_ns < started_at_ns`,
    );
    expect(inverted).toEqual([]);
    const ids = expected.map((e) => `'${e.id}'`).join(',');
    const last = await rows(
      `SELECT container_id, name, image, state, started_at_ns, stopped_at_ns FROM ktrail.containers FINAL
       WHERE node = '${NODE}' AND cgroup_id != 0 AND container_id IN (${ids})`,
    );
    expect(new Set(last.map((r) => r.container_id)).size).toBe(expected.length);
    for (const r of last) {
      // The cgroup's last record (what compaction keeps for a re-read) still names it.
      const want = expected.find((e) => e.id === r.container_id) as Expected;
      expect(r).toMatchObject({ state: 'REMOVED', name: want.name, image: want.image });
      expect(BigInt(String(r.stopped_at_ns))).toBeGreaterThanOrEqual(BigInt(String(r.started_at_ns)));
    }
  });
});
