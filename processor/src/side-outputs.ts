// The processor's Kafka outputs besides ClickHouse: the enriched and alerts topics, and the
// dead-letter topic (whose table copy is the authoritative one). None of them may hold the
// primary write path hostage (DESIGN.md pitfall 14): a send gets a bounded time, and an
// output that fails is marked down and skipped, without waiting, until its backoff ends;
// then the next batch tries it again. Every skip is returned to the caller, which counts it
// (metric, ingest_losses table, alert). A skipped send is not retried later: the output is
// at-least-once while it is up, and says exactly what it skipped while it is down.
//
// The producer is idempotent (acks=all, one request in flight), so kafkajs' own retries of a
// request the broker wrote are not written twice. After a failed send it is replaced: kafkajs
// hands the failed request's sequence numbers to the next send, and a different batch under
// numbers the broker already holds is refused as out of order (forever, on that producer) or,
// with the same count, taken for the old one and dropped as a duplicate without a word. And
// every partition a send wrote to must be in the answer: kafkajs 2.2.4 can leave out a
// partition whose leader moved to a broker that had already answered (tulios/kafkajs#1303)
// and report success; such a send counts as skipped.
import {
  CompressionTypes,
  type ICustomPartitioner,
  Partitioners,
  type Producer,
  type RecordMetadata,
} from 'kafkajs';
import { createBufferReclaimer } from '../../common/buffer-reclaim.js';
import { kafkajsErrorType } from '../../common/kafka-topics.js';
import type { Logger } from '../../common/log.js';

export type OutputName = 'enriched' | 'alerts' | 'deadletter';

export interface OutputSend {
  output: OutputName;
  topic: string;
  messages: { key: string | null; value: Buffer }[];
  /** Events (or records) the messages carry: what a skip loses. */
  events: number;
  /** The same, per node ('' where a record has none): the loss rows of a skip. */
  eventsByNode: Map<string, number>;
}

/** Records per message key (the node, for alerts), for OutputSend.eventsByNode. */
export function countByKey(messages: { key: string | null }[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of messages) out.set(m.key ?? '', (out.get(m.key ?? '') ?? 0) + 1);
  return out;
}

export interface OutputResult {
  output: OutputName;
  skipped: boolean;
  /** Why it was skipped: a Kafka error type in lower case, `timeout`, or `produce_failed`. */
  reason: string;
  /** True when this send is the one that found the output failing (the skip starts here). */
  wentDown: boolean;
}

export interface OutputOptions {
  /** One send's time budget, Kafka's own retries included. */
  attemptTimeoutMs: number;
  /** First wait before a failed output is tried again; doubles up to backoffMaxMs. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** A produce request holds at most about this many bytes of values (the broker bounds a request). */
  maxRequestBytes: number;
}

export const DEFAULT_OUTPUT_OPTIONS: OutputOptions = {
  attemptTimeoutMs: 10_000,
  backoffInitialMs: 5_000,
  backoffMaxMs: 60_000,
  maxRequestBytes: 800_000,
};

class OutputTimeoutError extends Error {}
class UnansweredPartitionError extends Error {}

/** The partition kafkajs chose for each message object, for the answer check. */
const chosenPartition = new WeakMap<object, number>();

/** kafkajs' default partitioner, remembering its choice per message (the outputs' producer uses it). */
export const recordingPartitioner: ICustomPartitioner = () => {
  const inner = Partitioners.DefaultPartitioner();
  return (args) => {
    const partition = inner(args);
    chosenPartition.set(args.message, partition);
    return partition;
  };
};

/** Throws when a partition some of `messages` went to has no answer in `answers`. */
function checkAnswered(topic: string, messages: object[], answers: RecordMetadata[]): void {
  const answered = new Set(answers.filter((a) => a.topicName === topic).map((a) => a.partition));
  const missing = new Set<number>();
  for (const m of messages) {
    const partition = chosenPartition.get(m);
    if (partition !== undefined && !answered.has(partition)) missing.add(partition);
  }
  if (missing.size > 0)
    throw new UnansweredPartitionError(`no answer for partition(s) ${[...missing].join(', ')} of ${topic}`);
}

interface Down {
  reason: string;
  retryAtMs: number;
  backoffMs: number;
}

export class OptionalOutputs {
  private readonly down = new Map<OutputName, Down>();
  private producer: Promise<Producer> | undefined;
  /** Frees kafkajs' dead request Buffers while young (common/buffer-reclaim.ts). */
  private readonly reclaimer = createBufferReclaimer();

  /** `newProducer`: an idempotent producer with recordingPartitioner, not yet connected. */
  constructor(
    private readonly newProducer: () => Producer,
    private readonly options: OutputOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Connects the first producer (a failure here fails the processor's start, as before). */
  async connect(): Promise<void> {
    await this.connected();
  }

  async close(): Promise<void> {
    const current = this.producer;
    this.producer = undefined;
    if (current) await (await current.catch(() => undefined))?.disconnect();
  }

  private connected(): Promise<Producer> {
    if (this.producer === undefined) {
      const producer = this.newProducer();
      const ready = producer.connect().then(() => producer);
      this.producer = ready;
      ready.catch(() => {
        if (this.producer === ready) this.producer = undefined;
      });
    }
    return this.producer;
  }

  /** After a failed send: the next send gets a new producer (new id, new sequence numbers). */
  private retire(failed: Promise<Producer>): void {
    if (this.producer !== failed) return;
    this.producer = undefined;
    void failed.then((p) => p.disconnect()).catch(() => undefined);
  }

  /** Publishes one output's messages, or skips it; never throws. */
  async publish(send: OutputSend): Promise<OutputResult> {
    const down = this.down.get(send.output);
    if (down !== undefined && this.now() < down.retryAtMs)
      return { output: send.output, skipped: true, reason: down.reason, wentDown: false };
    const producer = this.connected();
    try {
      // Dead letters are rare and can be large (a cut copy of a message): compressed.
      const compression = send.output === 'deadletter' ? CompressionTypes.ZSTD : CompressionTypes.None;
      for (const messages of chunkBySize(send.messages, this.options.maxRequestBytes)) {
        const answers = await this.withTimeout(
          producer.then((p) => p.send({ topic: send.topic, messages, acks: -1, compression })),
        );
        checkAnswered(send.topic, messages, answers);
        this.reclaimer.check();
      }
    } catch (err) {
      this.retire(producer);
      const reason = failureReason(err);
      const backoffMs =
        down === undefined
          ? this.options.backoffInitialMs
          : Math.min(down.backoffMs * 2, this.options.backoffMaxMs);
      this.down.set(send.output, { reason, retryAtMs: this.now() + backoffMs, backoffMs });
      const fields = { output: send.output, topic: send.topic, reason, retryInMs: backoffMs };
      if (down === undefined)
        this.log.warn({ ...fields, err: (err as Error).message }, 'output down; skipping it');
      else this.log.debug(fields, 'output still down');
      return { output: send.output, skipped: true, reason, wentDown: down === undefined };
    }
    if (down !== undefined) {
      this.down.delete(send.output);
      this.log.info({ output: send.output, topic: send.topic }, 'output back up');
    }
    return { output: send.output, skipped: false, reason: '', wentDown: false };
  }

  /** Outputs being skipped now, with their reason (metrics, health). */
  downOutputs(): { output: OutputName; reason: string }[] {
    return [...this.down].map(([output, d]) => ({ output, reason: d.reason }));
  }

  private async withTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new OutputTimeoutError(`no answer within ${this.options.attemptTimeoutMs} ms`)),
        this.options.attemptTimeoutMs,
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined); // a late failure of an abandoned send is already counted
    }
  }
}

function failureReason(err: unknown): string {
  if (err instanceof OutputTimeoutError) return 'timeout';
  if (err instanceof UnansweredPartitionError) return 'unanswered_partition';
  return kafkajsErrorType(err)?.toLowerCase() ?? 'produce_failed';
}

/** Splits messages into produce requests of at most ~maxBytes of values each. */
export function chunkBySize<M extends { value: Buffer }>(messages: M[], maxBytes: number): M[][] {
  const out: M[][] = [];
  let current: M[] = [];
  let bytes = 0;
  for (const m of messages) {
    if (bytes + m.value.length > maxBytes && current.length > 0) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += m.value.length;
  }
  if (current.length > 0) out.push(current);
  return out;
}
