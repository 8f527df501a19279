// Synthetic but realistic ring-buffer records, laid out exactly as bpf/include/events.h
// (offsets from collector/src/kernel/layout.ts), written as capture files the replay source
// reads. Used by the collector benchmark and its integration tests, which run without root.
//
// The mix follows what a busy container node produces: mostly TCP lifecycle, then process
// lifecycle, a few cgroup and OOM events. Values are deterministic per seed.
//
//   npx tsx bench/collector/synthetic.ts OUT.ktcap [records=1000000] [perBatch=512]
import { hostname } from 'node:os';
import { createCaptureWriter } from '../../collector/src/kernel/capture.js';
import {
  EVENT_TYPE,
  KT_CGROUP_EVENT,
  KT_HEADER,
  KT_OOM_KILL,
  KT_PROC_EXEC,
  KT_PROC_EXIT,
  KT_PROC_FORK,
  KT_TCP_CLOSE,
  KT_TCP_CONN,
  KT_TCP_RESET,
  type StructLayout,
} from '../../collector/src/kernel/layout.js';

type Kind = keyof typeof EVENT_TYPE;

/** Share of each kind in the stream (sums to 100). */
export const MIX: ReadonlyArray<[Kind, number]> = [
  ['tcp_close', 28],
  ['tcp_connect', 14],
  ['tcp_accept', 14],
  ['proc_fork', 11],
  ['proc_exit', 11],
  ['proc_exec', 8],
  ['tcp_reset', 6],
  ['cgroup_mkdir', 3],
  ['cgroup_rmdir', 3],
  ['oom_kill', 2],
];

const LAYOUT: Record<string, StructLayout> = {
  proc_exec: KT_PROC_EXEC,
  proc_fork: KT_PROC_FORK,
  proc_exit: KT_PROC_EXIT,
  cgroup_mkdir: KT_CGROUP_EVENT,
  cgroup_rmdir: KT_CGROUP_EVENT,
  oom_kill: KT_OOM_KILL,
  tcp_connect: KT_TCP_CONN,
  tcp_accept: KT_TCP_CONN,
  tcp_close: KT_TCP_CLOSE,
  tcp_reset: KT_TCP_RESET,
};

const COMMS = ['nginx', 'postgres', 'java', 'python3', 'node', 'envoy', 'sh', 'curl'];
const BINARIES = [
  '/usr/sbin/nginx',
  '/usr/bin/python3.11',
  '/usr/local/bin/node',
  '/bin/sh',
  '/usr/bin/curl',
];

export interface SyntheticState {
  seed: number;
  tsNs: bigint;
  pid: number;
  cookie: bigint;
  /** Records written so far (all batches): malformedEvery counts across batches. */
  index: number;
  /** Container cgroups the events belong to. */
  cgroups: bigint[];
}

export function syntheticState(seed = 1): SyntheticState {
  return {
    seed,
    tsNs: 1_000_000_000_000n,
    pid: 1000,
    cookie: 1n,
    index: 0,
    cgroups: Array.from({ length: 40 }, (_, i) => 10_000n + BigInt(i) * 17n),
  };
}

function rnd(s: SyntheticState): number {
  // xorshift32: fast, deterministic.
  let x = s.seed | 0 || 1;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  s.seed = x;
  return (x >>> 0) / 4294967296;
}

const CUMULATIVE: Array<[Kind, number]> = (() => {
  let sum = 0;
  return MIX.map(([k, w]) => {
    sum += w;
    return [k, sum / 100] as [Kind, number];
  });
})();

function pickKind(s: SyntheticState): Kind {
  const r = rnd(s);
  for (const [k, c] of CUMULATIVE) if (r < c) return k;
  return 'tcp_close';
}

function writeText(buf: Buffer, at: number, max: number, text: string): void {
  buf.write(text.slice(0, max - 1), at, 'latin1');
}

/** Writes one record of `kind` at `off`; returns its size (already a multiple of 8). */
export function writeRecord(buf: Buffer, off: number, kind: Kind, s: SyntheticState): number {
  const layout = LAYOUT[kind] as StructLayout;
  const size = layout.size;
  buf.fill(0, off, off + size);
  const h = KT_HEADER.fields;
  s.tsNs += BigInt(500 + Math.floor(rnd(s) * 5_000));
  const cgroupId = s.cgroups[Math.floor(rnd(s) * s.cgroups.length)] as bigint;
  const pid = s.pid + Math.floor(rnd(s) * 500);
  buf.writeUInt16LE(EVENT_TYPE[kind], off + h.type.offset);
  buf.writeUInt32LE(size, off + h.size.offset);
  buf.writeBigUInt64LE(s.tsNs, off + h.ts_ns.offset);
  buf.writeBigUInt64LE(cgroupId, off + h.cgroup_id.offset);
  buf.writeUInt32LE(pid, off + h.pid.offset);
  buf.writeUInt32LE(pid, off + h.tgid.offset);
  const comm = COMMS[Math.floor(rnd(s) * COMMS.length)] as string;
  const F = layout.fields as Record<string, { offset: number; size: number }>;
  const at = (name: string): number => off + (F[name] as { offset: number }).offset;
  switch (kind) {
    case 'proc_exec': {
      const bin = BINARIES[Math.floor(rnd(s) * BINARIES.length)] as string;
      const args = [bin.slice(bin.lastIndexOf('/') + 1), '--config', `/etc/app/${pid}.conf`, '-v'];
      const argBytes = Buffer.from(`${args.join('\0')}\0`, 'latin1');
      buf.writeUInt32LE(pid - 1, at('ppid'));
      buf.writeUInt32LE(1000, at('uid'));
      buf.writeUInt32LE(1000, at('gid'));
      buf.writeUInt32LE(args.length, at('args_count'));
      buf.writeUInt32LE(argBytes.length, at('args_size'));
      writeText(buf, at('comm'), 16, comm);
      writeText(buf, at('filename'), 256, bin);
      argBytes.copy(buf, at('args'));
      break;
    }
    case 'proc_fork':
      buf.writeUInt32LE(pid, at('parent_pid'));
      buf.writeUInt32LE(pid, at('parent_tgid'));
      buf.writeUInt32LE(pid + 1, at('child_pid'));
      buf.writeUInt32LE(pid + 1, at('child_tgid'));
      writeText(buf, at('comm'), 16, comm);
      break;
    case 'proc_exit':
      buf.writeUInt32LE(pid - 1, at('ppid'));
      buf.writeUInt32LE(rnd(s) < 0.9 ? 0 : 1, at('exit_code'));
      buf.writeBigUInt64LE(s.tsNs - 50_000_000n, at('start_ns'));
      buf.writeBigUInt64LE(BigInt(Math.floor(rnd(s) * 1e8)), at('cpu_ns'));
      writeText(buf, at('comm'), 16, comm);
      break;
    case 'cgroup_mkdir':
    case 'cgroup_rmdir':
      buf.writeUInt32LE(2, at('level'));
      writeText(buf, at('path'), 256, `/docker/${cgroupId.toString(16).padStart(64, 'a')}`);
      break;
    case 'oom_kill':
      buf.writeUInt32LE(pid, at('victim_pid'));
      buf.writeBigUInt64LE(512_000n, at('total_vm_kb'));
      buf.writeBigUInt64LE(256_000n, at('anon_rss_kb'));
      writeText(buf, at('comm'), 16, comm);
      break;
    default: {
      // TCP: IPv4 addresses in the first 4 bytes of the 16-byte fields.
      buf.writeUInt16LE(2, at('family'));
      buf.writeUInt16LE(30_000 + Math.floor(rnd(s) * 30_000), at('sport'));
      buf.writeUInt16LE([80, 443, 5432, 6379][Math.floor(rnd(s) * 4)] as number, at('dport'));
      buf.writeUInt32BE(0x0a000000 + Math.floor(rnd(s) * 65_536), at('saddr'));
      buf.writeUInt32BE(0x0a010000 + Math.floor(rnd(s) * 65_536), at('daddr'));
      s.cookie++;
      buf.writeBigUInt64LE(s.cookie, at('sock_cookie'));
      if (kind === 'tcp_close') {
        buf.writeBigUInt64LE(BigInt(Math.floor(rnd(s) * 1e6)), at('bytes_sent'));
        buf.writeBigUInt64LE(BigInt(Math.floor(rnd(s) * 1e7)), at('bytes_received'));
        buf.writeBigUInt64LE(BigInt(Math.floor(rnd(s) * 1e9)), at('duration_ns'));
      } else if (kind === 'tcp_reset') buf.writeUInt32LE(rnd(s) < 0.5 ? 0 : 1, at('direction'));
    }
  }
  return size;
}

/** A record of an unknown type (999): well framed, so the decoder skips just this one. */
export function writeMalformed(buf: Buffer, off: number): number {
  buf.fill(0, off, off + 40);
  buf.writeUInt16LE(999, off);
  buf.writeUInt32LE(40, off + 4);
  return 40;
}

export interface SyntheticBatch {
  buf: Buffer;
  records: number;
  /** Records of a known kind (the rest are malformed on purpose). */
  valid: number;
}

/** One addon-style batch of `count` records; every malformedEvery-th record is malformed. */
export function syntheticBatch(count: number, s: SyntheticState, malformedEvery = 0): SyntheticBatch {
  const buf = Buffer.alloc(count * KT_PROC_EXEC.size);
  let off = 0;
  let valid = 0;
  for (let i = 0; i < count; i++) {
    s.index++;
    if (malformedEvery > 0 && s.index % malformedEvery === 0) off += writeMalformed(buf, off);
    else {
      off += writeRecord(buf, off, pickKind(s), s);
      valid++;
    }
  }
  return { buf: buf.subarray(0, off), records: count, valid };
}

export interface SyntheticCaptureOptions {
  records: number;
  perBatch?: number;
  malformedEvery?: number;
  seed?: number;
  bootId?: string;
}

/** Writes a capture file; returns how many records (and valid ones) it holds. */
export async function writeSyntheticCapture(
  path: string,
  options: SyntheticCaptureOptions,
): Promise<{ records: number; valid: number; bytes: number; batches: number }> {
  const perBatch = options.perBatch ?? 512;
  const s = syntheticState(options.seed ?? 1);
  const writer = createCaptureWriter(path, {
    startWallNs: BigInt(Date.now()) * 1_000_000n,
    wallMinusBootNs: BigInt(Date.now()) * 1_000_000n - s.tsNs,
    bootId: options.bootId ?? '00000000-0000-4000-8000-000000000001',
    host: hostname(),
  });
  let left = options.records;
  let valid = 0;
  let bytes = 0;
  while (left > 0) {
    const n = Math.min(perBatch, left);
    const batch = syntheticBatch(n, s, options.malformedEvery ?? 0);
    valid += batch.valid;
    bytes += batch.buf.length;
    left -= n;
    if (!writer.write(batch.buf, n)) await new Promise<void>((r) => setImmediate(r));
  }
  await writer.close();
  return { records: options.records, valid, bytes, batches: writer.batches };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [out, records = '1000000', perBatch = '512'] = process.argv.slice(2);
  if (!out) {
    console.error('usage: tsx bench/collector/synthetic.ts OUT.ktcap [records] [perBatch]');
    process.exit(2);
  }
  const r = await writeSyntheticCapture(out, { records: Number(records), perBatch: Number(perBatch) });
  console.log(`wrote ${out}: ${r.records} records in ${r.batches} batches, ${r.bytes} bytes of records`);
}
