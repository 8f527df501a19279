// ClickHouse down for 60 s under a running processor: nothing is committed while inserts
// fail, the member stays in its group, and once the server is back the backlog drains
// with no loss. This is the HTTP transport path (any ClickHouse by URL), on a real server:
// Debian's clickhouse-server 18.16, our own instance on separate ports (so stopping it
// disturbs no other test). 18.16 predates DateTime64, TTLs and deduplication tokens, so
// the test uses a minimal table with the processor's row columns (time as String) instead
// of the migrations, and the processor is told the server can't deduplicate. The schema
// itself and exactly-once are tested on chDB (processor-crash, processor-rebalance).
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, inject } from 'vitest';
import {
  createTestTopics,
  kafkaClient,
  nodeProducer,
  processorTopics,
  testOptions,
} from '../../bench/processor/harness.js';
import { SyntheticNode } from '../../bench/processor/synthetic.js';
import { createClickHouse } from '../../processor/src/clickhouse/client.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { createProcessor } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { endpointOrReason, itReal } from '../support/real.js';

const run = promisify(execFile);
const kafka = endpointOrReason(inject('kafka'));
const ROOT = new URL('../..', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OUTAGE_MS = 60_000;

const server = {
  env: {
    ...process.env,
    KTRAIL_CACHE: mkdtempSync(join(tmpdir(), 'ktrail-outage-ch-')),
    KTRAIL_CH_HTTP_PORT: '18133',
    KTRAIL_CH_TCP_PORT: '19010',
    KTRAIL_CH_HTTPS_PORT: '18453',
  },
  url: 'http://127.0.0.1:18133',
  sh: (cmd: string) =>
    run('bash', ['deploy/local/clickhouse-server.sh', cmd], { cwd: ROOT, env: server.env }),
};

let serverMissing: string | undefined;
try {
  await server.sh('start');
} catch (err) {
  serverMissing = `clickhouse-server unavailable: ${(err as Error).message.split('\n')[0]}`;
}

itReal(kafka.missing ?? serverMissing)(
  'ClickHouse stopped for 60 s: no commit while it is down, no loss after, the backlog drains',
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const prefix = `outage-${Date.now().toString(36)}.`;
    const groupId = `${prefix}group`;
    const client = kafkaClient(brokers);
    const names = await createTestTopics(client, prefix, 2);
    const ch = await createClickHouse({
      kind: 'server',
      url: server.url,
      database: 'ktrail_outage',
      allowWithoutDedupToken: true,
    });
    // The processor's cpu_sample and event_batches rows, in types 18.16 has.
    await ch.command({
      query: `CREATE TABLE IF NOT EXISTS ktrail_outage.cpu_sample (node String, boot_id String, time String,
        container_id String, container_name String, image String, pod String, namespace String, workload String,
        join_state String, kafka_partition UInt32, kafka_offset UInt64, ts_ns UInt64, cgroup_id UInt64, pid UInt32,
        tgid UInt32, flags UInt16, cpu_ns UInt64, switches UInt64, interval_ns UInt64)
        ENGINE = MergeTree ORDER BY (node, ts_ns)`,
    });
    await ch.command({
      query: `CREATE TABLE IF NOT EXISTS ktrail_outage.event_batches (node String, boot_id String, sequence UInt64,
        time String, events UInt32, collector_version String, kafka_partition UInt32, kafka_offset UInt64)
        ENGINE = MergeTree ORDER BY (node, sequence)`,
    });

    const processor = createProcessor({
      kafka: client,
      topics: processorTopics(names),
      sink: clickHouseSink(ch),
      codec: createProcessorCodec(),
      options: testOptions(groupId, {
        batchMaxMs: 300,
        lateMetadataWaitMs: 0,
        enrichedTopic: false,
        retryMaxMs: 2_000,
      }),
    });
    await processor.start();
    const producer = await nodeProducer(client);
    const nodes = Array.from(
      { length: 4 },
      (_, i) => new SyntheticNode({ node: `outage-${i}`, containers: 2 }),
    );
    let produced = 0;
    const produce = async () => {
      await producer.send({
        topic: names.events,
        messages: nodes.map((n) => ({ key: n.node, value: n.next(250) })),
      });
      produced += 4 * 250;
    };
    const admin = client.admin();
    await admin.connect();
    const committed = async () => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      return (t?.partitions ?? []).reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
    };
    const rows = async () => {
      const rs = await ch.query({
        query: 'SELECT count() AS n, uniqExact(node, ts_ns) AS d FROM ktrail_outage.cpu_sample',
        format: 'JSONEachRow',
      });
      const [r] = await rs.json<{ n: string; d: string }>();
      return { n: Number(r?.n), d: Number(r?.d) };
    };

    for (let i = 0; i < 5; i++) await produce();
    while ((await rows()).n < produced) await sleep(200);

    await server.sh('stop');
    await sleep(2_000); // a batch in flight when the server went may still commit
    const committedAtStop = await committed();
    const outageEnd = Date.now() + OUTAGE_MS - 2_000;
    while (Date.now() < outageEnd) {
      await produce();
      await sleep(2_000);
    }
    // Nothing was committed while nothing could be inserted, and the member kept its partitions.
    expect(await committed()).toBe(committedAtStop);
    expect(processor.stats().insertRetries).toBeGreaterThan(0);
    await server.sh('start');

    const deadline = Date.now() + 120_000;
    while ((await rows()).n < produced && Date.now() < deadline) await sleep(500);
    const end = (await admin.fetchTopicOffsets(names.events)).reduce((s, p) => s + Number(p.high), 0);
    while ((await committed()) < end && Date.now() < deadline) await sleep(500);
    const final = await rows();
    console.log(
      `[outage] produced ${produced}, rows ${final.n}, distinct ${final.d}, retries ${processor.stats().insertRetries}`,
    );
    expect(final.d).toBe(produced); // no loss
    expect(final.n).toBe(produced); // and, here, no repeats either
    expect(await committed()).toBe(end);
    await processor.stop();
    await producer.disconnect();
    await admin.disconnect();
    await ch.command({ query: 'DROP DATABASE IF EXISTS ktrail_outage' });
    await ch.close();
    await server.sh('stop');
  },
  300_000,
);
