// The processor's Kafka outputs besides ClickHouse: the enriched and alerts topics, and the
// dead-letter topic (whose table copy is the authoritative one). None of them may hold the
// primary write path hostage (DESIGN.md pitfall 14): a send gets a bounded time, and an
// output that fails is marked down and skipped, without waiting, until its backoff ends;
// then the next batch tries it again. Every skip is returned to the caller, which counts it
// (metric, ingest_losses table, alert). A skipped send is not retried later: the output is
// at-least-once while it is up, and says exactly what it skipped while it is down.
import { CompressionTypes, type Producer } from 'kafkajs';
import { kafkajsErrorType } from '../../common/kafka.js';
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

interface Down {
  reason: string;
  retryAtMs: number;
  backoffMs: number;
}

export class OptionalOutputs {
  private readonly down = new Map<OutputName, Down>();

  constructor(
    private readonly producer: Producer,
    private readonly options: OutputOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Publishes one output's messages, or skips it; never throws. */
  async publish(send: OutputSend): Promise<OutputResult> {
    const down = this.down.get(send.output);
    if (down !== undefined && this.now() < down.retryAtMs)
      return { output: send.output, skipped: true, reason: down.reason, wentDown: false };
    try {
      // Dead letters are rare and can be large (a cut copy of a message): compressed.
      const compression = send.output === 'deadletter' ? CompressionTypes.ZSTD : CompressionTypes.None;
      for (const messages of chunkBySize(send.messages, this.options.maxRequestBytes))
        await this.withTimeout(this.producer.send({ topic: send.topic, messages, acks: -1, compression }));
    } catch (err) {
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
