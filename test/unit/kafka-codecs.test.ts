// The codec addon (native/src/codec.cc via common/native-codec.ts) and how common/kafka.ts
// puts it into kafkajs: CRC-32C against published vectors and kafkajs' own implementation,
// zstd round trips (including frames without a recorded content size, as streaming
// producers such as Java's write them), and the kafkajs hookup. Interop with the real
// broker is in test/integration/kafka-zstd.test.ts.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { fixKafkajsEncoderZeroFill, useNativeCrc32c, ZSTD_LEVEL } from '../../common/kafka.js';
import { loadCodecAddon } from '../../common/native-codec.js';

const require = createRequire(import.meta.url);
const codec = loadCodecAddon();
const kafkajsCrc = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
const unsigned = (n: number) => n >>> 0;

/** A zstd frame with raw blocks and no content size in its header (RFC 8878 layout). */
function rawZstdFrame(data: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])]; // magic; no FCS; 128 KiB window
  const max = 128 * 1024;
  for (let off = 0; off === 0 || off < data.length; off += max) {
    const block = data.subarray(off, off + max);
    const last = off + max >= data.length ? 1 : 0;
    const header = Buffer.alloc(3);
    header.writeUIntLE((block.length << 3) | last, 0, 3); // Block_Type 0 = raw
    parts.push(header, block);
  }
  return Buffer.concat(parts);
}

describe('CRC-32C', () => {
  it('matches the RFC 3720 and check vectors, hardware and table paths alike', () => {
    const vectors: Array<[Buffer, number]> = [
      [Buffer.from('123456789'), 0xe3069283],
      [Buffer.alloc(0), 0],
      [Buffer.alloc(32, 0), 0x8a9136aa],
      [Buffer.alloc(32, 0xff), 0x62a8ab43],
      [Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
      [Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
    ];
    for (const [buf, crc] of vectors) {
      expect(codec.crc32c(buf)).toBe(crc);
      expect(codec.crc32c(buf, true)).toBe(crc);
    }
  });

  it('equals kafkajs own CRC on random data of every length and alignment', () => {
    const data = randomBytes(5_000);
    for (let len = 0; len < 300; len++) {
      for (const start of [0, 1, 3, 7]) {
        const slice = data.subarray(start, start + len);
        const want = unsigned(kafkajsCrc(slice));
        expect(codec.crc32c(slice)).toBe(want);
        expect(codec.crc32c(slice, true)).toBe(want);
      }
    }
    const big = randomBytes(1 << 20);
    expect(codec.crc32c(big)).toBe(unsigned(kafkajsCrc(big)));
  });
});

describe('zstd', () => {
  it('round-trips random, compressible and empty data', async () => {
    const text = Buffer.from('tcp_close 10.0.0.1 -> 10.0.0.2 nginx '.repeat(30_000));
    for (const data of [randomBytes(100_000), text, Buffer.alloc(0), Buffer.from('x')]) {
      const packed = await codec.zstdCompress(data, ZSTD_LEVEL);
      expect((await codec.zstdDecompress(packed)).equals(data)).toBe(true);
    }
    expect((await codec.zstdCompress(text, ZSTD_LEVEL)).length).toBeLessThan(text.length / 20);
  });

  it('reads frames without a content size and several frames back to back', async () => {
    const data = randomBytes(300_000); // three raw blocks, output grows past its first guess
    expect((await codec.zstdDecompress(rawZstdFrame(data))).equals(data)).toBe(true);
    const a = await codec.zstdCompress(Buffer.from('first '), 1);
    const b = rawZstdFrame(Buffer.from('second'));
    expect((await codec.zstdDecompress(Buffer.concat([a, b]))).toString()).toBe('first second');
  });

  it('does not trust a frame that declares a huge size, nor grow past its bound', async () => {
    // 14 bytes that declare a 2,147,418,112-byte frame, then one raw block of 3 bytes.
    const liar = Buffer.concat([
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x38]), // magic; 4-byte content size; window
      Buffer.from([0x00, 0x00, 0xff, 0x7f]),
      Buffer.from([(3 << 3) | 1, 0, 0]), // last raw block of 3 bytes
      Buffer.from('abc'),
    ]);
    const peakBefore = process.resourceUsage().maxRSS;
    await expect(codec.zstdDecompress(liar)).rejects.toThrow(/zstd/);
    expect((process.resourceUsage().maxRSS - peakBefore) * 1024).toBeLessThan(64 * 1024 * 1024);
    // A bomb: 300 frames of 1 MiB of zeros, a few KiB in all; decompressing stops at the bound.
    const frame = await codec.zstdCompress(Buffer.alloc(1024 * 1024), 1);
    const bomb = Buffer.concat(Array.from({ length: 300 }, () => frame));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    await expect(codec.zstdDecompress(bomb)).rejects.toThrow(/larger than 256 MiB/);
  });

  it('rejects damaged input instead of returning part of it', async () => {
    const packed = await codec.zstdCompress(randomBytes(10_000), 1);
    await expect(codec.zstdDecompress(packed.subarray(0, packed.length - 10))).rejects.toThrow(/zstd/);
    await expect(codec.zstdDecompress(Buffer.from('not zstd at all'))).rejects.toThrow(/zstd/);
    expect(() => codec.zstdCompress(Buffer.from('x'), 99)).toThrow(/level/); // argument errors throw at once
  });
});

describe('kafkajs hookup', () => {
  it('registers zstd for the whole process at import, compressing with ZSTD_LEVEL', async () => {
    const zstd = kafkajs.CompressionCodecs[CompressionTypes.ZSTD]();
    const data = Buffer.from('event batch '.repeat(1_000));
    const packed = await zstd.compress({ buffer: data } as never);
    expect(packed.readUInt32LE(0)).toBe(0xfd2fb528); // a zstd frame
    expect((await zstd.decompress(packed)).equals(data)).toBe(true);
  });

  it('puts the native CRC-32C in place of kafkajs own, and kafkajs record batches carry it', async () => {
    // Nothing in this file produced yet, so kafkajs' record batch encoder is not loaded.
    expect(useNativeCrc32c()).toBe(true);
    const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as {
      RecordBatch: (o: object) => Promise<{ buffer: Buffer }>;
    };
    const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: object) => unknown;
    const records = [
      Record({ key: Buffer.from('k'), value: randomBytes(3_000), timestampDelta: 0, offsetDelta: 0 }),
    ];
    const batch = (await RecordBatch({ compression: CompressionTypes.ZSTD, records })).buffer;
    // Layout: firstOffset i64 | length i32 | leaderEpoch i32 | magic i8 | crc u32 | body...
    const crc = batch.readUInt32BE(8 + 4 + 4 + 1);
    const body = batch.subarray(8 + 4 + 4 + 1 + 4);
    expect(crc).toBe(unsigned(kafkajsCrc(body)));
    expect(body.readInt16BE(0) & 0x07).toBe(CompressionTypes.ZSTD);
  });
});

describe("kafkajs' encoder without zero-fill", () => {
  type EncoderInstance = {
    writeBytes(b: Buffer): EncoderInstance;
    writeInt32(n: number): EncoderInstance;
    writeString(s: string): EncoderInstance;
    writeEncoder(e: EncoderInstance): EncoderInstance;
    buffer: Buffer;
  };
  const Encoder = require('kafkajs/src/protocol/encoder.js') as new (initialSize?: number) => EncoderInstance;
  const write = (e: EncoderInstance, values: Buffer[]) => {
    for (const v of values) e.writeInt32(v.length).writeString('k').writeBytes(v);
    return e.buffer;
  };

  it('writes the bytes an encoder that never grows writes', () => {
    fixKafkajsEncoderZeroFill();
    // Sizes that cross power-of-two boundaries, mixed with small writes, from dirty memory.
    const values = [1, 300, 511, 512, 4095, 4097, 70_000, 262_145].map((n) => randomBytes(n));
    for (let i = 0; i < 3; i++) Buffer.allocUnsafe(1 << 20).fill(0xa5);
    const grown = write(new Encoder(), values);
    const presized = write(new Encoder(1 << 21), values);
    expect(grown.equals(presized)).toBe(true);
    const big = values[7] as Buffer;
    const outer = new Encoder().writeInt32(7).writeEncoder(new Encoder().writeBytes(big));
    const header = Buffer.alloc(8);
    header.writeInt32BE(7, 0);
    header.writeInt32BE(big.length, 4);
    expect(outer.buffer.equals(Buffer.concat([header, big]))).toBe(true);
  });
});
