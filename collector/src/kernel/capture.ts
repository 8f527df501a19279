// Capture files: ring-buffer batches recorded as the addon delivered them, so the collector,
// its tests and its benchmarks can run from a file without root (replay-source.ts).
//
// Layout (all integers little-endian), version 2:
//   file header   "KTCAP" | version u8 | headerBytes u16 | startWallNs u64 | wallMinusBootNs i64
//                 | bootId (u16 length + UTF-8) | host (u16 length + UTF-8)
//                 A reader skips header bytes it does not know (later versions append fields).
//   batch frame   payloadBytes u32 | records u32 | captureWallNs u64 | crc32 u32 | 0 u32
//                 | payload ... The crc32 covers the frame's first 16 bytes, then the payload
//                 (version 1 files, still read, covered the payload only: a flipped record
//                 count went unnoticed).
//                 | payload: the addon's batch bytes unchanged (records with their own 32-byte
//                 headers, each padded to 8 bytes)
// A file cut short (recorder killed) reads up to the last whole frame and says so.
import { closeSync, createWriteStream, openSync, readFileSync, readSync, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { crc32 } from 'node:zlib';
import { PoisonError } from '../../../common/errors.js';

export const CAPTURE_MAGIC = 'KTCAP';
export const CAPTURE_VERSION = 2;
/** Versions this reader understands (1: the checksum covers the payload only). */
const READABLE_VERSIONS = new Set([1, 2]);
export const FRAME_HEADER_BYTES = 24;
const FIXED_HEADER_BYTES = 24; // magic, version, headerBytes, startWallNs, wallMinusBootNs
/** Largest batch a reader accepts: guards against a corrupt length allocating gigabytes. */
export const MAX_FRAME_PAYLOAD = 256 << 20;
/**
 * How much of a capture file the streaming reader reads at a time. 1 MiB rather than more:
 * chunks are garbage once their batches are decoded, and larger ones raised the collector's
 * external memory (and RSS) at full speed without saving measurable CPU.
 */
const READ_CHUNK = 1 << 20;

export interface CaptureHeader {
  version: number;
  /** Wall-clock time (Unix ns) when recording started. */
  startWallNs: bigint;
  /** Wall-clock ns minus boot-time ns on the recording host: turns record ts_ns into wall time. */
  wallMinusBootNs: bigint;
  /** /proc/sys/kernel/random/boot_id of the recording host. */
  bootId: string;
  host: string;
}

export interface CapturedBatch {
  buf: Buffer;
  records: number;
  /** Wall-clock time (Unix ns) when the batch was recorded. */
  captureWallNs: bigint;
}

export function encodeCaptureHeader(h: Omit<CaptureHeader, 'version'>): Buffer {
  const bootId = Buffer.from(h.bootId, 'utf8');
  const host = Buffer.from(h.host, 'utf8');
  const size = FIXED_HEADER_BYTES + 2 + bootId.length + 2 + host.length;
  if (bootId.length > 0xffff || host.length > 0xffff)
    throw new RangeError('bootId/host too long for a capture header');
  const out = Buffer.alloc(size);
  out.write(CAPTURE_MAGIC, 0, 'latin1');
  out.writeUInt8(CAPTURE_VERSION, 5);
  out.writeUInt16LE(size, 6);
  out.writeBigUInt64LE(h.startWallNs, 8);
  out.writeBigInt64LE(h.wallMinusBootNs, 16);
  let off = FIXED_HEADER_BYTES;
  out.writeUInt16LE(bootId.length, off);
  bootId.copy(out, off + 2);
  off += 2 + bootId.length;
  out.writeUInt16LE(host.length, off);
  host.copy(out, off + 2);
  return out;
}

/** Parses a file header from the start of `buf`; returns it and its length. */
export function decodeCaptureHeader(buf: Buffer): { header: CaptureHeader; bytes: number } {
  if (buf.length < 8 || buf.toString('latin1', 0, 5) !== CAPTURE_MAGIC)
    throw new PoisonError('not a ktrail capture file (bad magic)');
  const version = buf.readUInt8(5);
  if (!READABLE_VERSIONS.has(version))
    throw new PoisonError(
      `capture file version ${version} is not supported (this reader knows ${[...READABLE_VERSIONS].join(', ')})`,
    );
  const bytes = buf.readUInt16LE(6);
  if (bytes < FIXED_HEADER_BYTES + 4 || buf.length < bytes) throw new PoisonError('capture header truncated');
  let off = FIXED_HEADER_BYTES;
  const str = (): string => {
    const len = buf.readUInt16LE(off);
    if (off + 2 + len > bytes) throw new PoisonError('capture header field runs past the header');
    const s = buf.toString('utf8', off + 2, off + 2 + len);
    off += 2 + len;
    return s;
  };
  const bootId = str();
  const host = str();
  return {
    header: {
      version,
      startWallNs: buf.readBigUInt64LE(8),
      wallMinusBootNs: buf.readBigInt64LE(16),
      bootId,
      host,
    },
    bytes,
  };
}

export function encodeFrameHeader(payload: Buffer, records: number, captureWallNs: bigint): Buffer {
  const out = Buffer.alloc(FRAME_HEADER_BYTES);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(records, 4);
  out.writeBigUInt64LE(captureWallNs, 8);
  out.writeUInt32LE(frameCrc(out, payload, CAPTURE_VERSION), 16);
  return out;
}

/** The frame's checksum: over its length, record count and time, then the payload (v2). */
function frameCrc(frame: Buffer, payload: Buffer, version: number): number {
  return version === 1 ? crc32(payload) : crc32(payload, crc32(frame.subarray(0, 16)));
}

function checkedFrame(frame: Buffer, payload: Buffer, at: number, version: number): CapturedBatch {
  if (frameCrc(frame, payload, version) !== frame.readUInt32LE(16))
    throw new PoisonError(`capture frame at byte ${at}: checksum mismatch`, { context: { at } });
  return frameBatch(frame, payload);
}

/** The batch a frame header and its payload describe (checksum not checked). */
function frameBatch(frame: Buffer, payload: Buffer): CapturedBatch {
  return { buf: payload, records: frame.readUInt32LE(4), captureWallNs: frame.readBigUInt64LE(8) };
}

/** Wall-clock ns now (ms precision is plenty for batch timestamps). */
export function wallNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export function defaultCaptureHeader(): Omit<CaptureHeader, 'version'> {
  let bootId = '';
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // not Linux: an empty boot id says "unknown"
  }
  // Boot-time clock ~ CLOCK_BOOTTIME; /proc/uptime has 10 ms resolution, enough to place events.
  let wallMinusBootNs = 0n;
  try {
    const uptime = readFileSync('/proc/uptime', 'utf8').split(' ')[0] ?? '0';
    const [sec = '0', frac = '0'] = uptime.split('.');
    const bootNs = BigInt(sec) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9));
    wallMinusBootNs = wallNs() - bootNs;
  } catch {
    // leave 0
  }
  return { startWallNs: wallNs(), wallMinusBootNs, bootId, host: hostname() };
}

/** Streams batches into a capture file. `write` follows stream backpressure (false = slow down). */
export interface CaptureWriter {
  readonly path: string;
  write(buf: Buffer, records: number, captureWallNs?: bigint): boolean;
  readonly batches: number;
  readonly records: number;
  /** Flushes and closes; resolves when the file is complete. */
  close(): Promise<void>;
}

export function createCaptureWriter(
  path: string,
  header: Omit<CaptureHeader, 'version'> = defaultCaptureHeader(),
) {
  const stream: WriteStream = createWriteStream(path);
  let failure: Error | undefined;
  stream.on('error', (err) => {
    failure = err;
  });
  stream.write(encodeCaptureHeader(header));
  let batches = 0;
  let records = 0;
  let closing: Promise<void> | undefined;
  const writer: CaptureWriter = {
    path,
    get batches() {
      return batches;
    },
    get records() {
      return records;
    },
    write(buf, n, captureWallNs = wallNs()) {
      if (failure) throw failure;
      if (closing) throw new Error('capture writer is closed');
      if (buf.length > MAX_FRAME_PAYLOAD)
        throw new RangeError(`batch of ${buf.length} bytes is too large to record`);
      batches++;
      records += n;
      stream.write(encodeFrameHeader(buf, n, captureWallNs));
      // A copy: the stream writes later, and the addon lends each batch Buffer for its
      // callback only (detached afterwards, docs/native.md).
      return stream.write(Buffer.from(buf));
    },
    close() {
      closing ??= new Promise<void>((resolveClose, reject) => {
        stream.end((err?: Error | null) => {
          if (err ?? failure) reject(err ?? failure);
          else resolveClose();
        });
      });
      return closing;
    },
  };
  return writer;
}

export interface CaptureReader {
  readonly header: CaptureHeader;
  /**
   * Batches in file order; stops at the last whole frame of a truncated file. With `reuse`,
   * a batch is the consumer's only until it asks for the next one (as the addon's batches
   * are for one callback): the reader reads on into the same memory.
   */
  batches(options?: { reuse?: boolean }): AsyncGenerator<CapturedBatch>;
  /** The same batches without a generator: for a consumer that takes one per wake-up. */
  cursor(options?: { reuse?: boolean }): Promise<CaptureCursor>;
  /** True once batches() met a partial frame at the end (the recorder stopped mid-write). */
  readonly truncated: boolean;
}

/** One pass over a capture file. */
export interface CaptureCursor {
  /** The next batch if its bytes are in memory; undefined: call read(). */
  next(): CapturedBatch | undefined;
  /** Reads on; false at the end of the file (or of its last whole frame). */
  read(): Promise<boolean>;
  close(): Promise<void>;
}

/** Reads the header synchronously (small), so a bad file fails where it is opened. */
export function readCaptureHeader(path: string): { header: CaptureHeader; bytes: number } {
  const fd = openSync(path, 'r');
  try {
    const fixed = Buffer.alloc(8);
    if (readSync(fd, fixed, 0, 8, 0) < 8)
      throw new PoisonError(`${path}: not a ktrail capture file (too short)`);
    decodeMagic(fixed, path);
    const total = fixed.readUInt16LE(6);
    const buf = Buffer.alloc(total);
    if (readSync(fd, buf, 0, total, 0) < total) throw new PoisonError(`${path}: capture header truncated`);
    return decodeCaptureHeader(buf);
  } finally {
    closeSync(fd);
  }
}

function decodeMagic(buf: Buffer, path: string): void {
  if (buf.toString('latin1', 0, 5) !== CAPTURE_MAGIC)
    throw new PoisonError(`${path}: not a ktrail capture file (bad magic)`);
}

/** What identifies a file's contents between two passes: device, inode, size, change time. */
function identity(st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

export function openCaptureReader(path: string): CaptureReader {
  const { header, bytes: headerBytes } = readCaptureHeader(path);
  let truncated = false;
  // A pass that checked every frame's checksum to the end of the file; later passes over
  // the same, unchanged file (a looping replay) skip the check.
  let verified: string | undefined;

  // Reads the file in chunks of READ_CHUNK bytes and cuts frames out of them: one read
  // per ~5 batches of the benchmark's size instead of two per batch (the per-read
  // thread-pool round trips were ~6% of the collector's main thread at full speed).
  // A payload is a view into its chunk, not a copy (copies were ~3% of the main thread):
  // a batch is decoded when it is handed over and not kept, so a chunk lives as long as
  // its last batch. Chunks start at a frame and payload lengths are multiples of 8 (the
  // addon pads records to 8), so payloads stay 8-byte aligned for the decoder's u64 view.
  // Reused, a chunk also spares V8 the external-memory growth (1 MiB per read) that
  // starts its full collections (docs/collector.md, Cost).
  async function cursor(options?: { reuse?: boolean }): Promise<CaptureCursor> {
    const reuse = options?.reuse === true;
    const fh = await open(path, 'r');
    let id: string;
    try {
      id = identity(await fh.stat({ bigint: true }));
    } catch (err) {
      await fh.close();
      throw err;
    }
    const check = verified !== id;
    let block: Buffer | undefined;
    let chunk: Buffer = Buffer.alloc(0);
    let chunkPos = headerBytes; // file position of chunk[0]
    let pos = headerBytes; // file position of the next frame
    let eof = false;
    let need = FRAME_HEADER_BYTES; // bytes from `pos` the next read must bring in
    let ended = false;
    const end = async (partial: boolean): Promise<boolean> => {
      ended = true;
      if (partial) truncated = true;
      // Unchanged while it was read, too: else the next pass checks again.
      else if (check && identity(await fh.stat({ bigint: true })) === id) verified = id;
      return false;
    };
    return {
      next() {
        if (ended) return undefined;
        const at = pos - chunkPos;
        if (at + FRAME_HEADER_BYTES > chunk.length) {
          need = FRAME_HEADER_BYTES;
          return undefined;
        }
        const len = chunk.readUInt32LE(at);
        if (len > MAX_FRAME_PAYLOAD)
          throw new PoisonError(`capture frame at byte ${pos}: length ${len} is implausible`);
        const start = at + FRAME_HEADER_BYTES;
        if (start + len > chunk.length) {
          need = FRAME_HEADER_BYTES + len;
          return undefined;
        }
        const frame = chunk.subarray(at, start);
        const payload = chunk.subarray(start, start + len);
        const batch = check ? checkedFrame(frame, payload, pos, header.version) : frameBatch(frame, payload);
        pos += FRAME_HEADER_BYTES + len;
        return batch;
      },
      async read() {
        if (ended) return false;
        // At the end of the file: a partial frame left over means the recorder stopped mid-write.
        if (eof) return end(pos < chunkPos + chunk.length);
        const size = Math.max(need, READ_CHUNK);
        // Its own ArrayBuffer: offset 0, aligned. Nothing of the old chunk is needed any more
        // (the frame is read again from `pos`), so with `reuse` it is read over.
        const next =
          reuse && block !== undefined && block.length >= size ? block : Buffer.allocUnsafeSlow(size);
        if (reuse) block = next;
        const { bytesRead } = await fh.read(next, 0, size, pos);
        chunk = next.subarray(0, bytesRead);
        chunkPos = pos;
        if (bytesRead < size) eof = true;
        if (bytesRead === 0) return end(false);
        if (bytesRead < need) return end(true);
        return true;
      },
      close: () => fh.close(),
    };
  }

  return {
    header,
    get truncated() {
      return truncated;
    },
    cursor,
    async *batches(options) {
      const c = await cursor(options);
      try {
        for (;;) {
          const batch = c.next();
          if (batch !== undefined) yield batch;
          else if (!(await c.read())) return;
        }
      } finally {
        await c.close();
      }
    },
  };
}

/** Parses a whole capture held in memory (tests, small files). */
export function parseCapture(buf: Buffer): {
  header: CaptureHeader;
  batches: CapturedBatch[];
  truncated: boolean;
} {
  const { header, bytes } = decodeCaptureHeader(buf);
  const batches: CapturedBatch[] = [];
  let pos = bytes;
  while (pos < buf.length) {
    if (pos + FRAME_HEADER_BYTES > buf.length) return { header, batches, truncated: true };
    const frame = buf.subarray(pos, pos + FRAME_HEADER_BYTES);
    const len = frame.readUInt32LE(0);
    const end = pos + FRAME_HEADER_BYTES + len;
    if (end > buf.length) return { header, batches, truncated: true };
    batches.push(checkedFrame(frame, buf.subarray(pos + FRAME_HEADER_BYTES, end), pos, header.version));
    pos = end;
  }
  return { header, batches, truncated: false };
}
