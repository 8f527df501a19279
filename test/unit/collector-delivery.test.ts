// The delivery loop's retry rules, with a sink whose answers the test decides: a request
// that failed goes again exactly as it was (what the idempotent producer needs to recognise
// a batch it wrote although the answer was lost), topics the sink reports acknowledged are
// not sent again, and a message the broker rejects is found and dropped, counted. The real
// broker path (a broker killed under load) is test/integration/kafka-failover.test.ts.
import { describe, expect, it } from 'vitest';
import type { MessageSink, SinkResult } from '../../collector/src/kafka-sink.js';
import { createDelivery } from '../../collector/src/pipeline/delivery.js';
import {
  createSendQueue,
  type DropReason,
  type QueuedMessage,
  type SendQueue,
} from '../../collector/src/pipeline/send-queue.js';

function message(topic: string, n: number): QueuedMessage {
  return {
    topic,
    key: 'node',
    value: Buffer.from(`${topic}-${n}`),
    events: 1,
    capturedAtMs: 0,
    sequence: BigInt(n),
  };
}

const names = (ms: readonly QueuedMessage[]) => ms.map((m) => m.value.toString());

/** A sink that answers from `answers` in order (then 'success') and records every request. */
function scriptedSink(answers: SinkResult[], onSend?: (call: number) => void) {
  const requests: string[][] = [];
  const sink: MessageSink = {
    async send(messages) {
      requests.push(names(messages));
      onSend?.(requests.length);
      return answers.shift() ?? { status: 'success' };
    },
    async close() {},
  };
  return { sink, requests };
}

function setup(sink: MessageSink, topics: string[], resendUnchangedMs?: number) {
  const drops: Array<[string, DropReason]> = [];
  const delivered: string[] = [];
  const queues = topics.map((name) =>
    createSendQueue({
      name,
      maxBytes: 1 << 20,
      maxMessages: 100,
      onDrop: (m, reason) => drops.push([m.value.toString(), reason]),
    }),
  );
  const delivery = createDelivery({
    queues,
    sink,
    onDelivered: (_q, ms) => delivered.push(...names(ms)),
    ...(resendUnchangedMs === undefined ? {} : { resendUnchangedMs }),
  });
  const queue = (topic: string) => queues[topics.indexOf(topic)] as SendQueue;
  return { delivery, queue, drops, delivered };
}

describe('delivery loop', () => {
  it('sends a failed request again unchanged, though more messages were queued meanwhile', async () => {
    const late: QueuedMessage[] = [message('events', 3), message('events', 4)];
    let push: (() => void) | undefined;
    const { sink, requests } = scriptedSink(
      [{ status: 'retryable', error: new Error('broker gone'), maybeWritten: true }],
      (call) => {
        if (call === 1) push?.();
      },
    );
    const { delivery, queue, delivered, drops } = setup(sink, ['events']);
    push = () => {
      for (const m of late) queue('events').push(m);
    };
    queue('events').push(message('events', 1));
    queue('events').push(message('events', 2));
    delivery.start();
    expect(await delivery.drain(5_000)).toBe(true);
    await delivery.stop();
    expect(requests).toEqual([
      ['events-1', 'events-2'],
      ['events-1', 'events-2'],
      ['events-3', 'events-4'],
    ]);
    expect(delivered).toEqual(['events-1', 'events-2', 'events-3', 'events-4']);
    expect(drops).toEqual([]);
  });

  it('does not send again the topics a failed request got acknowledged', async () => {
    const { sink, requests } = scriptedSink([
      { status: 'retryable', error: new Error('events leader gone'), acknowledgedTopics: new Set(['stats']) },
    ]);
    const { delivery, queue, delivered } = setup(sink, ['events', 'stats']);
    queue('events').push(message('events', 1));
    queue('stats').push(message('stats', 1));
    delivery.start();
    expect(await delivery.drain(5_000)).toBe(true);
    await delivery.stop();
    expect(requests).toEqual([['events-1', 'stats-1'], ['events-1']]);
    expect(delivered.sort()).toEqual(['events-1', 'stats-1']);
  });

  it('past resendUnchangedMs, gives the request back to its queue and renews the producer', async () => {
    const down: SinkResult = { status: 'retryable', error: new Error('all brokers down') };
    const { sink, requests } = scriptedSink([down, down, down, down]);
    let renewed = 0;
    sink.renewProducer = async () => {
      renewed++;
    };
    const { delivery, queue, delivered } = setup(sink, ['events'], 250);
    queue('events').push(message('events', 1));
    delivery.start();
    // Failures at ~0, ~50, ~150 ms go unchanged; then (~350 ms) back to the queue.
    await new Promise((r) => setTimeout(r, 450));
    queue('events').push(message('events', 2));
    expect(await delivery.drain(10_000)).toBe(true);
    await delivery.stop();
    expect(renewed).toBeGreaterThanOrEqual(1);
    // Once given back, the next request is made afresh: the newer message joins it.
    expect(requests.at(-1)).toEqual(['events-1', 'events-2']);
    expect(delivered).toEqual(['events-1', 'events-2']);
  });

  it('finds a message the broker rejects, drops it counted and delivers the rest once', async () => {
    const rejected: SinkResult = { status: 'failure', error: new Error('MESSAGE_TOO_LARGE') };
    // Three together are rejected; then each head message goes alone, the second rejected.
    const { sink, requests } = scriptedSink([rejected, { status: 'success' }, rejected, rejected]);
    const { delivery, queue, delivered, drops } = setup(sink, ['events']);
    for (const n of [1, 2, 3]) queue('events').push(message('events', n));
    delivery.start();
    expect(await delivery.drain(5_000)).toBe(true);
    await delivery.stop();
    expect(requests).toEqual([
      ['events-1', 'events-2', 'events-3'],
      ['events-1'],
      ['events-2', 'events-3'],
      ['events-2'],
      ['events-3'],
    ]);
    expect(delivered).toEqual(['events-1', 'events-3']);
    expect(drops).toEqual([['events-2', 'kafka_rejected']]);
  });
});
