// What `./ktrail up`'s status block shows, read every few seconds: the collector's and the
// processor's counters from their own /metrics (only the few named here, `?name=`), and the
// processor group's consumer lag from the broker (committed offsets against the end of the
// events topic, what Kafka's own tools call lag). Pure functions turn two readings into the
// block's lines, so the arithmetic is unit-tested without a pipeline.
import type { Admin } from 'kafkajs';
import type { KtrailConfig } from '../../common/config.js';
import { createKafka, kafkaClientOptions } from '../../common/kafka.js';
import { topicNames } from '../../common/kafka-topics.js';
import { createLogger } from '../../common/log.js';
import type { Supervisor, SupervisorState } from './supervise.js';
import type { UpView } from './up-view.js';

/** The counters the block needs, by process. */
export const STATUS_METRICS = {
  collector: [
    'ktrail_collector_events_captured_total',
    'ktrail_collector_events_delivered_total',
    'ktrail_collector_events_dropped_total',
    'ktrail_collector_kernel_drops_total',
    'ktrail_collector_addon_drops_total',
  ],
  processor: ['ktrail_processor_rows_written_total', 'ktrail_processor_batches_committed_total'],
} as const;

/** Prometheus text -> the sum of each metric's samples over all label sets. */
export function sumByName(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const value = Number(m[2]);
    if (!Number.isFinite(value)) continue;
    const name = m[1] as string;
    sums.set(name, (sums.get(name) ?? 0) + value);
  }
  return sums;
}

/** The named metrics of the process on `port`, or undefined when it does not answer. */
export async function readMetrics(
  port: number,
  names: readonly string[],
  timeoutMs = 1_500,
): Promise<Map<string, number> | undefined> {
  const query = names.map((n) => `name=${encodeURIComponent(n)}`).join('&');
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics?${query}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    return res.ok ? sumByName(await res.text()) : undefined;
  } catch {
    return undefined;
  }
}

/** Messages in `topic` that `groupId` has not committed yet, over all partitions. */
export async function consumerLag(admin: Admin, groupId: string, topic: string): Promise<number> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const done = new Map(
    (committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]),
  );
  let lag = 0n;
  for (const p of ends) {
    const high = BigInt(p.high);
    // Nothing committed yet (-1), or committed below what retention kept: count from the start.
    const from = (c: bigint | undefined) => (c === undefined || c < BigInt(p.low) ? BigInt(p.low) : c);
    const start = from(done.get(p.partition));
    if (high > start) lag += high - start;
  }
  return Number(lag);
}

export interface ProcessView {
  /** running, restarting (backoff), stopping, stopped, failed */
  state: string;
  pid?: number | undefined;
  restarts: number;
}

/** One reading of the pipeline. Counters are undefined when their process did not answer. */
export interface StatusReading {
  atMs: number;
  captured?: number | undefined;
  delivered?: number | undefined;
  /** Dropped by the collector (every reason), plus lost in the kernel and in the addon. */
  dropped?: number | undefined;
  kernelDropped?: number | undefined;
  rows?: number | undefined;
  lag?: number | undefined;
  collector: ProcessView;
  processor: ProcessView;
}

export function readingFrom(
  atMs: number,
  collector: Map<string, number> | undefined,
  processor: Map<string, number> | undefined,
  lag: number | undefined,
  views: { collector: ProcessView; processor: ProcessView },
): StatusReading {
  const c = (name: (typeof STATUS_METRICS.collector)[number]) => collector?.get(name) ?? 0;
  const kernel =
    collector === undefined
      ? undefined
      : c('ktrail_collector_kernel_drops_total') + c('ktrail_collector_addon_drops_total');
  return {
    atMs,
    captured: collector === undefined ? undefined : c('ktrail_collector_events_captured_total'),
    delivered: collector === undefined ? undefined : c('ktrail_collector_events_delivered_total'),
    dropped:
      collector === undefined || kernel === undefined
        ? undefined
        : c('ktrail_collector_events_dropped_total') + kernel,
    kernelDropped: kernel,
    rows: processor === undefined ? undefined : (processor.get('ktrail_processor_rows_written_total') ?? 0),
    lag,
    ...views,
  };
}

export interface StatusContext {
  startedAtMs: number;
  node: string;
  metricsUrls: string[];
  queryUrl: string;
  tokenFile: string;
  logs: string;
}

const count = (n: number | undefined): string =>
  n === undefined ? '–' : Math.round(n).toLocaleString('en-US');

/** Per second between two readings; unknown when either lacks it or the counter restarted. */
function rate(
  prev: StatusReading | undefined,
  cur: StatusReading,
  key: 'captured' | 'delivered' | 'rows',
): string {
  const a = prev?.[key];
  const b = cur[key];
  if (prev === undefined || a === undefined || b === undefined || b < a || cur.atMs <= prev.atMs) return '–';
  const perSecond = (b - a) / ((cur.atMs - prev.atMs) / 1000);
  return perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond).toLocaleString('en-US');
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function processLine(name: string, p: ProcessView): string {
  const restarts = p.restarts === 0 ? '' : `, ${p.restarts} restart${p.restarts === 1 ? '' : 's'}`;
  return `${name} ${p.state}${p.pid === undefined ? '' : ` (pid ${p.pid}${restarts})`}`;
}

const row = (label: string, ...cells: string[]) => `  ${label.padEnd(10)} ${cells.join('')}`.trimEnd();
const cell = (text: string, width: number) => text.padEnd(width);

/** The status block: counters with their rates since the previous reading, processes, where to look. */
export function statusLines(
  ctx: StatusContext,
  prev: StatusReading | undefined,
  cur: StatusReading,
): string[] {
  const dropped =
    cur.dropped === undefined
      ? '–'
      : `${count(cur.dropped)}${cur.kernelDropped ? ` (${count(cur.kernelDropped)} in the kernel)` : ''}`;
  return [
    `ktrail up · node ${ctx.node} · running ${duration(cur.atMs - ctx.startedAtMs)}`,
    row('captured', cell(`${rate(prev, cur, 'captured')} events/s`, 18), `${count(cur.captured)} in all`),
    row(
      'delivered',
      cell(`${rate(prev, cur, 'delivered')} events/s`, 18),
      cell(`${count(cur.delivered)} in all`, 16),
      `dropped ${dropped}`,
    ),
    row(
      'written',
      cell(`${rate(prev, cur, 'rows')} rows/s`, 18),
      cell(`${count(cur.rows)} in all`, 16),
      `consumer lag ${cur.lag === undefined ? '–' : `${count(cur.lag)} messages`}`,
    ),
    row(
      'processes',
      cell(processLine('collector', cur.collector), 34),
      processLine('processor', cur.processor),
    ),
    row('metrics', ctx.metricsUrls.join('  ')),
    row('SQL', `${ctx.queryUrl}  (token in ${ctx.tokenFile})`),
    row('logs', ctx.logs),
    '  Ctrl-C or ./ktrail stop stops the pipeline; counters restart with their process',
  ];
}

const STATE_WORDS: Record<SupervisorState, string> = {
  running: 'running',
  backoff: 'restarting',
  stopping: 'stopping',
  stopped: 'stopped',
  failed: 'failed',
};

function processView(s: Supervisor): ProcessView {
  return { state: STATE_WORDS[s.state], pid: s.child?.pid, restarts: s.restarts };
}

export interface StatusOptions {
  view: UpView;
  /** The pipeline's configuration (Kafka, the group, the topic prefix); no lag without it. */
  config: KtrailConfig | undefined;
  node: string;
  ports: { collector: number; processor: number; query: number };
  tokenFile: string;
  logs: string;
  supervisors: { collector: Supervisor; processor: Supervisor };
  intervalMs?: number;
}

/** Reads the pipeline every `intervalMs` (2 s) and redraws the view's status block. */
export function startStatus(o: StatusOptions): { stop(): Promise<void> } {
  const startedAtMs = Date.now();
  const ctx: StatusContext = {
    startedAtMs,
    node: o.node,
    metricsUrls: [o.ports.collector, o.ports.processor].map((p) => `http://127.0.0.1:${p}/metrics`),
    queryUrl: `http://127.0.0.1:${o.ports.query}/`,
    tokenFile: o.tokenFile,
    logs: o.logs,
  };
  // Its own client, quiet and without retries: a reading that fails shows as "–" and the next
  // one tries again; the pipeline's processes log Kafka's troubles themselves.
  const admin =
    o.config === undefined
      ? undefined
      : createKafka(
          { ...kafkaClientOptions(o.config.kafka, 'up'), retry: { retries: 0 }, requestTimeoutMs: 2_000 },
          createLogger('up.status').child({}, { level: 'silent' }),
        ).admin();
  let connected: Promise<void> | undefined;
  // Not before the processor's first commit: a group request while its consumer joins can
  // meet the coordinator still loading, which crashes (and restarts) that consumer.
  let committed = false;
  const lag = async (processor: Map<string, number> | undefined): Promise<number | undefined> => {
    committed ||= (processor?.get('ktrail_processor_batches_committed_total') ?? 0) > 0;
    if (admin === undefined || o.config === undefined || !committed) return undefined;
    try {
      connected ??= admin.connect();
      await connected;
      return await consumerLag(
        admin,
        o.config.processor.groupId,
        topicNames(o.config.kafka.topicPrefix).events,
      );
    } catch {
      connected = undefined;
      return undefined;
    }
  };
  let prev: StatusReading | undefined;
  let reading: Promise<void> | undefined;
  const read = async () => {
    const [collector, processor] = await Promise.all([
      readMetrics(o.ports.collector, STATUS_METRICS.collector),
      readMetrics(o.ports.processor, STATUS_METRICS.processor),
    ]);
    const behind = await lag(processor);
    const views = {
      collector: processView(o.supervisors.collector),
      processor: processView(o.supervisors.processor),
    };
    const cur = readingFrom(Date.now(), collector, processor, behind, views);
    o.view.status(statusLines(ctx, prev, cur));
    prev = cur;
  };
  const tick = () => {
    reading ??= read().finally(() => {
      reading = undefined;
    });
  };
  tick();
  const timer = setInterval(tick, o.intervalMs ?? 2_000);
  return {
    async stop() {
      clearInterval(timer);
      await reading;
      await admin?.disconnect().catch(() => {});
    },
  };
}
