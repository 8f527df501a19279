// Exactly-once across crashes: one million events through the processor CLI (a child
// process on the real broker and a real chDB store, shipped defaults: enriched topic on)
// while it is killed with SIGKILL at five random moments and restarted. Afterwards the
// store holds exactly one row per produced event: no loss (count == produced), no
// duplicates (distinct == count); and the enriched topic, at-least-once, carries every
// event (distinct == produced; batches rebuilt after a kill may publish theirs again).
//
// chDB allows one process per data directory, so the rows are counted by another child
// after the last processor exited.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, inject } from 'vitest';
import { readTopic } from '../../bench/collector/kafka-read.js';
import { createTestTopics, kafkaClient, nodeProducer } from '../../bench/processor/harness.js';
import { containerRecord, encodeContainerRecord, SyntheticNode } from '../../bench/processor/synthetic.js';
import { createTopicDecoder } from '../../schemas/topic-decoder.js';
import { endpointOrReason, itReal } from '../support/real.js';

const run = promisify(execFile);
const kafka = endpointOrReason(inject('kafka'));
const ROOT = new URL('../..', import.meta.url).pathname;

const EVENTS = 1_000_000;
const PER_MESSAGE = 500;
const NODES = 8;
const PARTITIONS = 3;
const KILLS = 5;

function startProcessor(configFile: string, logFile: string): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'processor/src/cli.ts', '--config', configFile], {
    cwd: ROOT,
    stdio: ['ignore', log, log],
    env: { ...process.env, KTRAIL_LOG_LEVEL: 'warn' },
  });
  closeSync(log);
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

itReal(kafka.missing)(
  'one million events, five SIGKILLs: rows equal events produced, no loss, no duplicates',
  async () => {
    const brokers = (kafka.value as { brokers: string[] }).brokers;
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-crash-'));
    const prefix = `crash-${Date.now().toString(36)}.`;
    const groupId = `${prefix}group`;
    const client = kafkaClient(brokers);
    const names = await createTestTopics(client, prefix, PARTITIONS);

    // Metadata first (as a collector does), then the events.
    const producer = await nodeProducer(client);
    const nodes = Array.from(
      { length: NODES },
      (_, i) => new SyntheticNode({ node: `node-${i}`, containers: 4, exitShare: 0.05 }),
    );
    await producer.send({
      topic: names.containers,
      messages: nodes.flatMap((n) =>
        [0, 1, 2, 3].map((i) => ({
          key: `${n.node}/${i}`,
          value: encodeContainerRecord(containerRecord(n.node, i)),
        })),
      ),
    });
    let produced = 0;
    while (produced < EVENTS) {
      const messages = nodes.map((n) => ({ key: n.node, value: n.next(PER_MESSAGE) }));
      await producer.send({ topic: names.events, messages });
      produced += messages.length * PER_MESSAGE;
    }
    await producer.disconnect();
    expect(produced).toBe(EVENTS);

    const chdbPath = join(dir, 'chdb');
    const configFile = join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        node: 'crash-test',
        http: { port: 0 },
        kafka: { brokers, topicPrefix: prefix, partitions: PARTITIONS },
        processor: { groupId, batchMaxRows: 50_000, batchMaxMs: 1_000 },
        clickhouse: { chdbPath, database: 'ktrail' },
      }),
    );

    const admin = client.admin();
    await admin.connect();
    const committed = async (): Promise<number> => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [names.events] });
      return (t?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
    };
    const end = (await admin.fetchTopicOffsets(names.events)).reduce((sum, p) => sum + Number(p.high), 0);

    // Kill at five random moments, each after the previous run made some progress: each kill
    // waits for the committed offsets to pass a random point in its own slice of the first
    // ~60% of the topic (commits move 100 messages a partition at a time), then a random
    // delay, so every kill lands mid-work (between, during or after inserts) and before the
    // end however fast the processor drains.
    const killedAt: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const before = await committed();
      const target = Math.max(before + 1, Math.floor((end * (k + 1 + Math.random() / 2)) / (KILLS + 4)));
      const child = startProcessor(configFile, join(dir, `run-${k}.log`));
      const deadline = Date.now() + 120_000;
      while ((await committed()) < target && Date.now() < deadline && child.exitCode === null)
        await sleep(50);
      await sleep(Math.floor(Math.random() * 250));
      killedAt.push(await committed());
      child.kill('SIGKILL');
      await exited(child);
    }
    expect(killedAt.length).toBe(KILLS);
    expect(killedAt.every((at, i) => at > (killedAt[i - 1] ?? 0))).toBe(true); // each after progress
    expect(killedAt.at(-1)).toBeLessThan(end); // the kills happened before the end, not after

    // The last run drains the topic, then stops cleanly.
    const last = startProcessor(configFile, join(dir, 'run-last.log'));
    const deadline = Date.now() + 300_000;
    while ((await committed()) < end && Date.now() < deadline) await sleep(500);
    expect(await committed()).toBe(end);
    last.kill('SIGTERM');
    expect(await exited(last)).toBe(0);
    await admin.disconnect();

    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'bench/processor/count-rows.ts', chdbPath, 'ktrail'],
      {
        cwd: ROOT,
        env: { ...process.env, KTRAIL_LOG_LEVEL: 'warn' },
      },
    );
    const counts = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<
      string,
      { rows: number; distinct: number }
    >;
    const rows = Object.values(counts).reduce((s, t) => s + t.rows, 0);
    const distinct = Object.values(counts).reduce((s, t) => s + t.distinct, 0);
    console.log(
      `[crash] committed at kills: ${killedAt.join(', ')} of ${end} messages; rows ${rows}, distinct ${distinct}`,
    );
    expect(distinct).toBe(EVENTS); // no loss
    expect(rows).toBe(EVENTS); // no duplicates

    // The enriched topic: every event at least once, each joined to its container (the
    // records were produced before the events, and every run restores them first).
    const decode = createTopicDecoder();
    const seen = new Set<string>();
    let published = 0;
    let unjoined = 0;
    for (const m of await readTopic(brokers, names.eventsEnriched, 120_000)) {
      const batch = decode('enriched', m.value);
      for (const e of batch.events) {
        published++;
        seen.add(`${batch.node}/${e.event.tsNs}`);
        if (e.container < 0) unjoined++;
      }
    }
    console.log(`[crash] enriched topic: ${published} events published, ${seen.size} distinct`);
    expect(seen.size).toBe(EVENTS); // at-least-once: none lost
    expect(published).toBeGreaterThanOrEqual(EVENTS);
    expect(unjoined).toBe(0);
  },
  600_000,
);
