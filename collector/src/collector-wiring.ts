// The parts createCollector (collector.ts) wires together: the three send queues and the
// delivery loop over them with its counting, the inputs (source batches, samplers, container
// records) while the collector runs, and the stop's drain and close.
import { ConfigError } from '../../common/errors.js';
import type { createThrottledWarn, Logger } from '../../common/log.js';
import type { Batcher } from './batcher.js';
import type {
  CollectorOptions,
  CollectorSettings,
  DecodeResult,
  KtrailEvent,
  RawRecord,
} from './collector.js';
import type { MessageSink } from './kafka-sink.js';
import { createDelivery, type Delivery } from './pipeline/delivery.js';
import { createSendQueue, type QueuedMessage, type SendQueue } from './pipeline/send-queue.js';
import { SchemaRegistryPendingError } from './registry-sink.js';
import { bump, type CollectorCounters, type PendingView } from './stats.js';
import type { StatsReporter } from './stats-reporter.js';

/** Bytes kept free below the per-message limit for the EventBatch envelope. */
const ENVELOPE_HEADROOM = 4096;

/**
 * How long stop() waits for Kafka to acknowledge the final stats record, after the events
 * drain: a few produce round trips when Kafka answers, less when its last request failed.
 * Past it the record is kept on disk for the next start.
 */
const FINAL_STATS_MS = 3_000;
const FINAL_STATS_FAILING_MS = 1_000;

export type Queues = ReturnType<typeof createQueues>;

/** The delivery loop over the three queues, counting what Kafka acknowledged per queue. */
export function createCountingDelivery(
  queues: Queues,
  sink: MessageSink,
  maxRequestBytes: number,
  counters: CollectorCounters,
  statsDelivered: (messages: readonly QueuedMessage[]) => void,
): Delivery {
  const { eventsQueue, containersQueue, statsQueue } = queues;
  // Every unanswered request counts, not only the send that finally fails after them.
  sink.onRequestTimeout?.(() => {
    counters.kafkaErrors++;
  });
  return createDelivery({
    queues: [eventsQueue, containersQueue, statsQueue],
    sink,
    maxRequestBytes,
    onDelivered(queue, messages) {
      if (queue === eventsQueue) {
        for (const m of messages) {
          counters.delivered += m.events;
          counters.deliveredBytes += m.value.length;
        }
        counters.deliveredMessages += messages.length;
      } else {
        bump(counters.deliveredOtherMessages, queue.name, messages.length);
        if (queue === statsQueue) statsDelivered(messages);
      }
    },
    onSendError(error) {
      if (!(error instanceof SchemaRegistryPendingError)) counters.kafkaErrors++;
    },
  });
}

/**
 * A container record to its topic, keyed by node (and the record's own key), while the
 * collector runs; one that cannot be encoded is dropped, counted.
 */
export function containerEnqueuer<E extends KtrailEvent | RawRecord, R>(
  options: CollectorOptions<E, R>,
  queue: SendQueue,
  counters: CollectorCounters,
  log: Logger,
  loop: { running(): boolean; notify(): void },
): (record: R) => void {
  return (record) => {
    if (!loop.running() || !options.encodeContainer) return;
    let value: Buffer;
    try {
      value = options.encodeContainer(record);
    } catch (err) {
      bump(counters.droppedOtherMessages, 'containers');
      log.warn({ err }, 'container record could not be encoded');
      return;
    }
    const suffix = options.containerKey?.(record);
    const node = options.node;
    queue.push({
      topic: options.topics.containers,
      key: suffix === undefined ? node : `${node}/${suffix}`,
      value,
      events: 0,
      capturedAtMs: Date.now(),
      sequence: -1n,
    });
    loop.notify();
  };
}

/** What the source and the samplers call while the collector runs: decode, count, batch. */
export function sourceInputs<E extends KtrailEvent | RawRecord, R>(
  options: CollectorOptions<E, R>,
  counters: CollectorCounters,
  batcher: Batcher<E>,
  warnDrop: ReturnType<typeof createThrottledWarn>,
  running: () => boolean,
) {
  const { typeOf, kindOfType } = options.eventBatch;
  // Records are counted per kernel type in an array and added to the per-kind Map once per
  // batch: a Map update per event costs ~7% of the main thread's JavaScript at 10k events/s.
  const typeCounts = new Uint32Array(1 << 16); // typeOf is a u16
  const typesSeen: number[] = [];
  // Hot path: one call per source batch.
  function accept(events: E[]): void {
    if (!running()) return;
    counters.captured += events.length;
    const byKind = counters.capturedByKind;
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as E;
      if (typeof e !== 'number') {
        const kind = (e as KtrailEvent).kind;
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
      } else if (typeOf === undefined) byKind.set('raw', (byKind.get('raw') ?? 0) + 1);
      else {
        const type = typeOf(e);
        const n = typeCounts[type] as number;
        if (n === 0) typesSeen.push(type);
        typeCounts[type] = n + 1;
      }
    }
    for (const type of typesSeen) {
      const kind = kindOfType?.(type) ?? 'raw';
      byKind.set(kind, (byKind.get(kind) ?? 0) + (typeCounts[type] as number));
      typeCounts[type] = 0;
    }
    typesSeen.length = 0;
    batcher.addAll(events);
  }
  function onSourceBatch(buf: Buffer, records: number): void {
    if (!running()) return;
    let result: DecodeResult<E>;
    try {
      result = options.decode(buf, records);
    } catch (err) {
      // A decoder that throws on a whole batch: count its records as malformed, go on.
      result = { events: [], malformed: records };
      warnDrop('decoder', { err, records }, 'decoder rejected a whole batch');
    }
    countUndecoded(counters, result.malformed, result.unattributed ?? 0);
    accept(result.events);
  }
  return { accept, onSourceBatch };
}

/** Stops the source, the samplers and the container feed; one that fails is logged. */
export async function stopInputs<E extends KtrailEvent | RawRecord, R>(
  options: CollectorOptions<E, R>,
  log: Logger,
): Promise<void> {
  const stops: Array<void | Promise<void>> = [options.source.stop()];
  for (const s of options.samplers ?? []) stops.push(s.stop());
  if (options.containers) stops.push(options.containers.stop());
  const results = await Promise.allSettled(stops);
  for (const r of results)
    if (r.status === 'rejected') log.warn({ err: r.reason }, 'input did not stop cleanly');
}

/**
 * The stop after the inputs: send what is held until the deadline, count whatever is still
 * held as dropped (shutdown_deadline), and only then write the final stats record, so it
 * carries what the drain delivered and what the deadline dropped; what Kafka does not take
 * of it is kept on disk for the next start.
 */
export async function drainAndClose(
  p: {
    stats: StatsReporter;
    delivery: Delivery;
    queues: Queues;
    pending: PendingView;
    sink: MessageSink;
    log: Logger;
  },
  deadline: number,
): Promise<void> {
  const { delivery, queues, stats } = p;
  const drained = await delivery.drain(deadline - Date.now());
  if (!drained) {
    p.log.warn(
      { events: queues.eventsQueue.events, messages: p.pending.bufferedMessages() },
      'shutdown deadline reached; dropping what Kafka has not acknowledged',
    );
    queues.eventsQueue.dropAll('shutdown_deadline');
    queues.containersQueue.dropAll('shutdown_deadline');
  }
  stats.emit();
  await delivery.drain(delivery.healthy ? FINAL_STATS_MS : FINAL_STATS_FAILING_MS);
  // Don't wait on a request stuck against a dead broker past the deadline.
  await Promise.race([delivery.stop(), new Promise((r) => setTimeout(r, 1_000).unref())]);
  stats.keepUnsent();
  await Promise.race([p.sink.close(), new Promise((r) => setTimeout(r, 1_000).unref())]);
}

/** The three bounded send queues; metadata and stats have their own bounds, so a long outage can't crowd out events. */
export function createQueues(settings: CollectorSettings, counters: CollectorCounters) {
  const otherDrop = (q: string) => () => bump(counters.droppedOtherMessages, q);
  return {
    eventsQueue: createSendQueue({
      name: 'events',
      maxBytes: settings.bufferMaxBytes,
      maxMessages: settings.bufferMaxMessages,
      onDrop: (m, reason) => {
        counters.dropped[reason] += m.events;
        if (m.maybeWritten) counters.droppedUnconfirmed += m.events;
      },
    }),
    containersQueue: createSendQueue({
      name: 'containers',
      maxBytes: settings.containersQueueBytes ?? 32 * 1024 * 1024,
      maxMessages: settings.containersQueueMessages ?? 100_000,
      onDrop: otherDrop('containers'),
    }),
    statsQueue: createSendQueue({
      name: 'stats',
      maxBytes: settings.statsQueueBytes ?? 8 * 1024 * 1024,
      maxMessages: settings.statsQueueMessages ?? 10_000,
      onDrop: otherDrop('stats'),
    }),
  };
}

/** The per-message limit; a batch must leave room below it for the EventBatch envelope. */
export function checkedMessageLimit(settings: CollectorSettings): number {
  const maxMessageBytes = settings.maxMessageBytes ?? 1_000_000;
  // The envelope (node, boot id, version, numbers) is a few hundred bytes at most.
  if (settings.batchMaxBytes > maxMessageBytes - ENVELOPE_HEADROOM)
    throw new ConfigError(
      `collector.batchMaxBytes (${settings.batchMaxBytes}) must leave ${ENVELOPE_HEADROOM} bytes below the ` +
        `per-message limit (${maxMessageBytes}) for the batch envelope`,
    );
  return maxMessageBytes;
}

/** Records the decoder could not use are captured and dropped, each under its own reason. */
function countUndecoded(counters: CollectorCounters, malformed: number, unattributed: number): void {
  if (malformed > 0) {
    counters.captured += malformed;
    counters.dropped.malformed_record += malformed;
    bump(counters.capturedByKind, 'malformed', malformed);
  }
  if (unattributed > 0) {
    counters.captured += unattributed;
    counters.dropped.unattributed += unattributed;
    bump(counters.capturedByKind, 'unattributed', unattributed);
  }
}
