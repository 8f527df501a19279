// Load for the Kafka failover tests: the real collector CLI replaying a capture file at a
// fixed rate into the cluster, its /metrics sampled twice a second, its final counters read
// from the line it prints at exit; then the processor's store, asked in SQL whether every
// captured event is there exactly once.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SqlRunner } from '../../deploy/clickhouse/queries.js';
import { EVENTS_DIR } from '../../schemas/catalog.js';
import { launchCli, stopCli } from './cli-child.js';
import { freePorts } from './ports.js';
import { waitFor } from './wait.js';

export interface LoadOptions {
  node: string;
  brokers: string[];
  topicPrefix: string;
  partitions: number;
  captureFile: string;
  /** Events per second the replay is paced at. */
  rate: number;
}

interface Sample {
  atMs: number;
  captured: number;
  delivered: number;
  dropped: number;
  pending: number;
}

export interface FinalCounters {
  captured: number;
  delivered: number;
  dropped: number;
  droppedByReason: Record<string, number>;
  pending: number;
  unaccounted: number;
}

export interface LoadSummary {
  final: FinalCounters;
  /** Captured events per second from the first delivery to the stop. */
  rate: number;
  /** Seconds from the first delivery to the stop. */
  seconds: number;
  /** The longest time in which Kafka acknowledged none of the collector's events, ms. */
  longestStallMs: number;
  /** The most events the collector held unacknowledged at once. */
  peakPending: number;
}

export interface LoadRun {
  node: string;
  /** SIGTERM: the collector flushes, prints its counters and exits. */
  stop(): Promise<LoadSummary>;
  /** The collector's output so far (for failure messages). */
  log(): string;
}

const METRICS: Record<keyof Omit<Sample, 'atMs'>, string> = {
  captured: 'ktrail_collector_events_captured_total',
  delivered: 'ktrail_collector_events_delivered_total',
  dropped: 'ktrail_collector_events_dropped_total',
  pending: 'ktrail_collector_events_pending',
};

async function sample(port: number): Promise<Sample> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Sample = { atMs: Date.now(), captured: 0, delivered: 0, dropped: 0, pending: 0 };
  for (const line of text.split('\n'))
    for (const [key, name] of Object.entries(METRICS))
      if (line.startsWith(name) && /^[ {]/.test(line.slice(name.length)))
        out[key as keyof typeof METRICS] += Number(line.slice(line.lastIndexOf(' ') + 1));
  return out;
}

/** Starts the collector and returns once Kafka has acknowledged its first events. */
export async function startLoad(o: LoadOptions): Promise<LoadRun> {
  const [httpPort] = await freePorts(1);
  const output: string[] = [];
  const child: ChildProcess = launchCli(
    'collector',
    {
      KTRAIL_NODE: o.node,
      KTRAIL_KAFKA_BROKERS: o.brokers.join(','),
      KTRAIL_KAFKA_TOPIC_PREFIX: o.topicPrefix,
      KTRAIL_KAFKA_PARTITIONS: String(o.partitions),
      KTRAIL_HTTP_PORT: String(httpPort),
      // Its own sequence numbers: a node of its own that starts at the first sequence.
      KTRAIL_STATE_DIR: mkdtempSync(join(tmpdir(), 'ktrail-failover-state-')),
      KTRAIL_COLLECTOR_STATS_INTERVAL_MS: '2000',
      KTRAIL_LOG_LEVEL: 'warn',
    },
    output,
    ['--replay', o.captureFile, '--replay-loop', '--replay-rate', String(o.rate)],
  );
  const samples: Sample[] = [];
  await waitFor(
    `first events of ${o.node} acknowledged`,
    async () => {
      if (child.exitCode !== null) throw new Error(`collector exited ${child.exitCode}: ${output.join('')}`);
      const s = await sample(httpPort as number).catch(() => undefined);
      return s !== undefined && s.delivered > 0 ? s : undefined;
    },
    120_000,
    250,
  ).then((s) => samples.push(s));
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await new Promise((r) => setTimeout(r, 500));
      const s = await sample(httpPort as number).catch(() => undefined);
      if (s) samples.push(s);
    }
  })();
  return {
    node: o.node,
    log: () => output.join(''),
    async stop() {
      sampling = false;
      await sampler;
      const code = await stopCli(child, 60_000);
      const text = output.join('');
      const line =
        /collector stopped: captured (\d+), delivered (\d+), dropped (\d+) (\{[^}]*\}), pending (\d+), unaccounted (-?\d+)/.exec(
          text,
        );
      if (code !== 0 || !line)
        throw new Error(`collector exited ${code} without its final line:\n${text.slice(-4000)}`);
      const final: FinalCounters = {
        captured: Number(line[1]),
        delivered: Number(line[2]),
        dropped: Number(line[3]),
        droppedByReason: JSON.parse(line[4] as string) as Record<string, number>,
        pending: Number(line[5]),
        unaccounted: Number(line[6]),
      };
      return { final, ...summarize(samples) };
    },
  };
}

function summarize(samples: Sample[]): Omit<LoadSummary, 'final'> {
  const first = samples[0] as Sample;
  const last = samples[samples.length - 1] as Sample;
  const seconds = (last.atMs - first.atMs) / 1000;
  let longestStallMs = 0;
  let progressAt = first.atMs;
  let peakPending = 0;
  for (let i = 1; i < samples.length; i++) {
    const s = samples[i] as Sample;
    if (s.delivered > (samples[i - 1] as Sample).delivered) progressAt = s.atMs;
    longestStallMs = Math.max(longestStallMs, s.atMs - progressAt);
    peakPending = Math.max(peakPending, s.pending);
  }
  return {
    rate: seconds > 0 ? (last.captured - first.captured) / seconds : 0,
    seconds,
    longestStallMs,
    peakPending,
  };
}

/** Every event table: one per event kind (schemas/events/*.avsc, CamelCase -> snake_case). */
export const EVENT_TABLES = readdirSync(EVENTS_DIR)
  .filter((f) => f.endsWith('.avsc'))
  .map((f) =>
    f
      .slice(0, -'.avsc'.length)
      .replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
      .slice(1),
  );

export interface StoreCount {
  /** event_batches rows of the node: one per Kafka message the processor wrote. */
  batches: number;
  /** Distinct (boot_id, sequence) among them: less than batches = a message written twice. */
  sequences: number;
  /** max(sequence) - min(sequence) + 1: more than sequences = a message missing. */
  sequenceSpan: number;
  /** Events the batches say they carry. */
  events: number;
  /** Rows in the event tables. */
  rows: number;
  /** Messages whose rows in the event tables are not exactly the events they carry. */
  messagesOff: number;
  /** Events of messages Kafka held twice that the processor left out (ingest_losses). */
  copiesLeftOut: number;
  /** Sequences written more than once, with their Kafka offsets (a failed run's evidence). */
  writtenTwice: string[];
}

/** What the processor's store holds for one node (through its query endpoint). */
export async function storeCount(sql: SqlRunner, db: string, node: string): Promise<StoreCount> {
  const params = { node };
  const [b] = await sql.rows(
    `SELECT count() AS n_batches, uniqExact(boot_id, sequence) AS n_sequences,
            max(sequence) - min(sequence) + 1 AS seq_span, sum(events) AS n_events
       FROM ${db}.event_batches WHERE node = {node:String}`,
    params,
  );
  // Per Kafka message (offset): rows in the event tables against the events its batch carries.
  const perOffset = EVENT_TABLES.map(
    (t) =>
      `SELECT kafka_offset, count() AS n FROM ${db}.${t} WHERE node = {node:String} GROUP BY kafka_offset`,
  ).join(' UNION ALL ');
  const [r] = await sql.rows(
    `SELECT sum(r.msg_rows) AS n_rows, countIf(r.msg_rows != b.msg_events) AS n_off
       FROM (SELECT kafka_offset, sum(n) AS msg_rows FROM (${perOffset}) GROUP BY kafka_offset) AS r
       FULL OUTER JOIN (SELECT kafka_offset, any(events) AS msg_events FROM ${db}.event_batches
                         WHERE node = {node:String} GROUP BY kafka_offset) AS b USING (kafka_offset)`,
    params,
  );
  const [c] = await sql.rows(
    `SELECT sum(rows) AS n FROM ${db}.ingest_losses WHERE node = {node:String} AND reason = 'duplicate_message'`,
    params,
  );
  const twice = await sql.rows(
    `SELECT sequence, groupArray(kafka_offset) AS offsets FROM ${db}.event_batches
      WHERE node = {node:String} GROUP BY sequence HAVING count() > 1 ORDER BY sequence LIMIT 5`,
    params,
  );
  return {
    copiesLeftOut: Number(c?.n ?? 0),
    writtenTwice: twice.map((t) => `sequence ${String(t.sequence)} at offsets ${JSON.stringify(t.offsets)}`),
    batches: Number(b?.n_batches ?? 0),
    sequences: Number(b?.n_sequences ?? 0),
    sequenceSpan: Number(b?.seq_span ?? 0),
    events: Number(b?.n_events ?? 0),
    rows: Number(r?.n_rows ?? 0),
    messagesOff: Number(r?.n_off ?? 0),
  };
}

/** Waits until the store holds at least `events` events of the node (the processor caught up). */
export async function waitStored(
  sql: SqlRunner,
  db: string,
  node: string,
  events: number,
): Promise<StoreCount> {
  let last: StoreCount | undefined;
  try {
    await waitFor(
      `${events} events of ${node} in the store`,
      async () => {
        last = await storeCount(sql, db, node);
        return last.events >= events && last.rows >= events ? last : undefined;
      },
      300_000,
      2_000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last count ${JSON.stringify(last)}`);
  }
  // A duplicate may land after the count first matches: look once more after a batch period.
  await new Promise((r) => setTimeout(r, 2_000));
  return storeCount(sql, db, node);
}
