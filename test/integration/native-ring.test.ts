// The addon's ring-buffer reading against the real kernel ring: records of two sizes wrapping
// around the end of a one-page ring, discarded records skipped, every record once and in
// order, and the kernel's wakeups (not the poll timeout) reaching the reader.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect } from 'vitest';
import {
  type CaptureSettings,
  fixtureDir,
  type KernelCapture,
  missingKernelCapture,
  openCapture,
  recordOffsets,
} from '../../collector/src/kernel/addon.js';
import { itReal } from '../support/real.js';

const FIXTURE = join(fixtureDir, 'fixture.bpf.o');
const BURST = join(fixtureDir, 'burst_storm');
const TYPE_RING = 1003;
const SLOT_RING = 3;
const RING_BYTES = 4096; // one page: the smallest ring, so records wrap every few dozen
const run = promisify(execFile);

const missing = missingKernelCapture();
const real = itReal(missing);

interface RingRecord {
  type: number;
  size: number;
  seq: bigint;
  words: bigint[];
}

function ringSettings(extra: Partial<CaptureSettings> = {}): CaptureSettings {
  return {
    objects: [FIXTURE],
    programs: ['fixture_ring'],
    ringBufferBytes: RING_BYTES,
    batchMaxBytes: 8192,
    batchMaxMs: 5,
    ...extra,
  };
}

function openRing(extra: Partial<CaptureSettings> = {}) {
  const records: RingRecord[] = [];
  const capture: KernelCapture = openCapture(ringSettings(extra), (buf) => {
    for (const off of recordOffsets(buf)) {
      const size = buf.readUInt32LE(off + 4);
      const words: bigint[] = [];
      for (let w = off + 40; w + 8 <= off + size; w += 8) words.push(buf.readBigUInt64LE(w));
      records.push({ type: buf.readUInt16LE(off), size, seq: buf.readBigUInt64LE(off + 16), words });
    }
  });
  const progId = capture.counters().programs.find((p) => p.name === 'fixture_ring')?.id;
  if (progId === undefined) throw new Error('fixture_ring did not load');
  return { capture, records, progId };
}

/** Runs fixture_ring `count` times in chunks that each wait for the reader to drain the ring. */
async function generate(progId: number, count: number, chunk: number): Promise<{ seconds: number }> {
  const { stdout } = await run(BURST, [String(progId), String(count), '0', String(chunk), 'drained']);
  return JSON.parse(stdout) as { seconds: number };
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

/** fixture_ring's record for `seq`: every third one long (104 bytes), its words seq * 8 + i. */
const sizeOf = (seq: number) => (seq % 3 === 0 ? 104 : 40);

describe('ring buffer reader (real kernel)', () => {
  real('delivers every record in order across wrap-around, skipping discarded ones', async () => {
    const n = 20_000;
    const discardEvery = 7;
    const { capture, records, progId } = openRing({ cfg: { discard_every: discardEvery } });
    try {
      // 24 records of at most 112 ring bytes fit the 4 KiB ring: nothing may be dropped.
      await generate(progId, n, 24);
      const expected: number[] = [];
      for (let s = 0; s < n; s++) if (s % discardEvery !== discardEvery - 1) expected.push(s);
      await until(() => records.length >= expected.length);
      await new Promise((r) => setTimeout(r, 50)); // anything extra would show up here
      const c = capture.counters();
      expect(c.kernelDrops[SLOT_RING]).toBe(0);
      expect(c.lostRecords).toBe(0);
      expect(c.malformedRecords).toBe(0);
      expect(records.map((r) => Number(r.seq))).toEqual(expected);
      expect(records.every((r) => r.type === TYPE_RING && r.size === sizeOf(Number(r.seq)))).toBe(true);
      const long = records.filter((r) => r.size === 104);
      expect(long.length).toBeGreaterThan(0);
      for (const r of long)
        expect(r.words).toEqual(Array.from({ length: 8 }, (_, i) => r.seq * 8n + BigInt(i)));
      // Where each record sat in the ring (discarded ones take their space too): many crossed
      // its end, so they were read through the second mapping of the data pages.
      let pos = 0;
      let crossing = 0;
      for (let s = 0; s < n; s++) {
        const bytes = (sizeOf(s) + 8 + 7) & ~7;
        if ((pos % RING_BYTES) + bytes > RING_BYTES && s % discardEvery !== discardEvery - 1) crossing++;
        pos += bytes;
      }
      expect(crossing).toBeGreaterThan(100);
    } finally {
      capture.close();
    }
  });

  real('is woken by the kernel, not by its poll timeout', async () => {
    // With batches of up to a minute the thread's poll times out only every 50 ms; 200 chunks
    // of one record, each waiting for the reader, would take 10 s without the kernel's wakeups.
    const { capture, records, progId } = openRing({ batchMaxMs: 60_000, drainIntervalUs: 0 });
    try {
      const g = await generate(progId, 200, 1);
      expect(g.seconds).toBeLessThan(5);
      expect(capture.counters().kernelDrops[SLOT_RING]).toBe(0);
    } finally {
      capture.close();
    }
    await until(() => records.length >= 200); // close() hands over the last batch
    expect(records.length).toBe(200);
  });
});
