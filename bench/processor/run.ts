// Processor benchmark: Kafka -> processor -> chDB on the real broker, in one process (the
// processor's share of CPU is this process's CPU time; chDB runs in-process).
//  0. The processor's own work, first (no chDB merges running yet): a backlog into a store
//     that builds the Native blocks and inserts nothing (own-work.ts); CPU of the processor's
//     own threads only (Node's main thread, V8's and libuv's), after an uncounted warm-up.
//  1. CPU at a trickle (~240 events/s), on the fresh store: the fixed cost per insert, paid
//     every batchMaxMs for every table a partition has rows for.
//  2. Throughput: a backlog of events, drained by one processor; events/s of wall time and
//     per CPU-second of this process (what "per core" means on a shared machine).
//  3. The limit (limit.ts), right after the drain: chDB inserting the same rows from memory
//     (no Kafka, no decode, the join done beforehand). 2 and 3 alternate BENCH_ROUNDS times;
//     the round with the median processor / limit ratio is reported.
//  4. Latency: events produced at a fixed rate (50k/s by default); latency = the time from
//     the produce call to the moment the processor's insert of the message's rows returned
//     (synchronous inserts), from its stored hook; a count checks every row landed.
//  Last, bytes on disk per event after merges over every event the runs left.
// Writes the "Processor" section of docs/benchmarks.md.
//
// The broker: KTRAIL_KAFKA_BROKERS when set, else this checkout's (KTRAIL_KAFKA_PORT, 19092),
// started when not running (test/support/kafka.ts ensureKafka). The chDB store lives in a
// temporary directory removed when the bench exits.
// Env: BENCH_EVENTS (500000),
// BENCH_RATE (50000), BENCH_LATENCY_S (20), BENCH_ENRICHED (0|1, default: as shipped, on),
// BENCH_BATCH_MS (the processor's default batchMaxMs), BENCH_TRICKLE_S (30), BENCH_IDLE_S (15),
// BENCH_ROUNDS (3),
// BENCH_OWN_BASELINE,
// BENCH_ONLY=own|trickle|drain (stop after that run, for profiling it); BENCH_ONLY=limited:
// the drain alone, as the runner's memory-limited run (memory-limit.ts) runs it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { nodePartitioner } from '../../collector/src/kafka-sink.js';
import { validateConfig } from '../../common/config.js';
import { useNativeCrc32c } from '../../common/kafka.js';
import { planProcessorMemory, SHIPPED_LIMIT } from '../../common/memory-budget.js';
import { type AlertStateStore, clickHouseAlertStateStore } from '../../processor/src/alert-state.js';
import { createClickHouse, releaseEngineStartupPages } from '../../processor/src/clickhouse/client.js';
import { migrate } from '../../processor/src/clickhouse/migrate.js';
import { rowStoreOf } from '../../processor/src/clickhouse/row-store.js';
import { createProcessorCodec } from '../../processor/src/codec.js';
import type { ProcessorHooks, RowSink } from '../../processor/src/processor.js';
import { createProcessor } from '../../processor/src/processor.js';
import { clickHouseSink } from '../../processor/src/sink.js';
import { deleteTopics, ensureKafka } from '../../test/support/kafka.js';
import { filesystemOf } from '../report.js';
import { createTestTopics, kafkaClient, nodeProducer, processorTopics, testOptions } from './harness.js';
import { LatencyLedger } from './latency.js';
import { runLimit } from './limit.js';
import type { LimitedDrainChild } from './memory-limit.js';
import { bytesPerEvent, encodeOnlySink } from './own-work.js';
import { writeProcessorReport } from './report.js';
import { containerRecord, encodeContainerRecord, SyntheticNode } from './synthetic.js';
import { cpuByThread, cpuSince, cpuWindow, processorCpu, residentMiB } from './threads.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 500_000);
const RATE = Number(process.env.BENCH_RATE ?? 50_000);
const LATENCY_S = Number(process.env.BENCH_LATENCY_S ?? 20);
const LOW_RATE = Number(process.env.BENCH_LOW_RATE ?? 2_000);
const TRICKLE_S = Number(process.env.BENCH_TRICKLE_S ?? 30);
/** Seconds the trickle's processor runs with no events first (its idle CPU). */
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 15);
/** Rounds of drain then limit; the median round's ratio is reported. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error(`BENCH_ROUNDS must be a positive integer, got ${ROUNDS}`);
/** Events per node per second in the trickle run (12 nodes: ~240 events/s). */
const TRICKLE_EVENTS = 20;
/** The processor's own defaults unless overridden: what ships is what is measured. */
const SHIPPED = validateConfig({});
const DEFAULTS = SHIPPED.processor;
/**
 * The bound on rows held across partitions that the CLI derives from the shipped memory limit
 * (deploy/k8s, 1 GiB) and this process's V8 heap limit: unbounded, a drain would hold the whole
 * backlog as rows. Also under the limited run's smaller cgroup, whose limit the embedded
 * engine's budget rule would refuse (docs/processor.md, "Memory budget").
 */
const MEMORY_PLAN = planProcessorMemory({
  budget: { bytes: SHIPPED_LIMIT.processor, source: 'default', from: 'the shipped limit' },
  embedded: true,
  heapLimitBytes: getHeapStatistics().heap_size_limit,
});
const PENDING_MAX_ROWS = MEMORY_PLAN.pendingMaxRows;
/** The processor's batchTrickleRows (BENCH_TRICKLE_ROWS=0: no trickle tier, for a comparison). */
const TRICKLE_ROWS = Number(process.env.BENCH_TRICKLE_ROWS ?? DEFAULTS.batchTrickleRows);
const ENRICHED =
  process.env.BENCH_ENRICHED === undefined ? DEFAULTS.enrichedTopic : process.env.BENCH_ENRICHED === '1';
const BATCH_MS = Number(process.env.BENCH_BATCH_MS ?? DEFAULTS.batchMaxMs);
const PER_MESSAGE = 500;
/** Rows per cut (the shipped batchMaxRows): the drain's largest cut, and each cut of the limit. */
const CUT_ROWS = DEFAULTS.batchMaxRows;
/** Share of the synthetic events that are process exits (proc_exit), in the drain and the limit. */
const EXIT_SHARE = 0.02;
/**
 * The own-work figure the 2x target (issue 16) is counted from: this machine's, on the code
 * before that work (docs/perf-log.md, 2026-12-05). Another machine sets its own.
 */
const OWN_BASELINE = Number(process.env.BENCH_OWN_BASELINE ?? 137_000);
const NODES = 12;
const PARTITIONS = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let peakRss = 0;
/** Peak RSS since the phase began (reset at each phase that is measured on its own). */
let phasePeakRss = 0;
/** The phase peak's resident memory by kind (taken when the peak is). */
let phasePeakResident = residentMiB();
function sampleRss(): void {
  // rss() alone: memoryUsage() also walks V8's heap spaces, a cost the trickle would count.
  const rss = process.memoryUsage.rss();
  peakRss = Math.max(peakRss, rss);
  if (rss > phasePeakRss) {
    phasePeakRss = rss;
    phasePeakResident = residentMiB();
  }
}
const rssTimer = setInterval(sampleRss, 200);
rssTimer.unref();

// A processor process installs the native CRC-32C before its first produce (createProcessor);
// here the bench's own producers send first, so install it up front as that process would.
useNativeCrc32c();
const dir = mkdtempSync(join(tmpdir(), 'ktrail-bench-processor-'));
// Hundreds of MiB after a run: never left behind, whether the bench ends or fails.
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const { brokers } = await ensureKafka();
/** Topics the runs created: deleted when the bench ends, so a broker kept between runs doesn't pile them up. */
const benchTopics: string[] = [];
async function finish(): Promise<never> {
  await deleteTopics({ brokers }, benchTopics);
  process.exit(0);
}
const ch = await createClickHouse({ kind: 'chdb', path: join(dir, 'chdb'), database: 'ktrail' });
await migrate(ch, {});
releaseEngineStartupPages(ch);
const client = kafkaClient(brokers, 'ktrail-bench-processor');

/** The tables the synthetic events go to. */
const EVENT_TABLES = ['cpu_sample', 'proc_exit'];

/** Events in chDB. */
async function count(): Promise<number> {
  const rs = await ch.query({
    query: `SELECT ${EVENT_TABLES.map((t) => `(SELECT count() FROM ktrail.${t})`).join(' + ')} AS n`,
    format: 'JSONEachRow',
  });
  const [r] = await rs.json<{ n: string }>();
  return Number(r?.n ?? 0);
}

/**
 * Waits (up to 60 s) until chDB runs no merge: the drain's CPU is then its own, as the limit's
 * is, not the merging of what the runs before it inserted.
 */
async function mergesSettled(): Promise<void> {
  let running = 0;
  for (const until = Date.now() + 60_000; Date.now() < until; await sleep(200)) {
    const rs = await ch.query({ query: 'SELECT count() AS n FROM system.merges', format: 'JSONEachRow' });
    const [r] = await rs.json<{ n: string }>();
    running = Number(r?.n ?? 0);
    if (running === 0) return;
  }
  // The next phase then pays for them: its CPU figures are not comparable.
  console.warn(`[bench] ${running} merges still running after 60 s: the next phase starts with them`);
}

/** INSERT statements chDB ran (partitions' concurrent inserts into a table share one). */
const statements = rowStoreOf(ch).counts;
/**
 * The processor's sink, timed: how much of the wall clock goes to waiting on chDB inserts;
 * `eventRows` counts the event tables' rows of the inserts that returned, so the drain ends
 * without polling chDB (a query every 100 ms would charge its CPU to the processor).
 */
const insertTime = { ms: 0, calls: 0, rows: 0, eventRows: 0 };
function timedSink(): RowSink {
  const sink = clickHouseSink(ch);
  return {
    ...sink,
    async insert(table, rows, token, shareable) {
      const t0 = performance.now();
      try {
        await sink.insert(table, rows, token, shareable);
        if (EVENT_TABLES.includes(table)) insertTime.eventRows += rows.length;
      } finally {
        insertTime.ms += performance.now() - t0;
        insertTime.calls++;
        insertTime.rows += rows.length;
      }
    },
  };
}

/** The partition the bench producer (partitioned like the collector, by node) picks for a node. */
const partitionOfNode = nodePartitioner();
const partitionMetadata = Array.from({ length: PARTITIONS }, (_, i) => ({
  partitionId: i,
  leader: 0,
  replicas: [0],
  isr: [0],
  partitionErrorCode: 0,
}));
function partitionOf(node: string): number {
  return partitionOfNode({ topic: 'events', partitionMetadata, message: { key: node, value: null } });
}

async function setup(
  tag: string,
  hooks?: ProcessorHooks,
  sink: RowSink = timedSink(),
  alertState: AlertStateStore = clickHouseAlertStateStore(ch),
) {
  const prefix = `bench-${tag}-${Date.now().toString(36)}.`;
  const names = await createTestTopics(client, prefix, PARTITIONS);
  benchTopics.push(...Object.values(names).filter((t): t is string => typeof t === 'string'));
  const producer = await nodeProducer(client);
  const nodes = Array.from(
    { length: NODES },
    (_, i) =>
      new SyntheticNode({ node: `${tag}-node-${i}`, containers: 8, exitShare: EXIT_SHARE, realistic: true }),
  );
  await producer.send({
    topic: names.containers,
    messages: nodes.flatMap((n) =>
      Array.from({ length: 8 }, (_, i) => ({
        key: `${n.node}/${i}`,
        value: encodeContainerRecord(containerRecord(n.node, i)),
      })),
    ),
  });
  const processor = createProcessor({
    kafka: client,
    topics: processorTopics(names),
    sink,
    codec: createProcessorCodec(),
    // As the CLI runs it: alert state saved with every cut (own work: a store that drops it).
    alertState,
    ...(hooks === undefined ? {} : { hooks }),
    options: testOptions(`${prefix}group`, {
      batchMaxRows: CUT_ROWS,
      batchMaxMs: BATCH_MS,
      batchSmallRows: DEFAULTS.batchSmallRows,
      batchSmallMaxMs: DEFAULTS.batchSmallMaxMs,
      batchTrickleRows: TRICKLE_ROWS,
      batchTrickleMaxMs: DEFAULTS.batchTrickleMaxMs,
      enrichedTopic: ENRICHED,
      pendingMaxRows: PENDING_MAX_ROWS,
      sessionTimeoutMs: 30_000,
    }),
  });
  return { names, producer, nodes, processor };
}

/** At least `events` events into the events topic, PER_MESSAGE per message from every node; returns how many. */
async function produceBacklog(b: Awaited<ReturnType<typeof setup>>, events: number): Promise<number> {
  let sent = 0;
  while (sent < events) {
    await b.producer.send({
      topic: b.names.events,
      messages: b.nodes.map((n) => ({ key: n.node, value: n.next(PER_MESSAGE) })),
    });
    sent += NODES * PER_MESSAGE;
  }
  return sent;
}

// BENCH_ONLY=limited: the drain alone, for the runner's memory-limited run (memory-limit.ts).
if (process.env.BENCH_ONLY === 'limited') {
  const d = await drainBacklog('limited');
  const result: LimitedDrainChild = {
    produced: d.produced,
    wallS: d.wallS,
    cpuS: d.cpuS,
    peakRss: d.peakRss,
    peakResident: d.peakResident,
    pendingMaxRows: PENDING_MAX_ROWS,
    heapLimitBytes: MEMORY_PLAN.heapLimitBytes,
  };
  writeFileSync(process.env.BENCH_LIMITED_RESULT ?? join(dir, 'limited.json'), JSON.stringify(result));
  await finish();
}

// --- 0. the processor's own work: the same kind of backlog into a store that builds the
// Native blocks and inserts nothing. First, before any insert: no chDB merges are running,
// and only the processor's own threads are counted (threads.ts processorCpu) ----------------
/** An alert state store that keeps nothing: saving is an insert, which own work leaves out. */
const noAlertState: AlertStateStore = { load: async () => undefined, save: async () => {} };
async function ownWork(tag: string, events: number) {
  const { sink, counted } = encodeOnlySink(ch, EVENT_TABLES);
  const o = await setup(tag, undefined, sink, noAlertState);
  const sent = await produceBacklog(o, events);
  const th0 = cpuByThread();
  const start = performance.now();
  await o.processor.start();
  while (counted.rows < sent) await sleep(20);
  const wall = (performance.now() - start) / 1000;
  const threads = cpuSince(th0);
  const main = threads.find(([kind]) => kind === 'main')?.[1] ?? 0;
  await o.processor.stop();
  await o.producer.disconnect();
  const cpuS = processorCpu(threads);
  const result = {
    events: sent,
    wall,
    perCpuS: sent / cpuS,
    perMainCpuS: sent / main,
    blocks: counted.blocks,
    threads,
  };
  console.log(
    `[bench] own work (${tag}): ${sent} events in ${wall.toFixed(1)} s wall, ${Math.round(result.perCpuS)} events per CPU-second ` +
      `of the processor's threads (main thread ${Math.round(result.perMainCpuS)}), ${counted.blocks} Native blocks; ` +
      `CPU by thread (s): ${threads.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', ')}`,
  );
  return result;
}
// A tenth of the backlog first, not counted: the JIT has compiled the hot path by then, as in
// a processor that has been running (and chDB has answered the column types once).
await ownWork('ownwarm', EVENTS / 10);
const own = await ownWork('own', EVENTS);
// For profiling the own-work phase (node --cpu-prof, BENCH_TRICKLE_S=1): BENCH_ONLY=own stops here.
if (process.env.BENCH_ONLY === 'own') await finish();

// --- 1. CPU at a trickle: what the fixed cost of each insert adds up to ---------------------
// Before the drain, on a fresh store: later phases leave merges running in the background.
/**
 * CPU of the started processor with no events for IDLE_S, after 5 s for its start-up's
 * compilation and garbage: the floor under the trickle's, which runs next.
 */
async function idleCpu() {
  await sleep(5_000);
  const window = cpuWindow();
  await sleep(IDLE_S * 1000);
  const { cpuS, wallS, byThread } = window.end();
  return { cpuPct: (100 * cpuS) / wallS, byThread };
}

// Every node sends a small message every second: each partition still cuts (and inserts into
// every table it has rows for) every few seconds, so the CPU is mostly per-insert cost, not
// rows; the latency is the cut's wait (batchTrickleMaxMs).
async function trickle() {
  const ledger = new LatencyLedger(partitionOf);
  const l = await setup('trickle', { onStored: ledger.onStored });
  await l.processor.start();
  while (!l.processor.ready()) await sleep(50);
  const idle = await idleCpu();
  const statements0 = statements.statements;
  const window = cpuWindow();
  const start = performance.now();
  let events = 0;
  for (let tick = 0; tick < TRICKLE_S; tick++) {
    const wait = start + tick * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
    const sentAt = performance.now();
    const acks = await l.producer.send({
      topic: l.names.events,
      messages: l.nodes.map((n) => ({ key: n.node, value: n.next(TRICKLE_EVENTS) })),
    });
    ledger.recordSend(
      acks,
      l.nodes.map((n) => n.node),
      sentAt,
    );
    events += NODES * TRICKLE_EVENTS;
  }
  await sleep(1000);
  // CPU over the steady state (the cuts fall inside it at any window); then the last
  // messages' cuts, for their latency.
  const { cpuS, wallS, byThread } = window.end();
  const lastSent = performance.now();
  while (performance.now() - lastSent < 15_000 && !ledger.allStored()) await sleep(100);
  const { p50, p99 } = ledger.percentiles();
  await l.processor.stop();
  await l.producer.disconnect();
  const inserts = statements.statements - statements0;
  const result = {
    rate: events / wallS,
    cpuPct: (100 * cpuS) / wallS,
    inserts,
    insertsPerS: inserts / wallS,
    msPerInsert: (1000 * cpuS) / inserts,
    p50,
    p99,
    byThread,
    idle,
  };
  console.log(
    `[bench] idle: CPU ${idle.cpuPct.toFixed(1)}% of a core; ` +
      idle.byThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
  );
  console.log(
    `[bench] trickle: ${Math.round(result.rate)} events/s, CPU ${result.cpuPct.toFixed(1)}% of a core, ` +
      `${inserts} INSERT statements (${result.msPerInsert.toFixed(0)} ms of CPU per statement); ` +
      `latency p50 ${result.p50.toFixed(0)} ms, p99 ${result.p99.toFixed(0)} ms; ` +
      byThread.map(([kind, sec]) => `${kind} ${sec.toFixed(2)}`).join(', '),
  );
  return result;
}
const trickleRun = await trickle();
if (process.env.BENCH_ONLY === 'trickle') await finish();

// --- 2. throughput over a backlog ---------------------------------------------------------
/** A backlog of EVENTS produced first, then drained by one processor (also the limited run's). */
async function drainBacklog(tag: string) {
  const t = await setup(tag);
  const produced = await produceBacklog(t, EVENTS);
  await mergesSettled();
  const base = await count();
  insertTime.ms = 0;
  insertTime.calls = 0;
  insertTime.rows = 0;
  insertTime.eventRows = 0;
  const statements0 = statements.statements;
  phasePeakRss = process.memoryUsage.rss();
  phasePeakResident = residentMiB();
  const window = cpuWindow();
  await t.processor.start();
  while (insertTime.eventRows < produced) await sleep(20);
  const { cpuS, wallS, byThread } = window.end();
  sampleRss();
  const peakRss = phasePeakRss;
  const peakResident = phasePeakResident;
  await t.processor.stop();
  await t.producer.disconnect();
  const drained = (await count()) - base;
  if (drained !== produced) throw new Error(`the drain left ${drained} of ${produced} events in chDB`);
  const inserts = { ...insertTime }; // the latency runs add to insertTime
  console.log(
    `[bench] throughput (${tag}): ${produced} events in ${wallS.toFixed(1)} s wall, ${cpuS.toFixed(1)} s CPU; ` +
      `${inserts.calls} inserts of ${inserts.rows} rows in ${statements.statements - statements0} statements took ${(inserts.ms / 1000).toFixed(1)} s; ` +
      `peak RSS ${Math.round(peakRss / 2 ** 20)} MiB (${Math.round(peakResident.anon)} anonymous, of which V8's heap ` +
      `${Math.round(peakResident.heap)}; ${Math.round(peakResident.file)} file-backed)`,
  );
  return {
    produced,
    wallS,
    cpuS,
    byThread,
    peakRss,
    peakResident,
    inserts,
    statements: statements.statements - statements0,
  };
}
// --- 3. the limit (limit.ts): chDB inserting the same rows from memory, right after the drain
// Measured seconds after the drain (once its merges are done), so both see the machine alike.
const limitShape = { events: EVENTS, perMessage: PER_MESSAGE, cutRows: CUT_ROWS, exitShare: EXIT_SHARE };
const insertLimit = (round: number) => runLimit(ch, limitShape, round, mergesSettled);

// Drain and limit in alternating rounds: one pair's ratio moves with whatever else the shared
// machine runs meanwhile, so the median round is the one reported. The peak RSS is the first
// drain's, on the store as fresh as a new processor's; later ones are reported beside it.
const rounds: {
  drain: Awaited<ReturnType<typeof drainBacklog>>;
  limit: Awaited<ReturnType<typeof insertLimit>>;
}[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const d = await drainBacklog(round === 0 ? 'tput' : `tput${round + 1}`);
  // For profiling the drain (the last seconds of a --cpu-prof): BENCH_ONLY=drain stops here.
  if (process.env.BENCH_ONLY === 'drain') await finish();
  rounds.push({ drain: d, limit: await insertLimit(round) });
}
const ratioOf = (r: (typeof rounds)[number]) => r.drain.produced / r.drain.cpuS / r.limit.perCpuS;
const ratios = rounds.map(ratioOf);
const median = [...rounds].sort((a, b) => ratioOf(a) - ratioOf(b))[
  Math.floor(rounds.length / 2)
] as (typeof rounds)[number];
const drain = median.drain;
const { produced, wallS, cpuS, byThread } = drain;
const mainCpuS = byThread.find(([kind]) => kind === 'main')?.[1] ?? 0;
const tputWall = produced / wallS;
const tputCpu = produced / cpuS;
const drainInserts = drain.inserts;
const drainStatements = drain.statements;
const { peakRss: drainPeakRss, peakResident: drainPeakResident } = (rounds[0] as (typeof rounds)[number])
  .drain;
const laterDrainPeaks = rounds.slice(1).map((r) => r.drain.peakRss);
const insertRowsPerS = drainInserts.rows / (drainInserts.ms / 1000);
const { rate: limitRate, perCpuS: limitPerCpuS, byThread: limitByThread } = median.limit;
const limitInserts = median.limit.inserts;
const limitCutCount = median.limit.cuts;

// --- 4. latency at a fixed rate (the target) and at one this machine sustains ---------------
// Queryable = the processor's insert of the message's rows has returned: inserts are
// synchronous (async_insert 0), so a SELECT issued after that sees them. The processor's
// stored hook fires once every table of the cut is inserted, with the cut's offsets; each
// produced message's offset comes from the broker's ack. A poll of chDB
// every few ms would itself compete with the inserts for the embedded engine. A count at the
// end checks that every row is really there.
async function latency(tag: string, rate: number) {
  const ledger = new LatencyLedger(partitionOf);
  let assigned = false;
  const l = await setup(tag, {
    onAssigned: () => {
      assigned = true;
    },
    onStored: ledger.onStored,
  });
  const before = await count();
  await l.processor.start();
  // Steady state only: wait for the assignment and the metadata restore before producing.
  while (!(assigned && l.processor.ready())) await sleep(50);
  const perTick = Math.max(1, Math.round(rate / PER_MESSAGE / 10)); // messages per 100 ms
  const ticks = Math.min(LATENCY_S * 10, Math.ceil((LATENCY_S * rate) / (perTick * PER_MESSAGE * 10)) * 10);
  const encoded = Array.from({ length: ticks * perTick }, (_, i) => {
    const n = l.nodes[i % NODES] as SyntheticNode;
    return { node: n.node, value: n.next(PER_MESSAGE) };
  });
  const start = performance.now();
  for (let tick = 0; tick < ticks; tick++) {
    const due = start + tick * 100;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const batch = encoded.slice(tick * perTick, (tick + 1) * perTick);
    const sentAt = performance.now();
    const acks = await l.producer.send({
      topic: l.names.events,
      messages: batch.map((m) => ({ key: m.node, value: m.value })),
    });
    ledger.recordSend(
      acks,
      batch.map((m) => m.node),
      sentAt,
    );
  }
  const achievedRate = (encoded.length * PER_MESSAGE) / ((performance.now() - start) / 1000);
  const expected = before + encoded.length * PER_MESSAGE;
  const waitUntil = performance.now() + 30_000;
  while (performance.now() < waitUntil && (await count()) < expected) await sleep(200);
  const landed = (await count()) - before;
  await l.processor.stop();
  await l.producer.disconnect();
  const { p50, p99 } = ledger.percentiles();
  console.log(
    `[bench] latency (${tag}) at ${Math.round(achievedRate)} ev/s: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms; ` +
      `${ledger.messages} messages acked, ${landed} of ${encoded.length * PER_MESSAGE} events in chDB`,
  );
  if (ledger.messages !== encoded.length)
    throw new Error(`${ledger.messages} acks for ${encoded.length} messages`);
  return { achievedRate, p50, p99, landed, expected: encoded.length * PER_MESSAGE };
}
const latHigh = await latency('lat', RATE);
const latLow = await latency('latlow', LOW_RATE);

// --- bytes on disk per event, after merges, over every event the runs above left ----------
const disk = await bytesPerEvent(ch, EVENT_TABLES);
console.log(
  `[bench] on disk after merges: ${disk.events} events, ${disk.bytes} bytes, ${disk.perEvent.toFixed(1)} bytes per event`,
);

await ch.close();

writeProcessorReport({
  BATCH_MS,
  CUT_ROWS,
  DEFAULTS,
  ENRICHED,
  EVENT_TABLES,
  EXIT_SHARE,
  NODES,
  OWN_BASELINE,
  PARTITIONS,
  PENDING_MAX_ROWS,
  PER_MESSAGE,
  RATE,
  TRICKLE_ROWS,
  IDLE_S,
  byThread,
  cpuS,
  disk,
  drainInserts,
  drainPeakResident,
  drainPeakRss,
  drainStatements,
  insertRowsPerS,
  latHigh,
  latLow,
  limitByThread,
  limitCutCount,
  limitInserts,
  limitPerCpuS,
  laterDrainPeaks,
  limitRate,
  mainCpuS,
  ratios,
  own,
  peakRss,
  produced,
  tputCpu,
  tputWall,
  trickleRun,
  wallS,
  storeFilesystem: filesystemOf(dir),
});
await finish();
