// ClickHouse down for 60 s under a running processor: nothing is committed while inserts
// fail, the member stays in its group, and once the server is back the backlog drains
// with no loss. This is the HTTP transport path (any ClickHouse by URL), on a real server:
// Debian's clickhouse-server 18.16, our own instance on separate ports (so stopping it
// disturbs no other test). 18.16 predates DateTime64, TTLs and deduplication tokens, so
// the test uses a minimal table with the processor's row columns (time as String) instead
// of the migrations, and the processor is told the server can't deduplicate. The schema
// itself and exactly-once are tested on chDB (processor-crash, processor-rebalance).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject } from 'vitest';
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
import {
  createLegacyEventTables,
  type PrivateServer,
  startPrivateClickHouseServer,
} from '../support/clickhouse.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OUTAGE_MS = 60_000;

const work = mkdtempSync(join(tmpdir(), 'ktrail-outage-ch-'));
let server: PrivateServer | undefined;
let serverMissing: string | undefined;
try {
  server = await startPrivateClickHouseServer(work);
} catch (err) {
  serverMissing = `clickhouse-server unavailable: ${(err as Error).message.split('\n')[0]}`;
}
afterAll(async () => {
  await server?.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});
const serverOf = (): PrivateServer => server as PrivateServer;

itReal(kafka.missing ?? serverMissing)(
  'ClickHouse stopped for 60 s: no commit while it is down, no loss after, the backlog drains',
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const server = serverOf();
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
    await createLegacyEventTables(ch, 'ktrail_outage');

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

    await server.stop();
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
    await server.start();

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
  },
  300_000,
);
