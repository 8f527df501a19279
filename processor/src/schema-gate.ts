// Decoding waits for the schema registry (kafka.schemaRegistryUrl set). Before a fetched
// batch is decoded, the codec's prepare() looks up the writer-schema ids it has not seen
// yet (and registers the outputs' schemas, once): usually nothing, else one quick lookup,
// after which every message of that id decodes synchronously. When the registry can't
// answer, the batch is NOT decoded, since its good messages would all become dead letters
// for the registry's fault: the partition is paused, its messages stay unresolved in Kafka,
// and one probe (the first held batch's values) retries with backoff. When the registry
// answers, every held partition resumes and re-reads from where it stopped. Partitions whose
// schemas are all known keep going meanwhile. A lookup that
// takes longer than waitMs is held the same way, so one partition's lookup never stalls the
// other partitions' batches for long (kafkajs fetches the next round only when every batch
// of this one returned). An outage is logged once when it starts and once when it ends, and
// counted (stats()).
import type { Logger } from '../../common/log.js';

export interface SchemaGateOptions {
  /** The codec's prepare: undefined = nothing to look up; rejects while the registry can't answer. */
  prepare(values: ReadonlyArray<Buffer | null>): Promise<void> | undefined;
  /** Stop fetching a topic-partition (kafkajs consumer.pause). */
  pause(topic: string, partition: number): void;
  /** Fetch it again; the caller leaves alone partitions something else holds (restore, pending rows). */
  resume(topic: string, partition: number): void;
  log: Logger;
  retryInitialMs: number;
  retryMaxMs: number;
  /** How long a batch waits for its lookups before its partition is held instead. */
  waitMs?: number;
}

export interface SchemaGateStats {
  /** Times the registry stopped answering (a lookup or registration failed after it had worked). */
  outages: number;
  /** Fetched batches not decoded because their schemas could not be looked up yet. */
  heldBatches: number;
  /** True while lookups fail. */
  down: boolean;
}

export interface SchemaGate {
  /** True: decode the batch now. False: it was not taken (nothing resolved); its partition is paused. */
  admit(batch: {
    topic: string;
    partition: number;
    messages: ReadonlyArray<{ value: Buffer | null }>;
  }): Promise<boolean>;
  stats(): SchemaGateStats;
  /** No more resumes (the processor is stopping). */
  close(): void;
}

export function createSchemaGate(options: SchemaGateOptions): SchemaGate {
  const { log } = options;
  const waitMs = options.waitMs ?? 2_000;
  const held = new Map<string, { topic: string; partition: number }>();
  let blocked = false;
  let failing = false;
  let closed = false;
  let outages = 0;
  let heldBatches = 0;
  let wake: (() => void) | undefined;

  function hold(topic: string, partition: number): void {
    heldBatches++;
    held.set(`${topic}\u0000${partition}`, { topic, partition });
    options.pause(topic, partition);
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref();
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Retries `probe` until it succeeds, then resumes every held partition. */
  async function settle(probe: ReadonlyArray<Buffer | null>, first: Promise<void>): Promise<void> {
    const since = Date.now();
    let attempt = first;
    let delay = options.retryInitialMs;
    for (;;) {
      try {
        await attempt;
        break;
      } catch (err) {
        if (!failing) {
          failing = true;
          outages++;
          log.warn(
            { err: (err as Error).message, heldPartitions: held.size },
            'schema registry unavailable or refusing: decoding paused (nothing is dead-lettered for it); retrying with backoff',
          );
        }
        await sleep(delay);
        if (closed) return;
        delay = Math.min(delay * 2, options.retryMaxMs);
        attempt = options.prepare(probe) ?? Promise.resolve();
      }
    }
    const parts = [...held.values()];
    held.clear();
    if (failing)
      log.info(
        { downMs: Date.now() - since, partitions: parts.length, heldBatches },
        'schema registry answers again: decoding resumed',
      );
    failing = false;
    blocked = false;
    if (closed) return;
    for (const p of parts) options.resume(p.topic, p.partition);
  }

  return {
    async admit(batch) {
      if (closed) return false;
      const values = batch.messages.map((m) => m.value);
      const attempt = options.prepare(values);
      if (attempt === undefined) return true; // every schema known: the registry is not asked
      if (blocked) {
        // The probe speaks for the registry: this lookup is not waited for.
        attempt.catch(() => {});
        hold(batch.topic, batch.partition);
        return false;
      }
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        attempt.then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), waitMs);
        }),
      ]);
      clearTimeout(timer);
      if (done) return true;
      hold(batch.topic, batch.partition);
      if (!blocked) {
        blocked = true;
        void settle(values, attempt);
      }
      return false;
    },
    stats: () => ({ outages, heldBatches, down: failing }),
    close() {
      closed = true;
      wake?.();
    },
  };
}
