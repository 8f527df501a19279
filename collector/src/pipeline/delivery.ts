// The delivery loop: moves encoded messages from the bounded send queues (one per topic:
// events, container metadata, stats) to the sink, one request in flight at a time (the
// idempotent producer's rule). Messages leave a queue only when the sink says 'success'
// (delivered) or 'failure' for a lone message (dropped as kafka_rejected); on 'retryable'
// they go back to the head of their queue and the loop backs off exponentially, with
// jitter, up to maxBackoffMs. The collector keeps capturing meanwhile; the queues' bounds
// decide what is dropped, and every drop is counted.
import { createLogger } from '../../../common/log.js';
import type { MessageSink } from '../kafka-sink.js';
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
  const initialBackoffMs = 100;
  const maxBackoffMs = 5_000;

  let running: Promise<void> | undefined;
  let stopping = false;
  // Two wake-ups: new messages end an idle wait, but only stop() and drain() cut a backoff
  // short (otherwise every push during an outage would hammer the broker).
  let wakeIdle: (() => void) | undefined;
  let wakeSleep: (() => void) | undefined;
  let healthy = false;
  let failures = 0;
  let next = 0; // round-robin start, so a busy events queue can't starve stats or metadata
  const drainWaiters: Array<() => void> = [];

  const empty = (): boolean => queues.every((q) => q.messages === 0);

  function sleep(ms: number): Promise<void> {
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
  }

  function idle(): Promise<void> {
    return new Promise((resolve) => {
      wakeIdle = () => {
        wakeIdle = undefined;
        resolve();
      };
    });
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      if (empty()) {
        for (const w of drainWaiters.splice(0)) w();
        await idle();
        continue;
      }
      // One request: a share of each non-empty queue, starting at the round-robin point.
      const taken: SendQueue[] = [];
      const all: QueuedMessage[] = [];
      let bytes = 0;
      for (let i = 0; i < queues.length; i++) {
        const q = queues[(next + i) % queues.length] as SendQueue;
        if (q.messages === 0 || bytes >= maxRequestBytes || all.length >= maxRequestMessages) continue;
        const msgs = q.takeForSend(Math.max(1, maxRequestBytes - bytes), maxRequestMessages - all.length);
        if (msgs.length === 0) continue;
        taken.push(q);
        for (const m of msgs) {
          all.push(m);
          bytes += m.value.length;
        }
      }
      next = (next + 1) % queues.length;

      const result = await sink.send(all);
      if (result.status === 'success') {
        healthy = true;
        failures = 0;
        for (const q of taken) onDelivered(q, q.ack());
        continue;
      }
      healthy = false;
      failures++;
      options.onSendError?.(result.error);
      if (result.maybeWritten) for (const m of all) m.maybeWritten = true;
      if (result.status === 'failure') {
        if (all.length === 1) {
          // The broker rejects this message itself: drop it, counted, and go on.
          (taken[0] as SendQueue).dropInFlight('kafka_rejected');
          failures = 0;
          continue;
        }
        // Several messages in the request: retry them one at a time to find the bad one.
        for (const q of taken) q.release();
        await sendOneByOne();
        continue;
      }
      for (const q of taken) q.release();
      const backoff =
        result.retryInMillis ?? Math.min(maxBackoffMs, initialBackoffMs * 2 ** Math.min(failures - 1, 16));
      const jittered = backoff / 2 + Math.random() * (backoff / 2);
      if (failures === 1 || failures % 10 === 0)
        log.warn(
          { failures, backoffMs: Math.round(jittered), err: result.error?.message },
          'cannot send (kafka or the schema registry unavailable); holding messages and retrying',
        );
      await sleep(jittered);
    }
  }

  /** Isolates a rejected message by sending each head message alone. */
  async function sendOneByOne(): Promise<void> {
    for (const q of queues) {
      if (q.messages === 0) continue;
      const msgs = q.takeForSend(1, 1);
      const result = await sink.send(msgs);
      if (result.maybeWritten) for (const m of msgs) m.maybeWritten = true;
      if (result.status === 'success') onDelivered(q, q.ack());
      else if (result.status === 'failure') q.dropInFlight('kafka_rejected');
      else {
        q.release();
        return;
      }
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
      wakeIdle?.();
    },
    drain(deadlineMs) {
      if (empty()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs));
        drainWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
        wakeIdle?.();
      });
    },
    async stop() {
      stopping = true;
      wakeIdle?.();
      wakeSleep?.();
      await running;
    },
    get healthy() {
      return healthy;
    },
  };
}
