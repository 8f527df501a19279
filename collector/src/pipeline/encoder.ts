// Turns a closed batch (its events already encoded by the batcher) into one EventBatch
// Kafka message (the envelope of schemas/EventBatch.avsc) and queues it. Here the per-node
// sequence number is assigned: +1 per queued EventBatch, restarting per boot id, so
// downstream sees a gap exactly when a queued message was lost (dropped from the buffer,
// or never acknowledged) and a repeat when Kafka got a message twice.
//
// Size: the batcher bounds the items exactly, and the collector keeps batchMaxBytes far
// enough below maxMessageBytes for any envelope. A message that still came out too big, or
// an envelope the codec rejects, is dropped (oversized_event, encode_error) before it takes
// a sequence number: such drops leave no gap downstream and are reported in the stats.
import type { BootClock } from '../clock.js';
import type { CollectorCounters } from '../stats.js';
import type { DropReason, SendQueue } from './send-queue.js';

export interface EventBatchEnvelope {
  node: string;
  bootId: string;
  collectorVersion: string;
  sequence: bigint;
  producedAtNs: bigint;
  bootEpochNs: bigint | null;
}

/** Header + EventBatch from the envelope and `count` events already encoded as `items`. */
export type FrameEventBatch = (envelope: EventBatchEnvelope, items: Uint8Array, count: number) => Buffer;

export interface BatchEncoderOptions {
  node: string;
  collectorVersion: string;
  topic: string;
  clock: BootClock;
  frame: FrameEventBatch;
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

export interface BatchEncoder {
  /** Frames and queues one closed batch; returns whether it was queued. */
  encodeAndQueue(items: Uint8Array, count: number, capturedAtMs: number): boolean;
  readonly nextSequence: bigint;
}

export function createBatchEncoder(options: BatchEncoderOptions): BatchEncoder {
  const { node, collectorVersion, topic, clock, frame, queue, counters, maxMessageBytes, onDrop } = options;
  let sequence = options.firstSequence ?? 0n;

  return {
    encodeAndQueue(items, count, capturedAtMs) {
      if (count === 0) return false;
      let value: Buffer;
      try {
        value = frame(
          {
            node,
            bootId: clock.bootId,
            collectorVersion,
            sequence,
            producedAtNs: BigInt(Date.now()) * 1_000_000n,
            bootEpochNs: clock.wallMinusBootNs(),
          },
          items,
          count,
        );
      } catch (error) {
        onDrop(count, 'encode_error', error);
        return false;
      }
      if (value.length > maxMessageBytes) {
        onDrop(count, 'oversized_event');
        return false;
      }
      queue.push({ topic, key: node, value, events: count, capturedAtMs, sequence });
      counters.sequence = sequence;
      sequence++;
      options.onSequence?.(sequence);
      counters.encodedMessages++;
      counters.encodedBytes += value.length;
      return true;
    },
    get nextSequence() {
      return sequence;
    },
  };
}
