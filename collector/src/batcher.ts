// Groups events into Kafka-message-sized batches, in the manner of OpenTelemetry's
// BatchSpanProcessorBase: a batch closes when it reaches maxEvents or maxBytes, or when
// its first event has waited maxDelayMs. The timer is unref'd (it never keeps the process
// alive) and shutdown runs once, flushing what it holds first.
//
// Each event is encoded the moment it arrives, into one reused buffer: the batch holds
// bytes, not objects. Events held as objects for up to maxDelayMs would outlive V8's young
// generation at low rates and be promoted, which costs more CPU than the encoding itself
// (docs/benchmarks.md, Collector). It also makes maxBytes exact.
//
// The batcher drops only what can never be sent: an event the codec rejects (encode_error)
// or one larger than maxBytes on its own (oversized_event), each counted by onReject. The
// bounded buffer behind it (pipeline/send-queue.ts) decides what else to drop.
import { ConfigError } from '../../common/errors.js';

export interface BatcherOptions {
  maxEvents: number;
  /** Encoded bytes per batch (the events' Avro items, without the envelope). */
  maxBytes: number;
  maxDelayMs: number;
}

/** Writes one item at `pos` of `buf`: its end, or minus the bytes missing; throws if invalid. */
export type WriteItem<T> = (item: T, buf: Buffer, pos: number) => number;

export type RejectReason = 'encode_error' | 'oversized_event';

export interface Batcher<T> {
  add(event: T): void;
  /** Adds every event of an array (the decoder's output) without per-event closures. */
  addAll(events: readonly T[]): void;
  /** Closes the open batch now, if any. */
  flush(): void;
  /** Flushes and stops accepting events; later calls are no-ops. */
  shutdown(): void;
  /** Events held in the open batch (for the loss-accounting invariant). */
  readonly pendingEvents: number;
  /** Date.now() when the open batch got its first event; undefined when empty. */
  readonly openedAtMs: number | undefined;
}

const FIRST_CAPACITY = 64 * 1024;

/**
 * @param write encodes one event into the batch buffer
 * @param onBatch receives each closed batch: its items' bytes (a view of the reused buffer,
 *   valid only during the call: copy what you keep), how many, and Date.now() when its first
 *   event arrived (for "oldest unsent event" age)
 * @param onReject an event that was not batched, and why
 */
export function createBatcher<T>(
  options: BatcherOptions,
  write: WriteItem<T>,
  onBatch: (items: Buffer, count: number, openedAtMs: number) => void,
  onReject: (reason: RejectReason, error?: unknown) => void,
): Batcher<T> {
  for (const key of ['maxEvents', 'maxBytes', 'maxDelayMs'] as const) {
    const v = options[key];
    if (!Number.isInteger(v) || v <= 0)
      throw new ConfigError(`batcher ${key} must be a positive integer, got ${v}`);
  }
  const { maxEvents, maxBytes, maxDelayMs } = options;
  // Grows by doubling up to maxBytes, never past it: an item that does not fit closes the
  // batch, and one that does not fit an empty buffer of maxBytes is oversized.
  let buf = Buffer.alloc(Math.min(FIRST_CAPACITY, maxBytes));
  let used = 0;
  let count = 0;
  let openedAtMs = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const onTimer = (): void => {
    timer = undefined;
    flush();
  };

  function flush(): void {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (count === 0) return;
    const items = buf.subarray(0, used);
    const n = count;
    used = 0;
    count = 0;
    onBatch(items, n, openedAtMs);
  }

  function add(event: T): void {
    if (closed) throw new Error('batcher is shut down');
    let end: number;
    for (;;) {
      try {
        end = write(event, buf, used);
      } catch (err) {
        onReject('encode_error', err);
        return;
      }
      if (end >= 0) break;
      const needed = buf.length - end; // where the item would end
      if (needed - used > maxBytes) {
        onReject('oversized_event');
        return;
      }
      if (needed > maxBytes)
        flush(); // it fits an empty batch: close this one first
      else {
        const grown = Buffer.alloc(Math.min(maxBytes, Math.max(needed, buf.length * 2)));
        buf.copy(grown, 0, 0, used);
        buf = grown;
      }
    }
    if (count === 0) openedAtMs = Date.now();
    used = end;
    count++;
    if (count >= maxEvents || used >= maxBytes) flush();
    else if (timer === undefined) {
      timer = setTimeout(onTimer, maxDelayMs);
      timer.unref();
    }
  }

  return {
    add,
    addAll(events) {
      for (let i = 0; i < events.length; i++) add(events[i] as T);
    },
    flush,
    shutdown() {
      if (closed) return;
      flush();
      closed = true;
    },
    get pendingEvents() {
      return count;
    },
    get openedAtMs() {
      return count === 0 ? undefined : openedAtMs;
    },
  };
}
