// The Kafka sink: sends already-encoded messages and answers, as OpenTelemetry exporters
// do, { status: 'success' | 'failure' | 'retryable' }. It owns no buffer and no retry
// loop: the delivery loop (pipeline/delivery.ts) keeps messages until 'success', backs
// off on 'retryable' and drops (counted) on 'failure'.
//
// Producer settings and why:
// - idempotent: true, acks = -1 (all in-sync replicas), maxInFlightRequests = 1: what
//   kafkajs needs for its idempotent producer (it is documented there as experimental).
//   The broker then discards a batch it already wrote when it comes again under the same
//   producer id and sequence numbers: kafkajs' own retries, and the delivery loop's, which
//   resends a failed request unchanged for a while (pipeline/delivery.ts). The producer is
//   replaced when the broker refuses its id or sequence and when the delivery loop stops
//   resending unchanged; a request repeated after that may be written twice, and the
//   processor leaves the copy out by its envelope (processor/src/sequence-marks.ts).
// - One sendBatch per topic, the topics' batches concurrently: a collector's messages of
//   one topic all have its node's key, so each sendBatch goes to one partition and one
//   broker. kafkajs 2.2.4 retries a request that spans brokers per broker and keeps the
//   answers of those that succeeded (src/producer/sendMessages.js): when a failed broker's
//   partition moves to one that had answered, its messages are never sent although the send
//   succeeds (tulios/kafkajs#1303), and when the send fails in the end the partitions that
//   had succeeded carry advanced sequence numbers, so resending them writes them twice.
//   Per topic, what succeeded is known (SinkResult.acknowledgedTopics) and is not resent.
// - zstd, level 2 (common/kafka.ts ZSTD_LEVEL), through ktrail's codec addon on the libuv
//   thread pool. It replaced gzip level 1, the only codec kafkajs has built in: on these
//   Avro batches zstd 2 costs ~40% of gzip 1's CPU for slightly fewer bytes (49% vs 51% of
//   the raw size), and compression was the largest CPU cost off the JS thread. The record
//   batch CRC-32C comes from the same addon (useNativeCrc32cOrWarn). Readers: every ktrail
//   process registers the codec (common/kafka.ts); other Kafka clients read zstd natively.
// - kafkajs retries are short (a few hundred ms) so a send answers quickly while the broker
//   is down; the delivery loop owns the long backoff and keeps counting in the meantime.

import {
  CompressionTypes,
  type ICustomPartitioner,
  type Kafka,
  Partitioners,
  type Producer,
  type ProducerBatch,
  type TopicMessages,
} from 'kafkajs';
import { createBufferReclaimer } from '../../common/buffer-reclaim.js';
import { fixKafkajsEncoderZeroFill, fixKafkajsIdleTimer, useNativeCrc32cOrWarn } from '../../common/kafka.js';
import { KafkaAccessError } from '../../common/kafka-security.js';
import { fixKafkajsRecordBatchCopies } from '../../common/kafkajs-record-batch.js';
import { createLogger } from '../../common/log.js';
import { loadCodecAddon } from '../../common/native-codec.js';
import type { QueuedMessage } from './pipeline/send-queue.js';

export type SinkStatus = 'success' | 'failure' | 'retryable';

export interface SinkResult {
  status: SinkStatus;
  retryInMillis?: number;
  error?: Error;
  /** The request may have reached the broker and been written although it failed here. */
  maybeWritten?: boolean;
  /** On a failure: topics whose messages Kafka acknowledged all the same (not to be resent). */
  acknowledgedTopics?: ReadonlySet<string>;
}

/** What the delivery loop needs from a sink; tests may wrap it. */
export interface MessageSink {
  send(messages: readonly QueuedMessage[]): Promise<SinkResult>;
  close(): Promise<void>;
  /**
   * Calls `listener` for every request that got no answer in time. A frozen broker makes a
   * send hang through several such timeouts before it fails; each one is a Kafka error.
   */
  onRequestTimeout?(listener: () => void): void;
  /** The next send goes out under a new producer id, with sequence numbers from 0. */
  renewProducer?(): Promise<void>;
}

export interface KafkaSinkOptions {
  kafka: Kafka;
}

/** Per-request timeout for the broker's acknowledgement. */
const ACK_TIMEOUT_MS = 10_000;

/** Protocol errors that reject the message itself: resending the same bytes can't succeed. */
const CONTENT_ERRORS = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TIMESTAMP',
  'UNSUPPORTED_COMPRESSION_TYPE',
]);

interface KafkaJsErrorShape {
  name?: string;
  type?: string;
  message?: string;
  cause?: unknown;
  originalError?: unknown;
}

/** The error and what it wraps (NumberOfRetriesExceeded wraps the real one), at most 5 deep. */
function errorChain(err: unknown): KafkaJsErrorShape[] {
  const chain: KafkaJsErrorShape[] = [];
  for (let current = err; chain.length < 5 && current !== undefined && current !== null; ) {
    const e = current as KafkaJsErrorShape;
    chain.push(e);
    current = e.originalError ?? e.cause;
  }
  return chain;
}

/** Every kafkajs error type and name in the chain, outermost first. */
function errorTypes(err: unknown): string[] {
  const types: string[] = [];
  for (const e of errorChain(err)) {
    if (typeof e.type === 'string') types.push(e.type);
    if (typeof e.name === 'string') types.push(e.name);
  }
  return types;
}

/** Errors that prove the request never reached a broker (nothing can have been written). */
const NOT_SENT =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|connect ETIMEDOUT|producer is disconnected|BrokerNotFound|There is no leader|not the leader|UNKNOWN_TOPIC_OR_PARTITION|does not host this topic-partition/i;

function errorText(err: unknown): string {
  return errorChain(err)
    .map((e) => ` ${e.name ?? ''} ${e.type ?? ''} ${e.message ?? ''}`)
    .join('');
}

/** False only when the error shows the request was never written (safe to count as not delivered). */
function maybeWritten(err: unknown): boolean {
  // Authentication or TLS failed: the connection never carried a request.
  if (err instanceof KafkaAccessError) return false;
  return !NOT_SENT.test(errorText(err));
}

function classifyKafkaError(err: unknown): SinkStatus {
  const types = errorTypes(err);
  return types.some((t) => CONTENT_ERRORS.has(t)) ? 'failure' : 'retryable';
}

/**
 * Partition by node: a key is `node` (events, stats) or `node/cgroupId` (container records,
 * so the compacted topic keeps one record per container, not one per node). Only the part
 * before the first '/' is hashed, with kafkajs' default (Java-compatible murmur2)
 * partitioner, so every message of a node lands on the same partition number in every
 * topic: events and container records are co-partitioned when partition counts are equal.
 */
export const nodePartitioner: ICustomPartitioner = () => {
  const inner = Partitioners.DefaultPartitioner();
  return ({ topic, partitionMetadata, message }) => {
    const key = message.key;
    const text = typeof key === 'string' ? key : key ? key.toString() : '';
    const slash = text.indexOf('/');
    const nodeKey = slash < 0 ? text : text.slice(0, slash);
    return inner({ topic, partitionMetadata, message: { ...message, key: nodeKey } });
  };
};

export function createKafkaSink(options: KafkaSinkOptions): MessageSink {
  const log = createLogger('collector.kafka-sink');
  loadCodecAddon(); // fail at start, with how to build it, rather than on the first send
  useNativeCrc32cOrWarn(log);
  fixKafkajsIdleTimer();
  fixKafkajsEncoderZeroFill();
  if (!fixKafkajsRecordBatchCopies()) log.warn('kafkajs copies each record batch through its own Encoders');
  const reclaimer = createBufferReclaimer();
  let producer: Producer | undefined;
  let connecting: Promise<Producer> | undefined;
  const timeoutListeners: (() => void)[] = [];

  function newProducer(): Producer {
    const p = options.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: nodePartitioner,
      allowAutoTopicCreation: false,
      retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1_000 },
    });
    p.on(p.events.REQUEST_TIMEOUT, () => {
      for (const l of timeoutListeners) l();
    });
    return p;
  }

  async function connected(): Promise<Producer> {
    if (producer) return producer;
    connecting ??= (async () => {
      const p = newProducer();
      try {
        await p.connect();
      } catch (err) {
        await p.disconnect().catch(() => {});
        throw err;
      }
      producer = p;
      return p;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  /** After an error that may leave the idempotent sequence state wrong, start afresh. */
  async function resetProducer(): Promise<void> {
    const p = producer;
    producer = undefined;
    if (p) await p.disconnect().catch(() => {});
  }

  return {
    async send(messages) {
      if (messages.length === 0) return { status: 'success' };
      // Group by topic without per-message closures: messages arrive grouped by lane.
      const topicMessages: TopicMessages[] = [];
      let current: TopicMessages | undefined;
      for (const m of messages) {
        if (current === undefined || current.topic !== m.topic) {
          current = { topic: m.topic, messages: [] };
          topicMessages.push(current);
        }
        current.messages.push({ key: m.key, value: m.value });
      }
      let p: Producer;
      try {
        p = await connected();
      } catch (err) {
        // No producer, no produce request: nothing of this send can have been written.
        return failed(err, messages.length, false);
      }
      const settled = await Promise.allSettled(
        topicMessages.map((t) => {
          const batch: ProducerBatch = {
            topicMessages: [t],
            acks: -1,
            timeout: ACK_TIMEOUT_MS,
            compression: CompressionTypes.ZSTD,
          };
          return p.sendBatch(batch);
        }),
      );
      reclaimer.check();
      const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected === undefined) return { status: 'success' };
      const acknowledgedTopics = new Set<string>();
      settled.forEach((r, i) => {
        if (r.status === 'fulfilled') acknowledgedTopics.add((topicMessages[i] as TopicMessages).topic);
      });
      return { ...(await failed(rejected.reason, messages.length, true)), acknowledgedTopics };
    },
    async close() {
      await resetProducer();
    },
    onRequestTimeout(listener) {
      timeoutListeners.push(listener);
    },
    renewProducer: resetProducer,
  };

  async function failed(err: unknown, messages: number, sent: boolean): Promise<SinkResult> {
    const status = classifyKafkaError(err);
    // One line per failure without stacks: an outage produces many of these. An
    // authentication or TLS failure's message says what to fix (common/kafka-security.ts).
    log.warn(
      { error: (err as Error).message, type: errorTypes(err)[0], messages, status },
      'kafka send failed',
    );
    // Idempotence trouble (sequence, producer id, epoch) needs a new producer id. Nothing
    // else does: a new id makes a resent request that was written a second copy.
    if (status === 'retryable' && errorTypes(err).some((t) => /SEQUENCE|PRODUCER|EPOCH/.test(t)))
      await resetProducer();
    return { status, error: err as Error, maybeWritten: sent && status === 'retryable' && maybeWritten(err) };
  }
}
