// A crash loop through everything real: a Docker container re-created five times under one
// name (`docker run --name X ... exit 3`, then `docker rm X`), seen by the real eBPF
// collector, through the real broker to the processor CLI on chDB, which is stopped after
// the second exit and started again (same store, same group) before the other three.
// Exactly one crash_loop alert comes out, for the workload, at the third container.
import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Consumer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject } from 'vitest';
import { kafkaClient } from '../../bench/processor/harness.js';
import type { httpRunner } from '../../deploy/clickhouse/queries.js';
import type { Alert } from '../../processor/src/alerts.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
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

const RUN = `crash${Date.now().toString(36)}`;
const NODE = `${RUN}-node`;
const NAME = `${RUN}-app`;

/** One run of the crashing container: starts, lives ~200 ms, exits 3, is removed. Returns its id. */
async function crashOnce(): Promise<string> {
  await run(
    'docker',
    [
      'run',
      '--network',
      'none',
      '--label',
      `ktrail.e2e=${RUN}`,
      '--name',
      NAME,
      IMAGE,
      'sh',
      '-c',
      'sleep 0.2; exit 3',
    ],
    {
      timeout: 60_000,
    },
  ).catch((err: Error & { code?: number }) => {
    if (err.code !== 3) throw err; // docker run exits with the container's code
  });
  const { stdout } = await run('docker', ['inspect', '--format', '{{.Id}}', NAME]);
  await run('docker', ['rm', NAME]);
  return stdout.trim();
}

describe('crash loop end to end: docker -> eBPF -> Kafka -> processor (restarted) -> alert', () => {
  const logs = { collector: [] as string[], processor: [] as string[] };
  const chdbDir = join(mkdtempSync(join(tmpdir(), 'ktrail-crash-')), 'chdb');
  let collector: ChildProcess | undefined;
  let processor: ChildProcess | undefined;
  let consumer: Consumer | undefined;
  /** SQL through the running processor (it owns the store). */
  let sql: ReturnType<typeof httpRunner>;
  const alerts: Alert[] = [];
  const common = {
    KTRAIL_NODE: NODE,
    KTRAIL_KAFKA_BROKERS: 'missing' in kafka ? '' : kafka.brokers.join(','),
    KTRAIL_KAFKA_TOPIC_PREFIX: `${RUN}.`,
    KTRAIL_KAFKA_PARTITIONS: '2',
    KTRAIL_LOG_LEVEL: 'info',
  };

  /** A processor on the test's store and group; resolves once it answers SQL. */
  async function startProcessor(): Promise<void> {
    const started = await startProcessorCli(
      {
        ...common,
        KTRAIL_PROCESSOR_GROUP_ID: `${RUN}-processors`,
        KTRAIL_PROCESSOR_BATCH_MAX_MS: '500',
        KTRAIL_PROCESSOR_ALERTS_CRASH_LOOP_EXITS: '3',
        KTRAIL_PROCESSOR_ALERTS_CRASH_LOOP_WINDOW_MS: '600000',
      },
      chdbDir,
      logs.processor,
    );
    processor = started.child;
    sql = started.sql;
  }

  /** Non-zero exits of the test's containers, as the processor wrote them (joined in memory). */
  const exitsWritten = async () =>
    Number(
      (
        await sql.rows(
          `SELECT count() AS n FROM ktrail.proc_exit WHERE node = '${NODE}' AND exit_code = 3 AND comm = 'sh'`,
        )
      )[0]?.n,
    );

  beforeAll(async () => {
    if (missing !== undefined || 'missing' in kafka) return;
    await startProcessor();
    collector = launchCli(
      'collector',
      {
        ...common,
        KTRAIL_HTTP_PORT: String(await freePort()),
        KTRAIL_COLLECTOR_SAMPLE_INTERVAL_MS: '1000',
        KTRAIL_COLLECTOR_BATCH_MAX_MS: '200',
      },
      logs.collector,
    );
    await waitFor(
      'first events from the collector',
      async () =>
        Number(
          (await sql.rows(`SELECT count() AS n FROM ktrail.event_batches WHERE node = '${NODE}'`))[0]?.n,
        ) > 0
          ? true
          : undefined,
      120_000,
      1000,
    );
    const client = kafkaClient(kafka.brokers, `${RUN}-alert-reader`);
    const decode = createTopicDecoder();
    consumer = client.consumer({ groupId: `${RUN}-alert-reader` });
    await consumer.connect();
    await consumer.subscribe({ topic: `${RUN}.alerts`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.value !== null) alerts.push(decode('alerts', message.value) as Alert);
      },
    });
  }, 300_000);

  afterAll(async () => {
    await consumer?.disconnect();
    const collectorExit = await stopCli(collector);
    await stopCli(processor);
    await run('docker', ['rm', '-f', NAME]).catch(() => undefined);
    if (collectorExit !== 0 && collector)
      console.error(`collector log tail:\n${logs.collector.slice(-40).join('')}`);
  }, 120_000);

  it('five re-created containers, processor restarted after two: one crash_loop alert', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push(await crashOnce());
    await waitFor(
      'two exits written',
      async () => ((await exitsWritten()) >= 2 ? true : undefined),
      60_000,
      1000,
    );
    expect(await stopCli(processor)).toBe(0);
    await startProcessor();
    for (let i = 2; i < 5; i++) ids.push(await crashOnce());
    await waitFor(
      'five exits written',
      async () => ((await exitsWritten()) >= 5 ? true : undefined),
      60_000,
      1000,
    );
    const workload = `docker/${NODE}/${NAME}`;
    const loop = await waitFor(
      'the crash_loop alert',
      () => alerts.find((a) => a.kind === 'crash_loop' && a.details.workload === workload),
      60_000,
      500,
    );
    // Time for a second alert to show up, were one raised (a batch is cut within 1.5 s).
    await new Promise((r) => setTimeout(r, 5_000));
    expect(alerts.filter((a) => a.kind === 'crash_loop' && a.details.workload === workload)).toHaveLength(1);
    expect(loop).toMatchObject({ node: NODE, container: ids[2], containerName: NAME });
    expect(loop.details).toMatchObject({ exits: '3', containers: '3', lastExitCode: '3' });
    console.log(`[crash-loop] alert ${JSON.stringify({ ...loop, timeNs: String(loop.timeNs) })}`);
    // Each of the five containers started before it stopped, in every record of it.
    const times = await sql.rows(
      `SELECT container_id, started_at_ns, stopped_at_ns FROM ktrail.containers
       WHERE node = '${NODE}' AND container_id IN (${ids.map((id) => `'${id}'`).join(',')})
         AND stopped_at_ns IS NOT NULL`,
    );
    expect(new Set(times.map((t) => t.container_id)).size).toBe(5);
    for (const t of times)
      expect(BigInt(String(t.stopped_at_ns)), String(t.container_id)).toBeGreaterThanOrEqual(
        BigInt(String(t.started_at_ns)),
      );
  });
});
