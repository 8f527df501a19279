// Unit tests of the collector's own stages: batcher bounds, the bounded send queue's drop
// policy and accounting, the encoder's sequence numbers and halving, the boot clock. Kafka
// itself is exercised only in test/integration/collector-*.test.ts against a real broker.
import { describe, expect, it } from 'vitest';
import { createBatcher } from '../../collector/src/batcher.js';
import {
  createBootClock,
  fixedBootClock,
  measureBootMinusMonotonicNs,
  readBootId,
} from '../../collector/src/clock.js';
import { nodePartitioner } from '../../collector/src/kafka-sink.js';
import { createBatchEncoder, type EventBatchEnvelope } from '../../collector/src/pipeline/encoder.js';
import {
  createSendQueue,
  type DropReason,
  type QueuedMessage,
} from '../../collector/src/pipeline/send-queue.js';
import { createCounters, snapshot, totalDropped } from '../../collector/src/stats.js';

const msg = (bytes: number, events: number, capturedAtMs = Date.now()): QueuedMessage => ({
  topic: 't',
  key: 'n',
  value: Buffer.alloc(bytes),
  events,
  capturedAtMs,
  sequence: -1n,
});

describe('batcher', () => {
  it('closes a batch at maxEvents and keeps order', () => {
    const out: number[][] = [];
    const b = createBatcher<number>(
      { maxEvents: 3, maxBytes: 1e9, maxDelayMs: 10_000 },
      () => 1,
      (e) => out.push(e),
    );
    b.addAll([1, 2, 3, 4, 5, 6, 7]);
    expect(out).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(b.pendingEvents).toBe(1);
    b.shutdown();
    expect(out.at(-1)).toEqual([7]);
    expect(b.pendingEvents).toBe(0);
  });

  it('closes before an event would overflow maxBytes; a lone big event goes alone', () => {
    const out: Array<[number[], number]> = [];
    const b = createBatcher<number>(
      { maxEvents: 100, maxBytes: 10, maxDelayMs: 10_000 },
      (n) => n,
      (e, bytes) => out.push([e, bytes]),
    );
    b.addAll([4, 4, 4, 30, 1]);
    b.flush();
    expect(out).toEqual([
      [[4, 4], 8],
      [[4], 4],
      [[30], 30],
      [[1], 1],
    ]);
  });

  it('flushes on the timer and the timer does not hold the process', async () => {
    const out: number[][] = [];
    const b = createBatcher<number>(
      { maxEvents: 100, maxBytes: 1e9, maxDelayMs: 30 },
      () => 1,
      (e) => out.push(e),
    );
    const t0 = Date.now();
    b.add(1);
    expect(b.openedAtMs).toBeGreaterThanOrEqual(t0);
    await new Promise((r) => setTimeout(r, 80));
    expect(out).toEqual([[1]]);
    expect(b.openedAtMs).toBeUndefined();
  });

  it('shutdown runs once and refuses later events', () => {
    let calls = 0;
    const b = createBatcher<number>(
      { maxEvents: 10, maxBytes: 1e9, maxDelayMs: 10 },
      () => 1,
      () => calls++,
    );
    b.add(1);
    b.shutdown();
    b.shutdown();
    expect(calls).toBe(1);
    expect(() => b.add(2)).toThrow(/shut down/);
  });

  it('rejects bad options with a clear error', () => {
    expect(() =>
      createBatcher(
        { maxEvents: 0, maxBytes: 1, maxDelayMs: 1 },
        () => 1,
        () => {},
      ),
    ).toThrow(/maxEvents/);
  });
});

describe('send queue', () => {
  function queue(maxBytes: number, maxMessages: number) {
    const drops: Array<[QueuedMessage, DropReason]> = [];
    const q = createSendQueue({
      name: 'events',
      maxBytes,
      maxMessages,
      onDrop: (m, r) => drops.push([m, r]),
    });
    return { q, drops };
  }

  it('drops the oldest queued messages past the message bound, counted', () => {
    const { q, drops } = queue(1e9, 3);
    const sent = [msg(10, 1), msg(10, 2), msg(10, 3), msg(10, 4)];
    for (const m of sent) q.push(m);
    expect(q.messages).toBe(3);
    expect(q.events).toBe(2 + 3 + 4);
    expect(drops).toEqual([[sent[0], 'buffer_full']]);
  });

  it('drops oldest past the byte bound but never a message in flight', () => {
    const { q, drops } = queue(100, 1000);
    const a = msg(40, 1);
    const b = msg(40, 1);
    q.push(a);
    q.push(b);
    expect(q.takeForSend(40, 10)).toEqual([a]);
    q.push(msg(40, 1)); // over 100 bytes: b (oldest queued) goes, a is in flight
    expect(drops.map(([m]) => m)).toEqual([b]);
    expect(q.bytes).toBe(80);
    // Only the in-flight one is left to drop: the newcomer itself is refused.
    const huge = msg(70, 5);
    q.push(huge);
    expect(drops.at(-1)).toEqual([huge, 'buffer_full']);
  });

  it('release puts in-flight messages back at the head in order; ack forgets them', () => {
    const { q } = queue(1e9, 100);
    const ms = [msg(1, 1), msg(1, 1), msg(1, 1)];
    for (const m of ms) q.push(m);
    expect(q.takeForSend(2, 10)).toEqual([ms[0], ms[1]]);
    expect(() => q.takeForSend(1, 1)).toThrow(/in flight/);
    q.release();
    expect(q.takeForSend(1e9, 10)).toEqual(ms);
    expect(q.ack()).toEqual(ms);
    expect(q.messages).toBe(0);
    expect(q.events).toBe(0);
    expect(q.bytes).toBe(0);
  });

  it('reports the oldest capture time, in flight included', () => {
    const { q } = queue(1e9, 100);
    q.push(msg(1, 1, 1000));
    q.push(msg(1, 1, 2000));
    q.takeForSend(1, 1);
    expect(q.oldestCapturedAtMs).toBe(1000);
    q.ack();
    expect(q.oldestCapturedAtMs).toBe(2000);
  });

  it('keeps exact totals under a long random run (drops + acks + held = pushed)', () => {
    const { q, drops } = queue(5_000, 50);
    let pushed = 0;
    let acked = 0;
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 4_000; i++) {
      const r = rnd();
      if (r < 0.6) {
        const events = 1 + Math.floor(rnd() * 20);
        q.push(msg(1 + Math.floor(rnd() * 300), events));
        pushed += events;
      } else if (q.inFlight === 0 && q.messages > 0) q.takeForSend(1_000, 10);
      else if (q.inFlight > 0) {
        if (rnd() < 0.5) for (const m of q.ack()) acked += m.events;
        else q.release();
      }
      expect(q.bytes).toBeLessThanOrEqual(5_000);
      expect(q.messages).toBeLessThanOrEqual(50);
    }
    const dropped = drops.reduce((s, [m]) => s + m.events, 0);
    expect(drops.length).toBeGreaterThan(0);
    expect(acked + dropped + q.events).toBe(pushed);
  });
});

describe('batch encoder', () => {
  const clock = fixedBootClock('boot-1', 1_700_000_000_000_000_000n);
  // A stand-in codec: JSON of the envelope, throws on an event marked bad. The real Avro
  // codec is used by the integration tests.
  const encode = (b: EventBatchEnvelope<{ kind: string; size: number }>): Buffer => {
    if (b.events.some((e) => e.kind === 'bad')) throw new Error('cannot encode');
    const body = b.events.reduce((s, e) => s + e.size, 0);
    return Buffer.alloc(16 + body, 1);
  };

  function setup(maxMessageBytes: number) {
    const counters = createCounters();
    const queued: QueuedMessage[] = [];
    const drops: Array<[number, DropReason]> = [];
    const q = createSendQueue({ name: 'events', maxBytes: 1e9, maxMessages: 1e6, onDrop: () => {} });
    const origPush = q.push;
    q.push = (m) => {
      queued.push(m);
      origPush(m);
    };
    const enc = createBatchEncoder({
      node: 'n1',
      collectorVersion: 'test',
      topic: 'ev',
      clock,
      encode,
      queue: q,
      counters,
      maxMessageBytes,
      onDrop: (n, r) => drops.push([n, r]),
    });
    return { enc, queued, drops, counters };
  }

  it('numbers queued messages 0,1,2... and splits what is too big', () => {
    const { enc, queued, drops, counters } = setup(100);
    const ev = (size: number) => ({ kind: 'proc_exec', size });
    expect(enc.encodeAndQueue([ev(10), ev(10)], 1)).toBe(1);
    // 8 x 20 = 160 bytes > 100: halves of 4 (96 bytes each) fit.
    expect(
      enc.encodeAndQueue(
        Array.from({ length: 8 }, () => ev(20)),
        2,
      ),
    ).toBe(2);
    expect(queued.map((m) => m.sequence)).toEqual([0n, 1n, 2n]);
    expect(queued.map((m) => m.events)).toEqual([2, 4, 4]);
    expect(counters.sequence).toBe(2n);
    expect(drops).toEqual([]);
  });

  it('drops a lone oversized event and an unencodable event, keeping their neighbours', () => {
    const { enc, queued, drops } = setup(100);
    const good = { kind: 'tcp_close', size: 5 };
    const sent = enc.encodeAndQueue(
      [good, { kind: 'bad', size: 1 }, good, { kind: 'x', size: 500 }, good],
      0,
    );
    expect(drops.sort()).toEqual([
      [1, 'encode_error'],
      [1, 'oversized_event'],
    ]);
    expect(queued.reduce((s, m) => s + m.events, 0)).toBe(3);
    expect(sent).toBe(queued.length);
    // No sequence number is burnt by a dropped event: they stay contiguous.
    expect(queued.map((m) => m.sequence)).toEqual(queued.map((_, i) => BigInt(i)));
  });
});

describe('stats invariant', () => {
  it('captured = delivered + dropped + pending, and unaccounted shows a mismatch', () => {
    const c = createCounters();
    c.captured = 100;
    c.delivered = 60;
    c.dropped.buffer_full = 25;
    c.dropped.malformed_record = 5;
    const view = (pending: number) => ({
      pendingEvents: () => pending,
      bufferedMessages: () => 0,
      bufferedBytes: () => 0,
      oldestCapturedAtMs: () => undefined,
    });
    expect(totalDropped(c)).toBe(30);
    expect(snapshot('n', 'b', c, view(10)).unaccounted).toBe(0);
    expect(snapshot('n', 'b', c, view(9)).unaccounted).toBe(1);
  });
});

describe('boot clock', () => {
  it('reads the boot id and tracks CLOCK_BOOTTIME within a few ms of /proc/uptime', async () => {
    const { readFileSync } = await import('node:fs');
    expect(readBootId()).toMatch(/^[0-9a-f-]{36}$/);
    const clock = createBootClock();
    const uptimeNs = BigInt(Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e9));
    const diff = clock.bootNowNs() - uptimeNs;
    // /proc/uptime prints 10 ms steps: our clock is ahead by less than one step.
    expect(diff >= -1_000_000n && diff <= 12_000_000n).toBe(true);
    // wall - boot = the epoch time of boot: in the past, after 2020.
    const bootEpochMs = Number(clock.wallMinusBootNs() / 1_000_000n);
    expect(bootEpochMs).toBeLessThan(Date.now());
    expect(bootEpochMs).toBeGreaterThan(Date.parse('2020-01-01'));
    // The tick-edge calibration is stable between two measurements (a few ms even on a
    // loaded machine; ~10 µs when the process is not descheduled).
    const a = measureBootMinusMonotonicNs();
    const b = measureBootMinusMonotonicNs();
    expect(Math.abs(Number(a - b))).toBeLessThan(5_000_000);
  });
});

describe('node partitioner', () => {
  it('sends node and node/cgroup keys to the same partition', () => {
    const partition = nodePartitioner();
    const partitionMetadata = Array.from({ length: 6 }, (_, i) => ({
      partitionId: i,
      leader: 1,
      partitionErrorCode: 0,
      replicas: [1],
      isr: [1],
    }));
    for (const node of ['node-a', 'ip-10-0-0-1.ec2.internal', 'worker-7']) {
      const p = partition({ topic: 'ev', partitionMetadata, message: { key: node, value: 'x' } });
      const q = partition({ topic: 'ct', partitionMetadata, message: { key: `${node}/123456`, value: 'x' } });
      expect(q).toBe(p);
    }
    const spread = new Set(
      Array.from({ length: 50 }, (_, i) =>
        partition({ topic: 'ev', partitionMetadata, message: { key: `n${i}`, value: 'x' } }),
      ),
    );
    expect(spread.size).toBeGreaterThan(1);
  });
});

describe('sequence store', () => {
  it('continues the per-boot sequence after a restart; a new boot id starts at 0', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openSequenceStore } = await import('../../collector/src/sequence-store.js');
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-seq-'));
    try {
      const first = openSequenceStore('node-1', 'boot-a', dir);
      expect(first.first).toBe(0n);
      first.save(42n);
      expect(openSequenceStore('node-1', 'boot-a', dir).first).toBe(42n); // the restarted process
      expect(openSequenceStore('node-1', 'boot-b', dir).first).toBe(0n); // after a reboot
      expect(openSequenceStore('node-2', 'boot-a', dir).first).toBe(0n); // another node name
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
