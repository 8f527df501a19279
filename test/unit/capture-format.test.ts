// Capture file format (collector/src/kernel/capture.ts) and the replay source: golden bytes
// for the header and a frame, round trips through real files, damaged files, pacing, looping.
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { recordOffsets } from '../../collector/src/kernel/addon.js';
import {
  createCaptureWriter,
  decodeCaptureHeader,
  encodeCaptureHeader,
  encodeFrameHeader,
  openCaptureReader,
  parseCapture,
  readCaptureHeader,
} from '../../collector/src/kernel/capture.js';
import { createReplaySource } from '../../collector/src/kernel/replay-source.js';
import { PoisonError } from '../../common/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ktrail-capture-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const header = {
  startWallNs: 1_700_000_000_123_456_789n,
  wallMinusBootNs: 1_699_999_000_000_000_000n,
  bootId: 'b0d1e2f3',
  host: 'node-a',
};

// "KTCAP", version 2, 42 header bytes, start ns, wall-boot ns, bootId (len 8), host (len 6).
const GOLDEN_HEADER =
  '4b54434150' +
  '02' +
  '2a00' +
  '15cd853dfe9c9717' +
  '00f08461159c9717' +
  '0800' +
  '6230643165326633' +
  '0600' +
  '6e6f64652d61';
// One 40-byte fixture record: type 1000, size 40, ts 123456789, cgroup 4242, pid/tgid 7, tag 42.
const GOLDEN_RECORD =
  'e803' +
  '0000' +
  '28000000' +
  '15cd5b0700000000' +
  '9210000000000000' +
  '07000000' +
  '07000000' +
  '2a00000000000000';
// payload 40 bytes, 1 record, capture ns 1.7e18+2e8, crc32(first 16 bytes, payload), reserved 0.
const GOLDEN_FRAME = '28000000' + '01000000' + '00c21542fe9c9717' + '9864213d' + '00000000';
// The same in version 1, whose crc32 covered the payload only (0x97dcb5fc): still read.
const GOLDEN_V1 = `4b5443415001${GOLDEN_HEADER.slice(12)}${'28000000' + '01000000' + '00c21542fe9c9717' + 'fcb5dc97' + '00000000'}`;

/** n fixture-shaped records (40 bytes each) in one batch, tagged with `seed`. */
function batch(n: number, seed: number): Buffer {
  const buf = Buffer.alloc(40 * n);
  for (let i = 0; i < n; i++) {
    const o = i * 40;
    buf.writeUInt16LE(1000, o);
    buf.writeUInt32LE(40, o + 4);
    buf.writeBigUInt64LE(BigInt(seed * 1000 + i), o + 8);
    buf.writeUInt32LE(seed, o + 28);
  }
  return buf;
}

/** Where the second batch's payload starts in twoBatches' file: header, frame, 2 records, frame. */
const SECOND_PAYLOAD = 42 + 24 + 80 + 24;

/** A capture of two batches, of 2 and `second` records. */
async function twoBatches(name: string, second: number): Promise<string> {
  const path = join(dir, name);
  const w = createCaptureWriter(path, header);
  w.write(batch(2, 1), 2);
  w.write(batch(second, 2), second);
  await w.close();
  return path;
}

describe('capture format', () => {
  it('encodes the file header and a frame exactly as the golden bytes', () => {
    expect(encodeCaptureHeader(header).toString('hex')).toBe(GOLDEN_HEADER);
    const record = Buffer.from(GOLDEN_RECORD, 'hex');
    expect(encodeFrameHeader(record, 1, 1_700_000_000_200_000_000n).toString('hex')).toBe(GOLDEN_FRAME);
  });

  it('decodes the golden bytes back', () => {
    const file = Buffer.from(GOLDEN_HEADER + GOLDEN_FRAME + GOLDEN_RECORD, 'hex');
    const parsed = parseCapture(file);
    expect(parsed.header).toEqual({ version: 2, ...header });
    expect(parsed.truncated).toBe(false);
    expect(parsed.batches).toHaveLength(1);
    const b = parsed.batches[0]!;
    expect(b.records).toBe(1);
    expect(b.captureWallNs).toBe(1_700_000_000_200_000_000n);
    expect(b.buf.readUInt16LE(0)).toBe(1000);
    expect(b.buf.readBigUInt64LE(16)).toBe(4242n);
    expect(recordOffsets(b.buf)).toEqual([0]);
  });

  it('still reads version 1 files, whose checksum covers the payload only', () => {
    const parsed = parseCapture(Buffer.from(GOLDEN_V1 + GOLDEN_RECORD, 'hex'));
    expect(parsed.header.version).toBe(1);
    expect(parsed.batches[0]?.records).toBe(1);
  });

  it('detects a corrupted record count or time by the checksum', () => {
    const headerBytes = GOLDEN_HEADER.length / 2;
    for (const at of [4, 8]) {
      const file = Buffer.from(GOLDEN_HEADER + GOLDEN_FRAME + GOLDEN_RECORD, 'hex');
      file.writeUInt8(file.readUInt8(headerBytes + at) ^ 0x01, headerBytes + at);
      expect(() => parseCapture(file)).toThrow(/checksum/);
    }
  });

  it('skips header fields a later version appends', () => {
    const h = Buffer.from(GOLDEN_HEADER, 'hex');
    const longer = Buffer.concat([h, Buffer.from('ffffffff', 'hex')]);
    longer.writeUInt16LE(h.length + 4, 6);
    const { header: got, bytes } = decodeCaptureHeader(
      Buffer.concat([longer, Buffer.from(GOLDEN_FRAME, 'hex')]),
    );
    expect(bytes).toBe(h.length + 4);
    expect(got.host).toBe('node-a');
  });

  it('rejects a file that is not a capture, or a newer version', () => {
    expect(() => decodeCaptureHeader(Buffer.from('PK\u0003\u0004 not a capture'))).toThrow(PoisonError);
    const v3 = Buffer.from(GOLDEN_HEADER, 'hex');
    v3.writeUInt8(3, 5);
    expect(() => decodeCaptureHeader(v3)).toThrow(/version 3/);
  });

  it('detects a corrupted payload by its checksum', () => {
    const file = Buffer.from(GOLDEN_HEADER + GOLDEN_FRAME + GOLDEN_RECORD, 'hex');
    file.writeUInt8(file.readUInt8(file.length - 1) ^ 0xff, file.length - 1);
    expect(() => parseCapture(file)).toThrow(/checksum/);
  });

  it('round-trips batches through a file with the streaming writer and reader', async () => {
    const path = join(dir, 'roundtrip.ktcap');
    const w = createCaptureWriter(path, header);
    const sent = [batch(3, 1), batch(1, 2), batch(100, 3)];
    for (const [i, b] of sent.entries()) w.write(b, b.length / 40, 1_000n + BigInt(i));
    await w.close();
    expect(w.records).toBe(104);
    expect(readCaptureHeader(path).header.bootId).toBe('b0d1e2f3');
    const reader = openCaptureReader(path);
    const got = [];
    for await (const b of reader.batches()) got.push(b);
    expect(got.map((b) => b.records)).toEqual([3, 1, 100]);
    expect(got.map((b) => b.captureWallNs)).toEqual([1_000n, 1_001n, 1_002n]);
    for (const [i, b] of got.entries()) expect(b.buf.equals(sent[i]!)).toBe(true);
    expect(reader.truncated).toBe(false);
    // The whole file is exactly header + frames: nothing hidden.
    expect(readFileSync(path).length).toBe(42 + 3 * 24 + 104 * 40);
  });

  it('streams a file larger than its read chunk: frames across chunk ends, a frame larger than a chunk', async () => {
    const path = join(dir, 'big.ktcap');
    const w = createCaptureWriter(path, header);
    // 1 MiB read chunks: 37 batches of ~200 KiB cross several chunk ends, one of 5 MiB is
    // larger than a chunk, odd sizes put later frames at every offset within a chunk.
    const sizes = [...Array.from({ length: 37 }, (_, i) => 200_000 + i * 8), 5 << 20, 40, 8, 0, 1_000_003];
    const sent = sizes.map((n, i) => Buffer.alloc(n, i + 1));
    for (const b of sent) w.write(b, b.length >>> 3);
    await w.close();
    const reader = openCaptureReader(path);
    let i = 0;
    for await (const b of reader.batches()) {
      expect(b.records).toBe(sizes[i]! >>> 3);
      expect(b.buf.equals(sent[i]!)).toBe(true);
      if (sizes[i]! % 8 === 0) expect(b.buf.byteOffset % 8).toBe(0); // the decoder's u64 view needs no copy
      i++;
    }
    expect(i).toBe(sizes.length);
    expect(reader.truncated).toBe(false);
  });

  it('checks the frames again in a pass over a file that changed since a checked pass', async () => {
    const path = await twoBatches('changed.ktcap', 3);
    const reader = openCaptureReader(path);
    const pass = async () => {
      const got = [];
      for await (const b of reader.batches()) got.push(b.records);
      return got;
    };
    expect(await pass()).toEqual([2, 3]); // checked
    expect(await pass()).toEqual([2, 3]); // unchanged: not checked again
    // Past the file system's timestamp granularity (a clock tick on some), so the change shows.
    await new Promise((r) => setTimeout(r, 20));
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, SECOND_PAYLOAD + 10);
    closeSync(fd);
    await expect(pass()).rejects.toThrow(/checksum/);
  });

  it('reads a file cut mid-frame up to the last whole batch and says so', async () => {
    const path = await twoBatches('cut.ktcap', 5);
    truncateSync(path, SECOND_PAYLOAD + 100); // second payload half written
    const reader = openCaptureReader(path);
    const got = [];
    for await (const b of reader.batches()) got.push(b.records);
    expect(got).toEqual([2]);
    expect(reader.truncated).toBe(true);
    expect(parseCapture(readFileSync(path)).truncated).toBe(true);
  });
});

describe('batch framing (recordOffsets)', () => {
  it('steps by each header size padded to 8, as the addon lays records out', () => {
    const sizes = [40, 33, 8, 1368];
    const buf = Buffer.alloc(sizes.reduce((a, n) => a + ((n + 7) & ~7), 0));
    let off = 0;
    for (const n of sizes) {
      buf.writeUInt32LE(n, off + 4);
      off += (n + 7) & ~7;
    }
    expect(recordOffsets(buf)).toEqual([0, 40, 80, 88]);
  });

  it('stops at a record that runs past the batch or claims an impossible size', () => {
    const buf = Buffer.alloc(96);
    buf.writeUInt32LE(40, 4);
    buf.writeUInt32LE(64, 44); // 40 + 64 > 96
    expect(recordOffsets(buf)).toEqual([0]);
    buf.writeUInt32LE(4, 44); // smaller than the size field itself
    expect(recordOffsets(buf)).toEqual([0]);
    expect(recordOffsets(Buffer.alloc(0))).toEqual([]);
  });
});

describe('replay source', () => {
  const path = join(dir, 'replay.ktcap');
  const write = async () => {
    const w = createCaptureWriter(path, header);
    for (let i = 0; i < 10; i++) w.write(batch(100, i), 100);
    await w.close();
  };

  it('delivers every batch in order once, then resolves done', async () => {
    await write();
    const src = createReplaySource(path, { rate: 0, loop: false });
    const seen: number[] = [];
    src.start((buf, n) => {
      expect(n).toBe(100);
      seen.push(buf.readUInt32LE(28));
    });
    await src.done;
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(src.header.host).toBe('node-a');
    expect(src.delivered).toEqual({ batches: 10, records: 1000, passes: 1 });
  });

  it('paces delivery to the requested rate', async () => {
    await write();
    const src = createReplaySource(path, { rate: 5000, loop: false }); // 1000 records -> ~200 ms
    const t0 = performance.now();
    src.start(() => {});
    await src.done;
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(170); // the last batch is due at 200 ms
    expect(ms).toBeLessThan(1500);
  });

  it('loops until stopped', async () => {
    await write();
    const src = createReplaySource(path, { rate: 0, loop: true });
    let records = 0;
    src.start((_buf, n) => {
      records += n;
    });
    while (src.delivered.passes < 3) await new Promise((r) => setTimeout(r, 5));
    await src.stop();
    await src.done;
    expect(records).toBeGreaterThanOrEqual(3000);
    expect(records % 100).toBe(0);
  });

  it('stops during a pacing sleep instead of waiting it out', async () => {
    await write();
    // 1 record/s: after the first batch of 100 the next one is due in ~100 s.
    const src = createReplaySource(path, { rate: 1, loop: false });
    let batches = 0;
    src.start(() => {
      batches++;
    });
    while (batches === 0) await new Promise((r) => setTimeout(r, 5));
    const stopped = Promise.resolve(src.stop()).then(() => 'stopped');
    const hung = new Promise((r) => setTimeout(() => r('still sleeping'), 5_000).unref());
    expect(await Promise.race([stopped, hung])).toBe('stopped');
    expect(batches).toBe(1);
  });

  it('fails at creation for a file that is not a capture', () => {
    const bad = join(dir, 'bad.ktcap');
    writeFileSync(bad, 'hello world, definitely not a capture');
    expect(() => createReplaySource(bad, { rate: 0, loop: false })).toThrow(/bad magic/);
    expect(() => createReplaySource(join(dir, 'missing.ktcap'), { rate: 0, loop: false })).toThrow(/ENOENT/);
  });
});
