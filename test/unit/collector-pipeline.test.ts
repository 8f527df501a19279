// Unit tests of the collector's own stages: batcher bounds, the bounded send queue's drop
// policy and accounting, the encoder's sequence numbers and size limit, the boot clock. Kafka
// itself is exercised only in test/integration/collector-*.test.ts against a real broker.
import { describe, expect, it } from 'vitest';
import { type BatcherOptions, createBatcher, type RejectReason } from '../../collector/src/batcher.js';
import {
  createBootClock,
  fixedBootClock,
  measureBootMinusMonotonicNs,
  readBootId,
} from '../../collector/src/clock.js';
import { nodePartitioner } from '../../collector/src/kafka-sink.js';
import { createBatchEncoder, type FrameEventBatch } from '../../collector/src/pipeline/encoder.js';
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

// Items for the batcher tests: n is written as n bytes of value n; a negative n is invalid.
const writeN = (n: number, buf: Buffer, pos: number): number => {
  if (n < 0) throw new Error(`cannot encode ${n}`);
  if (pos + n > buf.length) return buf.length - (pos + n);
  buf.fill(n, pos, pos + n);
  return pos + n;
};
// A batcher of writeN items whose closed batches are kept as item lists, decoded back from
// their bytes (which also copies them out of the reused buffer), and whose rejects are kept.
function batcherOf(options: BatcherOptions) {
  const batches: number[][] = [];
  const rejects: RejectReason[] = [];
  const onBatch = (items: Buffer, count: number) => {
    const out: number[] = [];
    for (let at = 0; at < items.length; at += items[at] as number) out.push(items[at] as number);
    expect(out).toHaveLength(count);
    batches.push(out);
  };
  const batcher = createBatcher<number>(options, writeN, onBatch, (r) => rejects.push(r));
  return { batcher, batches, rejects };
}

describe('batcher', () => {
  it('closes a batch at maxEvents and keeps order', () => {
    const c = batcherOf({ maxEvents: 3, maxBytes: 1e6, maxDelayMs: 10_000 });
    const b = c.batcher;
    b.addAll([1, 2, 3, 4, 5, 6, 7]);
    expect(c.batches).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(b.pendingEvents).toBe(1);
    b.shutdown();
    expect(c.batches.at(-1)).toEqual([7]);
    expect(b.pendingEvents).toBe(0);
  });

  it('closes before an item would overflow maxBytes (exact bytes); a lone oversized item is rejected', () => {
    const c = batcherOf({ maxEvents: 100, maxBytes: 10, maxDelayMs: 10_000 });
    const b = c.batcher;
    b.addAll([4, 4, 4, 30, 1, 10, 2]);
    b.flush();
    // 4+4 = 8 and 4 more would be 12 > 10; 30 never fits; 10 fills a batch on its own.
    expect(c.batches).toEqual([[4, 4], [4, 1], [10], [2]]);
    expect(c.rejects).toEqual(['oversized_event']);
  });

  it('grows its buffer past the first 64 KiB without losing what it holds', () => {
    const batches: Buffer[] = [];
    const b = createBatcher<number>(
      { maxEvents: 1_000, maxBytes: 1_000_000, maxDelayMs: 10_000 },
      (n, buf, pos) => {
        // 40,000-byte items whose bytes all say which item they are.
        if (pos + 40_000 > buf.length) return buf.length - (pos + 40_000);
        buf.fill(n, pos, pos + 40_000);
        return pos + 40_000;
      },
      (items) => batches.push(Buffer.from(items)),
      () => {},
    );
    b.addAll([1, 2, 3, 4, 5]);
    b.flush();
    expect(batches).toHaveLength(1);
    const got = batches[0] as Buffer;
    expect(got.length).toBe(200_000);
    for (let i = 0; i < 5; i++)
      expect(got.subarray(i * 40_000, (i + 1) * 40_000).every((v) => v === i + 1)).toBe(true);
  });

  it('rejects an item the codec refuses, keeping its neighbours', () => {
    const c = batcherOf({ maxEvents: 100, maxBytes: 100, maxDelayMs: 10_000 });
    const b = c.batcher;
    b.addAll([1, -1, 2, 3]);
    b.flush();
    expect(c.batches).toEqual([[1, 2, 3]]);
    expect(c.rejects).toEqual(['encode_error']);
  });

  it('flushes on the timer and the timer does not hold the process', async () => {
    const c = batcherOf({ maxEvents: 100, maxBytes: 1e6, maxDelayMs: 30 });
    const b = c.batcher;
    const t0 = Date.now();
    b.add(1);
    expect(b.openedAtMs).toBeGreaterThanOrEqual(t0);
    await new Promise((r) => setTimeout(r, 80));
    expect(c.batches).toEqual([[1]]);
    expect(b.openedAtMs).toBeUndefined();
  });

  it('shutdown runs once and refuses later events', () => {
    let calls = 0;
    const b = createBatcher<number>(
      { maxEvents: 10, maxBytes: 1e6, maxDelayMs: 10 },
      writeN,
      () => calls++,
      () => {},
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
        writeN,
        () => {},
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
  // A stand-in framer: 16 envelope bytes + the items; throws for node "bad". The real Avro
  // framer is tested in avro-codec.test.ts and used by the integration tests.
  const frame: FrameEventBatch = (env, items) => {
    if (env.node === 'bad') throw new Error('cannot encode');
    return Buffer.concat([Buffer.alloc(16, 1), items]);
  };

  function setup(maxMessageBytes: number, node = 'n1') {
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
      node,
      collectorVersion: 'test',
      topic: 'ev',
      clock,
      frame,
      queue: q,
      counters,
      maxMessageBytes,
      onDrop: (n, r) => drops.push([n, r]),
    });
    return { enc, queued, drops, counters };
  }

  it('numbers queued messages 0,1,2...; a message over the limit is dropped without a number', () => {
    const { enc, queued, drops, counters } = setup(100);
    expect(enc.encodeAndQueue(Buffer.alloc(20), 2, 1)).toBe(true);
    expect(enc.encodeAndQueue(Buffer.alloc(90), 9, 2)).toBe(false); // 106 bytes > 100
    expect(enc.encodeAndQueue(Buffer.alloc(40), 4, 3)).toBe(true);
    expect(enc.encodeAndQueue(Buffer.alloc(0), 0, 4)).toBe(false); // nothing to send
    expect(queued.map((m) => m.sequence)).toEqual([0n, 1n]);
    expect(queued.map((m) => m.events)).toEqual([2, 4]);
    expect(queued.map((m) => m.value.length)).toEqual([36, 56]);
    expect(counters.sequence).toBe(1n);
    expect(enc.nextSequence).toBe(2n);
    expect(drops).toEqual([[9, 'oversized_event']]);
  });

  it('counts an envelope the codec rejects as encode_error for all its events', () => {
    const { enc, queued, drops } = setup(1_000, 'bad');
    expect(enc.encodeAndQueue(Buffer.alloc(10), 3, 0)).toBe(false);
    expect(queued).toEqual([]);
    expect(drops).toEqual([[3, 'encode_error']]);
    expect(enc.nextSequence).toBe(0n);
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

  it('replaces the number whole: a write that fails leaves the last one', async () => {
    const { mkdirSync, mkdtempSync, readdirSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openSequenceStore, stateFile } = await import('../../collector/src/sequence-store.js');
    const dir = mkdtempSync(join(tmpdir(), 'ktrail-seq-'));
    try {
      const store = openSequenceStore('node-1', 'boot-a', dir);
      store.save(1_000_000n);
      // The next write fails (its temp name is taken by a directory), like a full disk would.
      mkdirSync(`${stateFile(dir, 'sequence', 'node-1', 'boot-a')}.tmp-${process.pid}`);
      store.save(1_000_001n);
      expect(openSequenceStore('node-1', 'boot-a', dir).first).toBe(1_000_000n);
      expect(readdirSync(dir).filter((f) => !f.includes('.tmp-'))).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
