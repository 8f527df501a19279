// The bounded buffer between encoding and Kafka. It holds encoded messages while Kafka is
// slow or down, within a byte bound and a message bound. Past either bound it drops the
// OLDEST queued messages (never one that is in flight), and reports each drop with its
// reason, so the collector's counters stay exact:
//   captured = delivered + dropped(by reason) + pending.
//
// Why drop oldest: after an outage the freshest data is what dashboards and alerts need,
// and the gap it leaves is one contiguous range of sequence numbers per node, which the
// processor reports as lost. Dropping newest would keep stale data and lose the present.
import { ConfigError } from '../../../common/errors.js';

export interface QueuedMessage {
  topic: string;
  key: string;
  value: Buffer;
  /** Events carried (0 for messages that are not event batches). */
  events: number;
  /** Date.now() when the oldest event in it reached the collector: drives "oldest unsent". */
  capturedAtMs: number;
  /** Envelope sequence number, for logs and tests; -1n when not an event batch. */
  sequence: bigint;
  /**
   * A send of this message failed in a way that does not prove Kafka lacks it (timeout,
   * connection lost after the request went out). If it is dropped later, it may still be in
   * Kafka: the drop is counted, and also reported as unconfirmed (see stats.ts).
   */
  maybeWritten?: boolean;
}

export const DROP_REASONS = [
  'buffer_full',
  'oversized_event',
  'encode_error',
  'malformed_record',
  'kafka_rejected',
  'shutdown_deadline',
  'unattributed',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export interface SendQueueOptions {
  name: string;
  maxBytes: number;
  maxMessages: number;
  onDrop: (message: QueuedMessage, reason: DropReason) => void;
}

export interface SendQueue {
  readonly name: string;
  /** Enqueues, dropping the oldest queued messages if the bounds demand it. */
  push(message: QueuedMessage): void;
  /** Moves up to maxBytes / maxMessages from the head into flight (at least one if any). */
  takeForSend(maxBytes: number, maxMessages: number): QueuedMessage[];
  /** The in-flight messages were acknowledged: forget them and return them. */
  ack(): QueuedMessage[];
  /** The in-flight messages failed: put them back at the head, order kept. */
  release(): void;
  /** The in-flight messages were rejected for good: drop them with this reason. */
  dropInFlight(reason: DropReason): void;
  /** Drops everything (queued and in flight) with one reason: used at the shutdown deadline. */
  dropAll(reason: DropReason): void;
  /** Removes and returns everything held, in flight first, without counting a drop (kept elsewhere). */
  takeAll(): QueuedMessage[];
  readonly inFlight: number;
  /** Messages queued or in flight. */
  readonly messages: number;
  readonly bytes: number;
  /** Events queued or in flight. */
  readonly events: number;
  /** capturedAtMs of the oldest message still held, or undefined when empty. */
  readonly oldestCapturedAtMs: number | undefined;
}

export function createSendQueue(options: SendQueueOptions): SendQueue {
  const { name, maxBytes, maxMessages, onDrop } = options;
  if (!(maxBytes > 0) || !(maxMessages > 0))
    throw new ConfigError(`send queue ${name}: maxBytes and maxMessages must be positive`);

  // A deque as an array plus a head index: push and shift are O(1), compacted lazily.
  let queue: QueuedMessage[] = [];
  let head = 0;
  let flight: QueuedMessage[] = [];
  let bytes = 0;
  let events = 0;

  const queued = (): number => queue.length - head;

  function compact(): void {
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  }

  function forget(message: QueuedMessage): void {
    bytes -= message.value.length;
    events -= message.events;
  }

  function dropOldestQueued(): boolean {
    if (queued() === 0) return false;
    const oldest = queue[head] as QueuedMessage;
    queue[head] = undefined as unknown as QueuedMessage; // let it be collected now
    head++;
    forget(oldest);
    onDrop(oldest, 'buffer_full');
    compact();
    return true;
  }

  return {
    name,
    push(message) {
      const size = message.value.length;
      while (queued() + flight.length + 1 > maxMessages || bytes + size > maxBytes) {
        if (!dropOldestQueued()) {
          // Only in-flight messages are left and the new one still does not fit.
          onDrop(message, 'buffer_full');
          return;
        }
      }
      queue.push(message);
      bytes += size;
      events += message.events;
    },
    takeForSend(maxTakeBytes, maxTakeMessages) {
      if (flight.length > 0) throw new Error(`send queue ${name}: a send is already in flight`);
      let taken = 0;
      while (queued() > 0 && flight.length < maxTakeMessages) {
        const next = queue[head] as QueuedMessage;
        if (flight.length > 0 && taken + next.value.length > maxTakeBytes) break;
        queue[head] = undefined as unknown as QueuedMessage;
        head++;
        flight.push(next);
        taken += next.value.length;
      }
      compact();
      return flight.slice();
    },
    ack() {
      const done = flight;
      flight = [];
      for (const m of done) forget(m);
      return done;
    },
    release() {
      if (flight.length === 0) return;
      queue = flight.concat(queue.slice(head));
      head = 0;
      flight = [];
    },
    dropInFlight(reason) {
      const done = flight;
      flight = [];
      for (const m of done) {
        forget(m);
        onDrop(m, reason);
      }
    },
    dropAll(reason) {
      // A request still in flight may yet be written: its outcome is unknown.
      for (const m of flight) m.maybeWritten = true;
      const all = flight.concat(queue.slice(head));
      flight = [];
      queue = [];
      head = 0;
      for (const m of all) {
        forget(m);
        onDrop(m, reason);
      }
    },
    takeAll() {
      const all = flight.concat(queue.slice(head));
      flight = [];
      queue = [];
      head = 0;
      for (const m of all) forget(m);
      return all;
    },
    get inFlight() {
      return flight.length;
    },
    get messages() {
      return queued() + flight.length;
    },
    get bytes() {
      return bytes;
    },
    get events() {
      return events;
    },
    get oldestCapturedAtMs() {
      const first = flight[0] ?? (queued() > 0 ? queue[head] : undefined);
      return first?.capturedAtMs;
    },
  };
}
