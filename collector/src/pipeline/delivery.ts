// The delivery loop: moves encoded messages from the bounded send queues (one per topic:
// events, container metadata, stats) to the sink, one request in flight at a time (the
// idempotent producer's rule). Messages leave a queue only when the sink says 'success'
// (delivered) or 'failure' for a lone message (dropped as kafka_rejected). On 'retryable'
// the loop backs off exponentially, with jitter, up to maxBackoffMs, and then sends the
// same messages again, nothing added: the idempotent producer reuses their sequence
// numbers, so a request that was written although it failed here (a broker killed before
// it answered) is recognised by the broker instead of written twice; a request with other
// messages under those numbers would be refused as out of order, or taken for the old one
// and dropped. Topics the sink reports acknowledged are done and not sent again.
// Like the Java producer's delivery.timeout.ms, this lasts resendUnchangedMs: a longer
// outage puts the messages back in their queues, where the bounds drop the oldest, and the
// sink starts a new producer id (until a send succeeds, after every failure), so what is
// sent next can't be mistaken for an old batch; a request that was written just before the
// outage may then arrive twice, which its (node, bootId, sequence) shows downstream. The
// collector keeps capturing meanwhile, and every drop is counted.
import { createLogger } from '../../../common/log.js';
import type { MessageSink, SinkResult } from '../kafka-sink.js';
import type { QueuedMessage, SendQueue } from './send-queue.js';

export interface DeliveryOptions {
  queues: readonly SendQueue[];
  sink: MessageSink;
  /**
   * Bytes of message values per produce request. kafkajs puts a partition's messages of one
   * request into ONE record batch, and the broker rejects a batch above message.max.bytes
   * (1 MiB by default) with MESSAGE_TOO_LARGE: keep this at most the per-message limit.
   */
  maxRequestBytes?: number;
  onDelivered: (queue: SendQueue, messages: readonly QueuedMessage[]) => void;
  onSendError?: (error: Error | undefined) => void;
  /**
   * How long a failed request is sent again unchanged (default 20 s: a killed leader's
   * partitions have a new one within ~5 s, a restarted broker within ~25 s on a loaded machine).
   */
  resendUnchangedMs?: number;
}

/** The messages one queue contributes to a request (all of one topic). */
interface Part {
  queue: SendQueue;
  messages: QueuedMessage[];
}

export interface Delivery {
  /** Starts the loop (idempotent). */
  start(): void;
  /** Tells the loop new messages are queued. Cheap; call after every push. */
  notify(): void;
  /** Resolves true when every queue is empty, false if deadlineMs passed first. */
  drain(deadlineMs: number): Promise<boolean>;
  /** Stops the loop after the current request; does not drop anything. */
  stop(): Promise<void>;
  /** True after the last request succeeded (readiness). */
  readonly healthy: boolean;
}

export function createDelivery(options: DeliveryOptions): Delivery {
  const log = createLogger('collector.delivery');
  const { queues, sink, onDelivered } = options;
  const maxRequestBytes = options.maxRequestBytes ?? 1_000_000;
  const maxRequestMessages = 1_000;
  const resendUnchangedMs = options.resendUnchangedMs ?? 20_000;

  let running: Promise<void> | undefined;
  let stopping = false;
  // Two wake-ups: new messages end an idle wait, but only stop() and drain() cut a backoff
  // short (otherwise every push during an outage would hammer the broker).
  const waits = createWaits();
  let healthy = false;
  let failures = 0;
  let next = 0; // round-robin start, so a busy events queue can't starve stats or metadata
  // A request that failed retryably: sent again as it is, until it succeeds or is rejected,
  // for resendUnchangedMs from the first failure since the last success.
  let pinned: Part[] | undefined;
  let failingSince: number | undefined;
  const drainWaiters: Array<() => void> = [];

  const empty = (): boolean => queues.every((q) => q.messages === 0);

  /**
   * Sends `parts` once and settles what the answer decides: acknowledged parts leave their
   * queues, a rejected lone message is dropped. Returns the parts to send again (pinned),
   * or undefined when nothing of this request is left.
   */
  async function sendParts(parts: Part[]): Promise<{ result: SinkResult; again?: Part[] }> {
    const all = parts.length === 1 ? (parts[0] as Part).messages : parts.flatMap((p) => p.messages);
    const result = await sink.send(all);
    if (result.status === 'success') {
      for (const { queue } of parts) onDelivered(queue, queue.ack());
      return { result };
    }
    if (result.maybeWritten) for (const m of all) m.maybeWritten = true;
    // Topics Kafka acknowledged before another one failed: delivered, never sent again.
    const left = parts.filter(({ queue, messages }) => {
      if (!result.acknowledgedTopics?.has((messages[0] as QueuedMessage).topic)) return true;
      onDelivered(queue, queue.ack());
      return false;
    });
    if (left.length === 0) return { result };
    if (result.status === 'retryable') return { result, again: left };
    if (left.length === 1 && (left[0] as Part).messages.length === 1) {
      // The broker rejects this message itself: drop it, counted, and go on.
      (left[0] as Part).queue.dropInFlight('kafka_rejected');
      return { result };
    }
    // Several messages: a rejection by content writes nothing, so they may be regrouped to
    // find the bad one, each sent alone.
    for (const { queue } of left) queue.release();
    return sendOneByOne();
  }

  /** Isolates a rejected message by sending each head message alone. */
  async function sendOneByOne(): Promise<{ result: SinkResult; again?: Part[] }> {
    let last: { result: SinkResult; again?: Part[] } = { result: { status: 'success' } };
    for (const queue of queues) {
      if (queue.messages === 0) continue;
      last = await sendParts([{ queue, messages: queue.takeForSend(1, 1) }]);
      if (last.again) return last;
    }
    return last;
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      if (pinned === undefined && empty()) {
        for (const w of drainWaiters.splice(0)) w();
        await waits.idle();
        continue;
      }
      const parts = pinned ?? takeRequest(queues, next, maxRequestBytes, maxRequestMessages);
      if (pinned === undefined) next = (next + 1) % queues.length;
      pinned = undefined;
      if (parts.length === 0) continue;
      const { result, again } = await sendParts(parts);
      if (result.status === 'success') {
        healthy = true;
        failures = 0;
        failingSince = undefined;
        continue;
      }
      healthy = false;
      options.onSendError?.(result.error);
      if (again === undefined) {
        // Settled (rejected messages dropped or isolated): go on without waiting.
        failures = 0;
        continue;
      }
      failingSince ??= Date.now();
      if (Date.now() - failingSince < resendUnchangedMs) pinned = again;
      else {
        for (const { queue } of again) queue.release();
        await sink.renewProducer?.();
      }
      failures++;
      const jittered = jitteredBackoffMs(result.retryInMillis, failures);
      if (failures === 1 || failures % 10 === 0)
        log.warn(
          { failures, backoffMs: Math.round(jittered), err: result.error?.message },
          'cannot send (kafka or the schema registry unavailable); holding messages and retrying',
        );
      await waits.sleep(jittered);
    }
  }

  return {
    start() {
      running ??= loop().catch((err: unknown) => {
        log.error({ err }, 'delivery loop crashed');
        throw err;
      });
    },
    notify() {
      waits.wakeIdle();
    },
    drain(deadlineMs) {
      if (empty()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs));
        drainWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
        waits.wakeIdle();
      });
    },
    async stop() {
      stopping = true;
      waits.wakeIdle();
      waits.wakeSleep();
      await running;
    },
    get healthy() {
      return healthy;
    },
  };
}

const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;

/** The wait after `failures` failed sends in a row: the broker's hint, else doubling; jittered. */
function jitteredBackoffMs(hint: number | undefined, failures: number): number {
  const backoff = hint ?? Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** Math.min(failures - 1, 16));
  return backoff / 2 + Math.random() * (backoff / 2);
}

/** A new request: a share of each non-empty queue, starting at queue `start` (round robin). */
function takeRequest(
  queues: readonly SendQueue[],
  start: number,
  maxBytes: number,
  maxMessages: number,
): Part[] {
  const parts: Part[] = [];
  let bytes = 0;
  let count = 0;
  for (let i = 0; i < queues.length; i++) {
    const queue = queues[(start + i) % queues.length] as SendQueue;
    if (queue.messages === 0 || bytes >= maxBytes || count >= maxMessages) continue;
    const messages = queue.takeForSend(Math.max(1, maxBytes - bytes), maxMessages - count);
    if (messages.length === 0) continue;
    parts.push({ queue, messages });
    count += messages.length;
    for (const m of messages) bytes += m.value.length;
  }
  return parts;
}

/** An idle wait (ended by wakeIdle) and a timed sleep (ended early by wakeSleep). */
function createWaits() {
  let wakeIdle: (() => void) | undefined;
  let wakeSleep: (() => void) | undefined;
  return {
    idle(): Promise<void> {
      return new Promise((resolve) => {
        wakeIdle = () => {
          wakeIdle = undefined;
          resolve();
        };
      });
    },
    sleep(ms: number): Promise<void> {
      return new Promise((resolve) => {
        const t = setTimeout(() => {
          wakeSleep = undefined;
          resolve();
        }, ms);
        wakeSleep = () => {
          clearTimeout(t);
          wakeSleep = undefined;
          resolve();
        };
      });
    },
    wakeIdle: () => wakeIdle?.(),
    wakeSleep: () => wakeSleep?.(),
  };
}
