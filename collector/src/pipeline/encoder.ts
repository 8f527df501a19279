// Turns a closed batch of events into one EventBatch Kafka message (the envelope of
// schemas/EventBatch.avsc) and queues it. Here the per-node sequence number is assigned:
// +1 per queued EventBatch, restarting per boot id, so downstream sees a gap exactly when
// a queued message was lost (dropped from the buffer, or never acknowledged) and a repeat
// when Kafka got a message twice.
//
// Size: the batcher bounds batches by an estimate (bytesPerEvent, learned from the real
// encoded sizes). If an encoded message still exceeds maxMessageBytes (Kafka's per-message
// limit), the batch is split in halves and each half encoded on its own; a single event that
// alone exceeds the limit is dropped as oversized_event. An event the codec rejects is found
// the same way, by halving, and dropped as encode_error, so one bad event never costs its
// neighbours. Sequence numbers are consumed only by queued messages: these drops leave no
// gap downstream and are reported in the stats instead.
import type { BootClock } from '../clock.js';
import type { CollectorCounters } from '../stats.js';
import type { DropReason, SendQueue } from './send-queue.js';

export interface EventBatchEnvelope<E> {
  node: string;
  bootId: string;
  collectorVersion: string;
  sequence: bigint;
  producedAtNs: bigint;
  bootEpochNs: bigint | null;
  events: E[];
}

export type EncodeEventBatch<E> = (batch: EventBatchEnvelope<E>) => Buffer;

export interface BatchEncoderOptions<E> {
  node: string;
  collectorVersion: string;
  topic: string;
  clock: BootClock;
  encode: EncodeEventBatch<E>;
  queue: SendQueue;
  counters: CollectorCounters;
  /** Hard limit per Kafka message (below the broker's message.max.bytes). */
  maxMessageBytes: number;
  /** First sequence number to assign (0 for a fresh boot). */
  firstSequence?: bigint;
  /** Called with the next sequence number after each queued message (persistence). */
  onSequence?: (next: bigint) => void;
  onDrop: (events: number, reason: DropReason, error?: unknown) => void;
}

export interface BatchEncoder<E> {
  /** Encodes and queues; returns how many messages it queued. */
  encodeAndQueue(events: E[], capturedAtMs: number): number;
  /** Current estimate of encoded bytes per event (for the batcher's byte bound). */
  readonly bytesPerEvent: number;
  readonly nextSequence: bigint;
}

export function createBatchEncoder<E>(options: BatchEncoderOptions<E>): BatchEncoder<E> {
  const { node, collectorVersion, topic, clock, encode, queue, counters, maxMessageBytes, onDrop } = options;
  let sequence = options.firstSequence ?? 0n;
  // Learned average: starts pessimistic, then follows real sizes (EWMA over messages).
  let bytesPerEvent = 200;

  function encodeOne(events: E[]): Buffer | 'too_big' | { error: unknown } {
    const wallNs = BigInt(Date.now()) * 1_000_000n;
    const envelope: EventBatchEnvelope<E> = {
      node,
      bootId: clock.bootId,
      collectorVersion,
      sequence,
      producedAtNs: wallNs,
      bootEpochNs: clock.wallMinusBootNs(),
      events,
    };
    let buf: Buffer;
    try {
      buf = encode(envelope);
    } catch (error) {
      return { error };
    }
    return buf.length > maxMessageBytes ? 'too_big' : buf;
  }

  function emit(events: E[], capturedAtMs: number): number {
    const result = encodeOne(events);
    if (Buffer.isBuffer(result)) {
      queue.push({ topic, key: node, value: result, events: events.length, capturedAtMs, sequence });
      counters.sequence = sequence;
      sequence++;
      options.onSequence?.(sequence);
      counters.encodedMessages++;
      counters.encodedBytes += result.length;
      bytesPerEvent = bytesPerEvent * 0.8 + (result.length / events.length) * 0.2;
      return 1;
    }
    if (events.length === 1) {
      if (result === 'too_big') onDrop(1, 'oversized_event');
      else onDrop(1, 'encode_error', result.error);
      return 0;
    }
    const half = events.length >>> 1;
    return emit(events.slice(0, half), capturedAtMs) + emit(events.slice(half), capturedAtMs);
  }

  return {
    encodeAndQueue(events, capturedAtMs) {
      return events.length === 0 ? 0 : emit(events, capturedAtMs);
    },
    get bytesPerEvent() {
      return bytesPerEvent;
    },
    get nextSequence() {
      return sequence;
    },
  };
}
