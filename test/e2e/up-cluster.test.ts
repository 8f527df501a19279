// `./ktrail up --brokers 3`: the local pipeline on a three-node KRaft cluster instead of one
// broker. The collector's events reach SQL through it, the topics `up` created have three
// copies and min.insync.replicas 2 (the cluster reports three brokers), and `./ktrail stop`
// stops all three nodes with the rest of the stack. The stack is one of its own
// (test/support/up-stack.ts): its own cache, ports and cluster, nothing shared.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import { topicNames } from '../../common/kafka-topics.js';
import { quietKafka } from '../support/kafka.js';
import { itReal, missingRoot } from '../support/real.js';
import { processesOf, ROOT, runningBanner, startUp, type UpStack } from '../support/up-stack.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const it = itReal(missingRoot());

describe('./ktrail up --brokers 3', () => {
  const stacks: UpStack[] = [];
  afterAll(async () => {
    for (const s of stacks) await s.cleanup();
  }, 300_000);

  it('runs the pipeline on a three-node cluster with three copies per topic; stop stops all three', async () => {
    const stack = await startUp({
      name: 'up-cluster',
      docker: false,
      args: ['--brokers', '3'],
      env: { KTRAIL_COLLECTOR_BATCH_MAX_MS: '200' },
    });
    stacks.push(stack);
    await stack.line('the running banner', runningBanner, 420_000);
    const kafkaSh = (...args: string[]) =>
      run('bash', [join(ROOT, 'deploy/local/kafka.sh'), ...args], { env: stack.env, timeout: 120_000 });

    const { stdout: status } = await kafkaSh('status', '--brokers', '3');
    expect(status.match(/cluster 3 node \d: running/g)).toHaveLength(3);
    const brokers = (await kafkaSh('bootstrap', '--brokers', '3')).stdout.trim().split(',');
    expect(brokers).toHaveLength(3);
    // up hands the cluster to the collector and the processor: events reach SQL through it.
    await waitFor(
      'the collector events in SQL',
      async () => {
        const [row] = await stack
          .sql(`SELECT count() AS n FROM ktrail.event_batches WHERE node = '${stack.node}'`)
          .catch(() => []);
        return Number(row?.n ?? 0) > 0 ? true : undefined;
      },
      180_000,
      1_000,
    );

    const admin = quietKafka(brokers, 'up-cluster-test').admin();
    await admin.connect();
    try {
      const names = Object.values(topicNames());
      const { topics } = await admin.fetchTopicMetadata({ topics: names });
      for (const t of topics) for (const p of t.partitions) expect(p.replicas, t.name).toHaveLength(3);
      const { resources } = await admin.describeConfigs({
        resources: names.map((name) => ({ type: 2, name, configNames: ['min.insync.replicas'] })),
        includeSynonyms: false,
      });
      for (const r of resources)
        expect(
          r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue,
          r.resourceName,
        ).toBe('2');
    } finally {
      await admin.disconnect();
    }

    const stopped = await stack.stop();
    expect(stopped.code, stopped.output).toBe(0);
    // up stops the brokers it started (its output), else ./ktrail stop does (its own).
    const said = [...stack.lines.map((l) => l.raw), stopped.output].join('\n');
    expect(said).toMatch(/cluster 3: stopping pids \d+ \d+ \d+/);
    await waitFor(
      'no process of the stack left',
      () => (processesOf(stack.cache).length === 0 ? true : undefined),
      60_000,
      500,
    );
    await expect(kafkaSh('status', '--brokers', '3')).rejects.toThrow();
  }, 900_000);
});
