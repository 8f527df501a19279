// Exactly-once whatever the retry delay. Three processor members share six partitions and
// one chDB store whose deduplication window is tiny (4 inserts per table). One member dies
// in the middle of writing a batch: its first tables are written, the rest and the commit
// never happen. Its Kafka connections are cut (as a SIGKILL would: no LeaveGroup, no more
// heartbeats) and its store access stops, so it stays down for the whole session timeout
// while the other two make many times the window of inserts into every table. Then its
// partitions are re-processed from the recorded cut: the tokens of its inserts are long
// forgotten, and only the check of what each table already holds keeps rows = events.
//
// The members run in one process (chDB allows one process per store), so "killed" is a
// member whose sockets are destroyed and whose store calls never return.

import { mkdtempSync } from 'node:fs';
import { createConnection, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
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
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import { createProcessor, type Processor, type RowSink } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { queryRows } from '../support/clickhouse.js';
import { endpointOrReason, itReal } from '../support/real.js';

const kafka = endpointOrReason(inject('kafka'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PARTITIONS = 6;
const NODES = 12;
const PER_MESSAGE = 100;
const DEDUP_WINDOW = 4;
const SESSION_TIMEOUT_MS = 10_000;

/** A kafkajs client whose connections can all be cut at once, and refused from then on. */
function killableKafka(brokers: string[], clientId: string): { kafka: Kafka; kill(): void } {
  const sockets = new Set<Socket>();
  let dead = false;
  const kafka = new Kafka({
    brokers,
    clientId,
    logLevel: logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 200 },
    socketFactory: ({ host, port, onConnect }) => {
      if (dead) {
        const s = new Socket();
        setImmediate(() => s.destroy(new Error('member is dead')));
        return s;
      }
      const s = createConnection({ host, port }, onConnect);
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      return s;
    },
  });
  return {
    kafka,
    kill() {
      dead = true;
      for (const s of sockets) s.destroy();
    },
  };
}

itReal(kafka.missing)(
  'a member killed mid-batch, re-processed after many times the dedup window: rows = events, no duplicates',
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const prefix = `eo-${Date.now().toString(36)}.`;
    const groupId = `${prefix}group`;
    const client = kafkaClient(brokers);
    const names = await createTestTopics(client, prefix, PARTITIONS);
    const ch = await createClickHouse({
      kind: 'chdb',
      path: join(mkdtempSync(join(tmpdir(), 'ktrail-eo-')), 'chdb'),
      database: 'ktrail',
    });
    await migrate(ch, { dedupWindow: DEDUP_WINDOW });
    const real = clickHouseSink(ch);
    const codec = createProcessorCodec();

    // Inserts per table by the survivors, and the moment the dead member's batch is re-processed.
    const survivorInserts = new Map<string, number>();
    let died: { partition: number; first: bigint; last: bigint; table: string } | undefined;
    let insertsAtResume: Map<string, number> | undefined;
    const resumes = (partition: number, first: bigint, last: bigint) => {
      if (died !== undefined && partition === died.partition && first <= died.last && last >= died.first)
        insertsAtResume ??= new Map(survivorInserts);
    };
    const survivorSink: RowSink = {
      async insert(table, rows, token) {
        const m = /:(\d+):(\d+)-(\d+)(~\w+)?$/.exec(token);
        if (m !== null) resumes(Number(m[1]), BigInt(m[2] as string), BigInt(m[3] as string));
        await real.insert(table, rows, token);
        survivorInserts.set(table, (survivorInserts.get(table) ?? 0) + 1);
      },
      async writtenOffsets(table, topic, partition, first, last, rows) {
        resumes(partition, first, last);
        return real.writtenOffsets(table, topic, partition, first, last, rows);
      },
    };

    const victim = killableKafka(brokers, 'victim');
    // The victim dies only once the group of three is stable (not while members still join).
    let armed = false;
    let victimCommits = 0;
    const never = new Promise<never>(() => undefined);
    const victimSink: RowSink = {
      async insert(table, rows, token) {
        if (died !== undefined) return never;
        await real.insert(table, rows, token);
        // After a few committed batches, die right after this insert landed (mid-batch:
        // the batch's other tables, its dead letters and its commit never happen).
        if (armed && victimCommits >= 3 && table === 'cpu_sample' && died === undefined) {
          const m = /:(\d+):(\d+)-(\d+)$/.exec(token);
          died = {
            partition: Number(m?.[1]),
            first: BigInt(m?.[2] ?? -1),
            last: BigInt(m?.[3] ?? -1),
            table,
          };
          victim.kill();
          return never;
        }
      },
      async writtenOffsets(table, topic, partition, first, last, rows) {
        if (died !== undefined) return never;
        return real.writtenOffsets(table, topic, partition, first, last, rows);
      },
    };

    const options = testOptions(groupId, {
      batchMaxMs: 300,
      batchMaxRows: 2_000,
      enrichedTopic: false,
      sessionTimeoutMs: SESSION_TIMEOUT_MS,
    });
    const survivors: Processor[] = ['a', 'b'].map((name) =>
      createProcessor({
        kafka: kafkaClient(brokers, name),
        topics: processorTopics(names),
        sink: survivorSink,
        codec,
        options,
      }),
    );
    const victimProcessor = createProcessor({
      kafka: victim.kafka,
      topics: processorTopics(names),
      sink: victimSink,
      codec,
      options,
      hooks: { onCommitted: () => void victimCommits++ },
    });
    for (const p of [...survivors, victimProcessor]) void p.start();

    const producer = await nodeProducer(client);
    const nodes = Array.from(
      { length: NODES },
      (_, i) => new SyntheticNode({ node: `eo-${i}`, containers: 2 }),
    );
    let produced = 0;
    let messages = 0;
    // Steady load until the dead member's batch was re-processed, then a little more.
    const deadline = Date.now() + 150_000;
    let after = 0;
    let readySince: number | undefined;
    while (after < 10 && Date.now() < deadline) {
      const allReady = [...survivors, victimProcessor].every((p) => p.ready());
      readySince = allReady ? (readySince ?? Date.now()) : undefined;
      if (!armed && readySince !== undefined && Date.now() - readySince > 3_000) {
        armed = true;
        victimCommits = 0;
      }
      await producer.send({
        topic: names.events,
        messages: nodes.map((n) => ({ key: n.node, value: n.next(PER_MESSAGE) })),
      });
      produced += NODES * PER_MESSAGE;
      messages += NODES;
      if (insertsAtResume !== undefined) after++;
      await sleep(200);
    }
    await producer.disconnect();
    expect(died, 'the victim died mid-batch').toBeDefined();
    expect(insertsAtResume, "the victim's batch was re-processed").toBeDefined();

    // Everything committed to the end by the survivors.
    const admin = client.admin();
    await admin.connect();
    let behind: string[] = [];
    const committedToEnd = async () => {
      const ends = await admin.fetchTopicOffsets(names.events);
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      behind = ends
        .map((e) => ({
          p: e.partition,
          end: e.high,
          at: t?.partitions.find((x) => x.partition === e.partition)?.offset,
        }))
        .filter((x) => x.at !== x.end && x.end !== '0')
        .map((x) => `partition ${x.p}: committed ${x.at} of ${x.end}`);
      return behind.length === 0;
    };
    const until = Date.now() + 60_000;
    while (!(await committedToEnd())) {
      if (Date.now() > until)
        throw new Error(`not every partition was committed to its end: ${behind.join('; ')}`);
      await sleep(500);
    }
    await admin.disconnect();
    await Promise.all(survivors.map((p) => p.stop()));

    // Between the death and the re-processing, the survivors made many times the window of
    // inserts into the tables the dead batch had written: its tokens were forgotten.
    for (const table of ['event_batches', 'cpu_sample'])
      expect(insertsAtResume?.get(table) ?? 0).toBeGreaterThan(2 * DEDUP_WINDOW);

    const [rows] = await queryRows<{ n: string; distinct: string }>(
      ch,
      'SELECT count() AS n, uniqExact(node, ts_ns) AS distinct FROM ktrail.cpu_sample',
    );
    expect(Number(rows?.n)).toBe(produced);
    expect(Number(rows?.distinct)).toBe(produced);
    const [batches] = await queryRows<{ n: string; distinct: string }>(
      ch,
      'SELECT count() AS n, uniqExact(node, sequence) AS distinct FROM ktrail.event_batches',
    );
    expect(Number(batches?.n)).toBe(messages);
    expect(Number(batches?.distinct)).toBe(messages);
    // The check is what kept them apart: the re-processed batch found the dead member's rows.
    expect(survivors.reduce((n, p) => n + p.stats().alreadyWritten, 0)).toBeGreaterThan(0);
    await ch.close();
  },
  300_000,
);
