// common/kafkajs-record-batch.ts: the record batches kafkajs' produce request gets from the
// patched Record and RecordBatch must be byte for byte the ones kafkajs writes itself, for
// the collector's messages (Buffer values, no headers) and for every case left to kafkajs.
// Against the real broker: the collector integration tests (test/support/native-crc.ts
// installs the patch there too).
import { createRequire } from 'node:module';
import { CompressionTypes } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import '../../common/kafka.js'; // registers the zstd codec
import { fixKafkajsRecordBatchCopies } from '../../common/kafkajs-record-batch.js';

const require = createRequire(import.meta.url);
const recordPath = require.resolve('kafkajs/src/protocol/recordBatch/record/v0/index.js');
const batchPath = require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js');
type Enc = { buffer: Buffer; size(): number };
type RecordFn = (a: Record<string, unknown>) => unknown;
type BatchFn = (a: Record<string, unknown>) => Promise<Enc>;
// kafkajs' own, taken before the patch replaces them.
const kafkajsRecord = require(recordPath) as RecordFn;
const kafkajsBatch = (require(batchPath) as { RecordBatch: BatchFn }).RecordBatch;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7 + (i >> 5)) & 0xff;
  return b;
}

type Message = { key?: unknown; value: unknown; headers?: Record<string, unknown>; timestamp?: number };

/** What the produce request (v3+) does with a partition's messages, with either pair. */
async function encode(
  record: RecordFn,
  batch: BatchFn,
  messages: Message[],
  compression: number,
  transactional = false,
) {
  const firstTimestamp = 1_765_000_000_000;
  const records = messages.map((m, i) => record({ ...m, offsetDelta: i, timestampDelta: i * 3 }));
  const out = await batch({
    compression,
    records,
    firstTimestamp,
    maxTimestamp: firstTimestamp + 9,
    producerId: Long.fromValue(4_242),
    producerEpoch: 3,
    firstSequence: 77_000,
    transactional,
    lastOffsetDelta: records.length - 1,
  });
  return { bytes: Buffer.from(out.buffer), size: out.size() };
}

describe('kafkajs record batches with fewer copies', () => {
  it('installs once, before any produce request is loaded', () => {
    expect(fixKafkajsRecordBatchCopies()).toBe(true);
    expect(fixKafkajsRecordBatchCopies()).toBe(true);
    const record = require(recordPath) as RecordFn;
    expect(record).not.toBe(kafkajsRecord);
    // A Buffer value stays the caller's: no Encoder (buf) holds a copy of it.
    expect('buf' in (record({ key: 'k', value: Buffer.alloc(8) }) as object)).toBe(false);
    expect('buf' in (record({ key: 'k', value: 'text' }) as object)).toBe(true);
  });

  it('writes the bytes kafkajs writes, for Buffer values without headers', async () => {
    fixKafkajsRecordBatchCopies();
    const record = require(recordPath) as RecordFn;
    const batch = (require(batchPath) as { RecordBatch: BatchFn }).RecordBatch;
    const cases: Message[][] = [
      [{ key: 'node-1', value: payload(300_000, 1) }],
      [0, 1, 127, 128, 16_384, 70_000, 262_144].map((n, i) => ({ key: 'node-2', value: payload(n, i) })),
      [
        { key: Buffer.from('k'), value: payload(5_000, 9) },
        { key: null, value: payload(10, 3) },
      ],
    ];
    for (const messages of cases)
      for (const compression of [CompressionTypes.ZSTD, CompressionTypes.GZIP])
        for (const transactional of [false, true]) {
          const want = await encode(kafkajsRecord, kafkajsBatch, messages, compression, transactional);
          const got = await encode(record, batch, messages, compression, transactional);
          expect(got.size).toBe(want.size);
          expect(got.bytes.equals(want.bytes)).toBe(true);
        }
  });

  it('leaves headers, string values and uncompressed batches to kafkajs, same bytes', async () => {
    fixKafkajsRecordBatchCopies();
    const record = require(recordPath) as RecordFn;
    const batch = (require(batchPath) as { RecordBatch: BatchFn }).RecordBatch;
    const cases: Array<[Message[], number]> = [
      [[{ key: 'a', value: payload(1_000, 2), headers: { h: 'v', l: ['1', '2'] } }], CompressionTypes.ZSTD],
      [
        [
          { key: 'a', value: 'a string value' },
          { key: 'b', value: payload(50, 1) },
        ],
        CompressionTypes.ZSTD,
      ],
      [
        [
          { key: 'a', value: payload(2_000, 4) },
          { key: 'b', value: payload(3, 5) },
        ],
        CompressionTypes.None,
      ],
      [[{ key: 'a', value: null }], CompressionTypes.GZIP],
    ];
    for (const [messages, compression] of cases) {
      const want = await encode(kafkajsRecord, kafkajsBatch, messages, compression);
      const got = await encode(record, batch, messages, compression);
      expect(got.bytes.equals(want.bytes)).toBe(true);
    }
  });
});
