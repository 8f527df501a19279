// kafkajs' compressed record batches, written with fewer copies (same bytes on the wire).
//
// kafkajs 2.2 builds a compressed batch (src/protocol/recordBatch/v0/index.js) through
// growing Encoders: each record's value is copied into an Encoder of its own (sized up to a
// power of two), all records are copied again into one more Encoder that doubles as it goes,
// and the compressed bytes are copied into two Encoders more. For the collector's messages
// (a few hundred KB of Avro each) that is most of the Buffer memory a produce request
// allocates before compression, garbage as soon as the request is encoded.
//
// Here a record with a Buffer value and no headers (what the collector sends) keeps its
// value by reference; the batch copies each value once into a buffer of the exact size for
// the codec, and writes the compressed batch once, into its final buffer. Anything else
// (uncompressed batches, string values, headers) takes kafkajs' own path unchanged.
import { createRequire } from 'node:module';

interface KafkajsEncoder {
  buf: Buffer;
  offset: number;
  readonly buffer: Buffer;
  writeInt8(v: number): KafkajsEncoder;
  writeInt16(v: number): KafkajsEncoder;
  writeInt32(v: number): KafkajsEncoder;
  writeInt64(v: unknown): KafkajsEncoder;
  writeVarInt(v: number): KafkajsEncoder;
  writeVarLong(v: unknown): KafkajsEncoder;
  writeVarIntBytes(v: unknown): KafkajsEncoder;
  writeBuffer(v: Buffer): KafkajsEncoder;
}

interface EncoderClass {
  new (initialSize?: number): KafkajsEncoder;
  sizeOfVarInt(v: number): number;
  sizeOfVarLong(v: unknown): number;
  sizeOfVarIntBytes(v: unknown): number;
}

interface RecordArgs {
  offsetDelta?: number;
  timestampDelta?: number;
  key?: unknown;
  value?: unknown;
  headers?: Record<string, unknown> | null;
}

interface BatchArgs {
  compression?: number;
  firstOffset?: unknown;
  firstTimestamp?: number;
  maxTimestamp?: number;
  partitionLeaderEpoch?: number;
  lastOffsetDelta?: number;
  transactional?: boolean;
  producerId?: unknown;
  producerEpoch?: number;
  firstSequence?: number;
  records?: unknown[];
}

type RecordFn = (args: RecordArgs) => unknown;
type RecordBatchFn = (args: BatchArgs) => Promise<KafkajsEncoder>;

/** A record whose value is still the caller's Buffer: its bytes are head + value + one 0 byte. */
class HeldRecord {
  constructor(
    readonly head: Buffer,
    readonly value: Buffer,
    readonly materialize: () => KafkajsEncoder,
  ) {}
  get size(): number {
    return this.head.length + this.value.length + 1;
  }
}

const MAGIC_BYTE = 2;
const TRANSACTIONAL_MASK = 16;
/** firstOffset(8) + batch length(4) + partitionLeaderEpoch(4) + magic(1) + crc(4). */
const BATCH_PREFIX = 21;

let patched: boolean | undefined;

/**
 * Installs the patch for the whole process, once; false when it cannot apply (another
 * kafkajs layout, or a produce request already bound to kafkajs' own functions). Call it
 * after useNativeCrc32c (common/kafka.ts): that one needs the record batch module unloaded.
 */
export function fixKafkajsRecordBatchCopies(): boolean {
  if (patched !== undefined) return patched;
  patched = false;
  const require = createRequire(import.meta.url);
  let paths: { record: string; batch: string; request: string; crc: string; compression: string };
  let Encoder: EncoderClass;
  try {
    paths = {
      record: require.resolve('kafkajs/src/protocol/recordBatch/record/v0/index.js'),
      batch: require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js'),
      request: require.resolve('kafkajs/src/protocol/requests/produce/v3/request.js'),
      crc: require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js'),
      compression: require.resolve('kafkajs/src/protocol/message/compression/index.js'),
    };
    Encoder = require('kafkajs/src/protocol/encoder.js') as EncoderClass;
  } catch {
    return false;
  }
  // The produce request takes Record and RecordBatch when it is first loaded.
  if (require.cache[paths.request] !== undefined) return false;
  const originalRecord = require(paths.record) as RecordFn;
  const batchModule = require(paths.batch) as { RecordBatch: RecordBatchFn };
  const recordEntry = require.cache[paths.record];
  const originalBatch = batchModule.RecordBatch;
  if (typeof originalRecord !== 'function' || typeof originalBatch !== 'function' || !recordEntry)
    return false;
  const { lookupCodec, Types } = require(paths.compression) as {
    lookupCodec(type: number): { compress(encoder: KafkajsEncoder): Promise<Buffer> };
    Types: { None: number };
  };

  function record(args: RecordArgs): unknown {
    const { offsetDelta = 0, timestampDelta = 0, key, value, headers } = args;
    if (!Buffer.isBuffer(value) || (headers != null && Object.keys(headers).length > 0))
      return originalRecord(args);
    const sizeOfBody =
      1 +
      Encoder.sizeOfVarLong(timestampDelta) +
      Encoder.sizeOfVarInt(offsetDelta) +
      Encoder.sizeOfVarIntBytes(key) +
      Encoder.sizeOfVarIntBytes(value) +
      1; // headers: an empty varint array
    const head = new Encoder(64)
      .writeVarInt(sizeOfBody)
      .writeInt8(0)
      .writeVarLong(timestampDelta)
      .writeVarInt(offsetDelta)
      .writeVarIntBytes(key)
      .writeVarInt(value.length).buffer;
    return new HeldRecord(head, value, () => originalRecord(args) as KafkajsEncoder);
  }

  async function recordBatch(args: BatchArgs): Promise<KafkajsEncoder> {
    const records = args.records ?? [];
    const compression = args.compression ?? Types.None;
    const held =
      records.length > 0 && compression !== Types.None && records.every((r) => r instanceof HeldRecord);
    if (!held)
      return originalBatch({
        ...args,
        records: records.map((r) => (r instanceof HeldRecord ? r.materialize() : r)),
      });
    let total = 0;
    for (const r of records as HeldRecord[]) total += r.size;
    const raw = Buffer.allocUnsafe(total);
    let pos = 0;
    for (const r of records as HeldRecord[]) {
      pos += r.head.copy(raw, pos);
      pos += r.value.copy(raw, pos);
      raw[pos++] = 0;
    }
    const compressed = await lookupCodec(compression).compress(wrap(raw));

    const now = Date.now();
    const attributes = (compression & 0x07) | (args.transactional ? TRANSACTIONAL_MASK : 0);
    const header = new Encoder(64)
      .writeInt16(attributes)
      .writeInt32(args.lastOffsetDelta ?? 0)
      .writeInt64(args.firstTimestamp ?? now)
      .writeInt64(args.maxTimestamp ?? now)
      .writeInt64(args.producerId ?? -1)
      .writeInt16(args.producerEpoch ?? 0)
      .writeInt32(args.firstSequence ?? 0)
      .writeInt32(records.length).buffer;
    const bodyLength = header.length + compressed.length;
    const out = Buffer.allocUnsafe(BATCH_PREFIX + bodyLength);
    new Encoder(8).writeInt64(args.firstOffset ?? 0).buffer.copy(out, 0);
    out.writeInt32BE(bodyLength + 9, 8); // epoch, magic and crc precede the body
    out.writeInt32BE(args.partitionLeaderEpoch ?? 0, 12);
    out.writeInt8(MAGIC_BYTE, 16);
    header.copy(out, BATCH_PREFIX);
    compressed.copy(out, BATCH_PREFIX + header.length);
    // Looked up per batch, as the module's current exports (useNativeCrc32c may replace
    // kafkajs' JavaScript one); through the module cache, since a require() per request goes
    // through Node's whole loader, which cost more than the lookup (docs/perf-log.md).
    const crc32C = (require.cache[paths.crc]?.exports ?? require(paths.crc)) as (buf: Buffer) => number;
    out.writeUInt32BE(crc32C(out.subarray(BATCH_PREFIX)) >>> 0, 17);
    return wrap(out);
  }

  /** A kafkajs Encoder holding `buf` as written (what callers of RecordBatch expect). */
  function wrap(buf: Buffer): KafkajsEncoder {
    const encoder = new Encoder(0);
    encoder.buf = buf;
    encoder.offset = buf.length;
    return encoder;
  }

  recordEntry.exports = record;
  batchModule.RecordBatch = recordBatch;
  patched = true;
  return true;
}
