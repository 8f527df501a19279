// Groups events into Kafka-message-sized batches, in the manner of OpenTelemetry's
// BatchSpanProcessorBase: a batch closes when it reaches maxEvents or maxBytes, or when
// its first event has waited maxDelayMs. The timer is unref'd (it never keeps the process
// alive) and shutdown runs once, flushing what it holds first.
//
// The batcher itself never drops: its size is bounded by the flush triggers, and the
// bounded buffer behind it (pipeline/send-queue.ts) decides what to drop and counts it.
import { ConfigError } from '../../common/errors.js';

export interface BatcherOptions {
  maxEvents: number;
  /** Estimated encoded bytes per batch (see sizeOf); the encoder splits if it overshoots. */
  maxBytes: number;
  maxDelayMs: number;
}

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

/**
 * @param sizeOf estimated encoded size of one event in bytes
 * @param onBatch receives each closed batch (ownership passes to it), its estimated bytes and
 *   Date.now() when its first event arrived (for "oldest unsent event" age)
 */
export function createBatcher<T>(
  options: BatcherOptions,
  sizeOf: (event: T) => number,
  onBatch: (events: T[], estimatedBytes: number, openedAtMs: number) => void,
): Batcher<T> {
  for (const key of ['maxEvents', 'maxBytes', 'maxDelayMs'] as const) {
    const v = options[key];
    if (!Number.isInteger(v) || v <= 0)
      throw new ConfigError(`batcher ${key} must be a positive integer, got ${v}`);
  }
  const { maxEvents, maxBytes, maxDelayMs } = options;
  let open: T[] = [];
  let openBytes = 0;
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
    if (open.length === 0) return;
    const events = open;
    const bytes = openBytes;
    open = [];
    openBytes = 0;
    onBatch(events, bytes, openedAtMs);
  }

  function add(event: T): void {
    if (closed) throw new Error('batcher is shut down');
    const size = sizeOf(event);
    // Close the open batch first when this event would push it past the byte bound, so a
    // batch overshoots only when a single event is larger than maxBytes on its own.
    if (open.length > 0 && openBytes + size > maxBytes) flush();
    if (open.length === 0) openedAtMs = Date.now();
    open.push(event);
    openBytes += size;
    if (open.length >= maxEvents || openBytes >= maxBytes) flush();
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
      return open.length;
    },
    get openedAtMs() {
      return open.length === 0 ? undefined : openedAtMs;
    },
  };
}
