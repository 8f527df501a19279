// Raw ring-buffer records -> typed events (docs/events.md). A batch is records laid end
// to end, each starting with the 32-byte header whose `size` gives its length (padded to
// 8 bytes in a batch). Malformed input is counted in DecodeStats and skipped, never
// thrown: a bad record must not take the collector down.
// Hot path: fixed offsets from layout.ts, no per-event closures, one object per event.
// Numbers are read through typed-array views of the batch (every field in events.h sits at
// an offset aligned to its size, and records start 8-aligned in a batch): for u64 one bigint
// per field, where Buffer#readBigUInt64LE builds four (measured: a third of the decode
// time); for u16/u32 a plain indexed load, without Buffer#readUInt*'s call and bounds check.
import type {
  CgroupMkdir,
  CgroupRename,
  CgroupRmdir,
  OomKill,
  ProcExec,
  ProcExit,
  ProcFork,
  TcpAccept,
  TcpClose,
  TcpConnect,
  TcpReset,
} from '../../../schemas/types.js';
import {
  ARGS_LEN,
  KT_CGROUP_EVENT as CG,
  COMM_LEN,
  EVENT_TYPE,
  KT_PROC_EXEC as EXEC,
  KT_PROC_EXIT as EXIT,
  FILENAME_LEN,
  KT_PROC_FORK as FORK,
  KT_HEADER as H,
  HEADER_SIZE,
  KT_MEMORY_RELEASE as MEMREL,
  KT_OOM_KILL as OOM,
  PATH_LEN,
  RECORD_LAYOUT,
  KT_TCP_CLOSE as TCLOSE,
  KT_TCP_CONN as TCONN,
  KT_TCP_RESET as TRESET,
} from './layout.js';

/**
 * A memory cgroup's last reading, taken by the kernel at its removal (events.h type 12). Not
 * an Avro kind: the collector turns it into a memory_sample of the v2 cgroup
 * (collector/src/kernel-events.ts), so it never reaches Kafka as itself.
 */
export interface MemoryRelease {
  kind: 'memory_release';
  tsNs: bigint;
  /** The removed cgroup's id in its own hierarchy (a v1 id when hierarchyId != 0). */
  cgroupId: bigint;
  pid: number;
  tgid: number;
  flags: number;
  level: number;
  hierarchyId: number;
  path: string;
  peakBytes: bigint;
  currentBytes: bigint;
  limitBytes: bigint;
  oomKills: bigint;
}

/** Every event the ring buffer carries (samples come from map readers, not from here). */
export type KernelEvent =
  | MemoryRelease
  | ProcExec
  | ProcFork
  | ProcExit
  | CgroupMkdir
  | CgroupRmdir
  | CgroupRename
  | OomKill
  | TcpConnect
  | TcpAccept
  | TcpClose
  | TcpReset;

export interface DecodeStats {
  /** Records decoded into events. */
  decoded: number;
  /** Records skipped for any reason below (their sum). */
  malformed: number;
  /** A record running past the end of the batch, or bytes too short for a header. */
  truncated: number;
  /** A type number this decoder does not know. */
  unknownType: number;
  /** A known type whose size differs from its layout, or a size below the header. */
  sizeMismatch: number;
}

export function createDecodeStats(): DecodeStats {
  return { decoded: 0, malformed: 0, truncated: 0, unknownType: 0, sizeMismatch: 0 };
}

const ALIGN = 8;

/** Views of the current batch: 8-, 4- and 2-byte words, in host byte order (as the kernel writes). */
const NO_BYTES = new ArrayBuffer(0);
const EMPTY = Buffer.alloc(0);
let words: BigUint64Array<ArrayBufferLike> = new BigUint64Array(NO_BYTES);
let dwords: Uint32Array<ArrayBufferLike> = new Uint32Array(NO_BYTES);
let hwords: Uint16Array<ArrayBufferLike> = new Uint16Array(NO_BYTES);

/** Points the views at `buf` (or at an aligned copy when `buf` is not 8-aligned). */
function viewBatch(buf: Buffer): void {
  const len = buf.length;
  let backing: ArrayBufferLike = buf.buffer;
  let at = buf.byteOffset;
  if ((at & 7) !== 0) {
    const copy = new Uint8Array((len + 7) & ~7);
    copy.set(buf);
    backing = copy.buffer;
    at = 0;
  }
  // Each view covers every whole word of its size: a last record need not be padded.
  words = new BigUint64Array(backing, at, len >>> 3);
  dwords = new Uint32Array(backing, at, len >>> 2);
  hwords = new Uint16Array(backing, at, len >>> 1);
}

/** The u64 at byte offset `o` of the current batch (`o` is a multiple of 8). */
function u64(o: number): bigint {
  return words[o >>> 3] as bigint;
}

/** The u32 at byte offset `o` (a multiple of 4). */
function u32(o: number): number {
  return dwords[o >>> 2] as number;
}

/** The u16 at byte offset `o` (a multiple of 2). */
function u16(o: number): number {
  return hwords[o >>> 1] as number;
}

/**
 * Decodes every record of `buf` into `out` (returned), counting bad records in `stats`.
 * `records` (the count the source reported, if known) lets a batch cut short count every
 * record it lost, not just one. A well-formed record whose type `raw` marks (raw[type] ===
 * 1) goes into `out` as its byte offset in `buf`, for the RecordWriter.
 */
export function decodeBatch(
  buf: Buffer,
  stats?: DecodeStats,
  out?: KernelEvent[],
  records?: number,
): KernelEvent[];
export function decodeBatch(
  buf: Buffer,
  stats: DecodeStats,
  out: Array<KernelEvent | number>,
  records: number | undefined,
  raw: Uint8Array | undefined,
): Array<KernelEvent | number>;
export function decodeBatch(
  buf: Buffer,
  stats: DecodeStats = createDecodeStats(),
  out: Array<KernelEvent | number> = [],
  records?: number,
  raw?: Uint8Array,
): Array<KernelEvent | number> {
  const len = buf.length;
  let off = 0;
  let seen = 0;
  viewBatch(buf);
  while (off < len) {
    if (len - off < HEADER_SIZE) {
      lostTail(stats, records, seen);
      break;
    }
    const type = u16(off + H.fields.type.offset);
    const size = u32(off + H.fields.size.offset);
    seen++;
    if (size < HEADER_SIZE) {
      // The framing is gone: nothing after this can be trusted.
      stats.sizeMismatch++;
      stats.malformed++;
      lostTail(stats, records, seen, false);
      break;
    }
    if (size > len - off) {
      lostTail(stats, records, seen - 1);
      break;
    }
    const ev = decodeRecord(buf, off, type, size, stats, raw);
    if (ev !== undefined) {
      out.push(ev);
      stats.decoded++;
    }
    off += (size + ALIGN - 1) & ~(ALIGN - 1);
  }
  viewBatch(EMPTY); // don't keep the batch alive
  return out;
}

/** Counts the records lost when a batch ends (or its framing breaks) early. */
function lostTail(stats: DecodeStats, records: number | undefined, seen: number, countOne = true): void {
  const lost = records !== undefined && records > seen ? records - seen : countOne ? 1 : 0;
  stats.truncated += lost;
  stats.malformed += lost;
}

/**
 * A decode function with cumulative stats, shaped for the collector's source -> decode
 * stage: `(buf, records) => { events, malformed }`. With `rawTypes`, well-formed records of
 * those kernel types come out as their byte offsets in `buf` (see decodeBatch).
 */
export function createDecoder(): {
  decode: (buf: Buffer, records?: number) => { events: KernelEvent[]; malformed: number };
  stats: DecodeStats;
};
export function createDecoder(rawTypes: readonly number[]): {
  decode: (buf: Buffer, records?: number) => { events: Array<KernelEvent | number>; malformed: number };
  stats: DecodeStats;
};
export function createDecoder(rawTypes?: readonly number[]): {
  decode: (buf: Buffer, records?: number) => { events: Array<KernelEvent | number>; malformed: number };
  stats: DecodeStats;
} {
  const stats = createDecodeStats();
  let raw: Uint8Array | undefined;
  if (rawTypes !== undefined && rawTypes.length > 0) {
    raw = new Uint8Array(256);
    for (const t of rawTypes) raw[t] = 1;
  }
  return {
    stats,
    decode(buf, records) {
      const before = stats.malformed;
      const events = decodeBatch(buf, stats, [], records, raw);
      return { events, malformed: stats.malformed - before };
    },
  };
}

/**
 * The event of the record at `o`, or `o` itself when `raw` marks its type (a record the
 * RecordWriter encodes from the batch), or undefined for a bad record (counted).
 */
function decodeRecord(
  buf: Buffer,
  o: number,
  type: number,
  size: number,
  stats: DecodeStats,
  raw: Uint8Array | undefined,
): KernelEvent | number | undefined {
  const expected = RECORD_LAYOUT[type];
  if (expected === undefined) {
    stats.unknownType++;
    stats.malformed++;
    return undefined;
  }
  if (type === EVENT_TYPE.proc_exec ? !execSizeOk(o, size) : size !== expected.size) return mismatch(stats);
  if (raw !== undefined && raw[type] === 1) return o;
  switch (type) {
    case EVENT_TYPE.proc_exec:
      return procExec(buf, o);
    case EVENT_TYPE.proc_fork:
      return procFork(buf, o);
    case EVENT_TYPE.proc_exit:
      return procExit(buf, o);
    case EVENT_TYPE.cgroup_mkdir:
      return cgroupEvent(buf, o, 'cgroup_mkdir');
    case EVENT_TYPE.cgroup_rmdir:
      return cgroupEvent(buf, o, 'cgroup_rmdir');
    case EVENT_TYPE.cgroup_rename:
      return cgroupEvent(buf, o, 'cgroup_rename');
    case EVENT_TYPE.oom_kill:
      return oomKill(buf, o);
    case EVENT_TYPE.tcp_connect:
      return tcpConn(buf, o, 'tcp_connect');
    case EVENT_TYPE.tcp_accept:
      return tcpConn(buf, o, 'tcp_accept');
    case EVENT_TYPE.tcp_close:
      return tcpClose(buf, o);
    case EVENT_TYPE.tcp_reset:
      return tcpReset(buf, o);
    default:
      return memoryRelease(buf, o);
  }
}

/**
 * proc_exec is the one variable-size record: the fixed part, then argv up to the word that
 * holds its last byte (events.h KT_PROC_EXEC_SIZE). Older writers sent the whole struct.
 */
function execSizeOk(o: number, size: number): boolean {
  const used = size - EXEC_ARGS;
  return used >= 0 && used <= ARGS_LEN && u32(o + EXEC.fields.args_size.offset) <= used;
}

function mismatch(stats: DecodeStats): undefined {
  stats.sizeMismatch++;
  stats.malformed++;
  return undefined;
}

// ---- fields ----

const EXEC_ARGS = EXEC.fields.args.offset;
const TS = H.fields.ts_ns.offset;
const CGID = H.fields.cgroup_id.offset;
const PID = H.fields.pid.offset;
const TGID = H.fields.tgid.offset;
const FLAGS = H.fields.flags.offset;

// Buffer#toString(enc, start, end) normalizes its arguments and looks the encoding up on
// every call; its utf8Slice (long-standing, undocumented Node API) is the same decode.
type Utf8Slicer = Buffer & { utf8Slice(start: number, end: number): string };

/** A NUL-terminated string in a fixed-size field (the whole field if it has no NUL). */
function cstr(buf: Buffer, start: number, max: number): string {
  // A JS scan: the fields are short, and Buffer#indexOf is a native call that may search
  // far past the field when it has no NUL.
  const end = start + max;
  let nul = start;
  while (nul < end && buf[nul] !== 0) nul++;
  return (buf as Utf8Slicer).utf8Slice(start, nul);
}

/** NUL-separated argv in [start, start + size). A last piece without NUL (cut) is kept. */
function argv(buf: Buffer, start: number, size: number): string[] {
  const out: string[] = [];
  const end = start + Math.min(size, ARGS_LEN);
  let p = start;
  while (p < end) {
    let nul = buf.indexOf(0, p);
    if (nul < 0 || nul > end) nul = end;
    out.push((buf as Utf8Slicer).utf8Slice(p, nul));
    p = nul + 1;
  }
  return out;
}

function procExec(b: Buffer, o: number): ProcExec {
  const F = EXEC.fields;
  return {
    kind: 'proc_exec',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    ppid: u32(o + F.ppid.offset),
    uid: u32(o + F.uid.offset),
    gid: u32(o + F.gid.offset),
    argsCount: u32(o + F.args_count.offset),
    argsSize: u32(o + F.args_size.offset),
    comm: cstr(b, o + F.comm.offset, COMM_LEN),
    filename: cstr(b, o + F.filename.offset, FILENAME_LEN),
    args: argv(b, o + F.args.offset, u32(o + F.args_size.offset)),
  };
}

function procFork(b: Buffer, o: number): ProcFork {
  const F = FORK.fields;
  return {
    kind: 'proc_fork',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    parentPid: u32(o + F.parent_pid.offset),
    parentTgid: u32(o + F.parent_tgid.offset),
    childPid: u32(o + F.child_pid.offset),
    childTgid: u32(o + F.child_tgid.offset),
    comm: cstr(b, o + F.comm.offset, COMM_LEN),
  };
}

function procExit(b: Buffer, o: number): ProcExit {
  const F = EXIT.fields;
  return {
    kind: 'proc_exit',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    ppid: u32(o + F.ppid.offset),
    exitCode: u32(o + F.exit_code.offset),
    signal: u32(o + F.signal.offset),
    coreDumped: u32(o + F.core_dumped.offset),
    startNs: u64(o + F.start_ns.offset),
    cpuNs: u64(o + F.cpu_ns.offset),
    comm: cstr(b, o + F.comm.offset, COMM_LEN),
  };
}

function cgroupEvent<K extends 'cgroup_mkdir' | 'cgroup_rmdir' | 'cgroup_rename'>(
  b: Buffer,
  o: number,
  kind: K,
): CgroupMkdir | CgroupRmdir | CgroupRename {
  const F = CG.fields;
  return {
    kind,
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    level: u32(o + F.level.offset),
    hierarchyId: u32(o + F.hierarchy_id.offset),
    path: cstr(b, o + F.path.offset, PATH_LEN),
  };
}

function oomKill(b: Buffer, o: number): OomKill {
  const F = OOM.fields;
  return {
    kind: 'oom_kill',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    victimPid: u32(o + F.victim_pid.offset),
    victimUid: u32(o + F.victim_uid.offset),
    totalVmKb: u64(o + F.total_vm_kb.offset),
    anonRssKb: u64(o + F.anon_rss_kb.offset),
    fileRssKb: u64(o + F.file_rss_kb.offset),
    shmemRssKb: u64(o + F.shmem_rss_kb.offset),
    comm: cstr(b, o + F.comm.offset, COMM_LEN),
  };
}

function memoryRelease(b: Buffer, o: number): MemoryRelease {
  const F = MEMREL.fields;
  return {
    kind: 'memory_release',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    level: u32(o + F.level.offset),
    hierarchyId: u32(o + F.hierarchy_id.offset),
    path: cstr(b, o + F.path.offset, PATH_LEN),
    peakBytes: u64(o + F.peak_bytes.offset),
    currentBytes: u64(o + F.current_bytes.offset),
    limitBytes: u64(o + F.limit_bytes.offset),
    oomKills: u64(o + F.oom_kills.offset),
  };
}

const AF_INET = 2;
const AF_INET6 = 10;
const T = TCONN.fields; // the address block has the same offsets in all TCP records

function tcpConn<K extends 'tcp_connect' | 'tcp_accept'>(
  b: Buffer,
  o: number,
  kind: K,
): TcpConnect | TcpAccept {
  const family = u16(o + T.family.offset);
  return {
    kind,
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    family,
    sport: u16(o + T.sport.offset),
    dport: u16(o + T.dport.offset),
    saddr: ipText(b, o + T.saddr.offset, family),
    daddr: ipText(b, o + T.daddr.offset, family),
    sockCookie: u64(o + T.sock_cookie.offset),
  };
}

function tcpClose(b: Buffer, o: number): TcpClose {
  const F = TCLOSE.fields;
  const family = u16(o + T.family.offset);
  return {
    kind: 'tcp_close',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    family,
    sport: u16(o + T.sport.offset),
    dport: u16(o + T.dport.offset),
    saddr: ipText(b, o + T.saddr.offset, family),
    daddr: ipText(b, o + T.daddr.offset, family),
    sockCookie: u64(o + T.sock_cookie.offset),
    bytesSent: u64(o + F.bytes_sent.offset),
    bytesReceived: u64(o + F.bytes_received.offset),
    durationNs: u64(o + F.duration_ns.offset),
    retransmits: u32(o + F.retransmits.offset),
    resets: u32(o + F.resets.offset),
  };
}

function tcpReset(b: Buffer, o: number): TcpReset {
  const family = u16(o + T.family.offset);
  return {
    kind: 'tcp_reset',
    tsNs: u64(o + TS),
    cgroupId: u64(o + CGID),
    pid: u32(o + PID),
    tgid: u32(o + TGID),
    flags: u16(o + FLAGS),
    family,
    sport: u16(o + T.sport.offset),
    dport: u16(o + T.dport.offset),
    saddr: ipText(b, o + T.saddr.offset, family),
    daddr: ipText(b, o + T.daddr.offset, family),
    sockCookie: u64(o + T.sock_cookie.offset),
    direction: u32(o + TRESET.fields.direction.offset),
  };
}

/**
 * Address bytes as text: IPv4 dotted quad, IPv6 in RFC 5952 form (lowercase, the longest
 * run of two or more zero groups as "::", IPv4-mapped as ::ffff:a.b.c.d).
 */
export function ipText(b: Buffer, o: number, family: number): string {
  if (family === AF_INET) return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  if (family !== AF_INET6) return '';
  // IPv4-mapped: 80 zero bits, 16 one bits.
  let mapped = b.readUInt16BE(o + 10) === 0xffff;
  for (let i = 0; mapped && i < 10; i++) if (b[o + i] !== 0) mapped = false;
  if (mapped) return `::ffff:${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  // Longest run of zero groups (first one on ties), only if >= 2 groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (b.readUInt16BE(o + 2 * i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && b.readUInt16BE(o + 2 * j) === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += '::';
      i += bestLen - 1;
      continue;
    }
    if (s !== '' && !s.endsWith(':')) s += ':';
    s += b.readUInt16BE(o + 2 * i).toString(16);
  }
  return s;
}
