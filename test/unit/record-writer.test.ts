// The RecordWriter's items against avsc's encoding of the decoded events, byte for byte:
// the golden kernel records, a synthetic stream of every kind, and records with the edges
// the fast paths skip (non-ASCII text, IPv6, values past 2^31 and 2^63, cut argv).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syntheticBatch, syntheticState, writeRecord } from '../../bench/collector/synthetic.js';
import { fixedBootClock } from '../../collector/src/clock.js';
import {
  type KtrailEvent as CollectorEvent,
  createCollector,
  type EventSource,
  type RawRecord,
} from '../../collector/src/collector.js';
import { createDecoder, createDecodeStats, decodeBatch } from '../../collector/src/kernel/decode.js';
import { EVENT_TYPE, KT_HEADER, KT_PROC_EXEC, KT_TCP_CLOSE } from '../../collector/src/kernel/layout.js';
import { createRecordWriter } from '../../collector/src/kernel/record-writer.js';
import { PASS_THROUGH_KINDS } from '../../collector/src/kernel-events.js';
import { REPO_ROOT } from '../../common/repo-root.js';
import { createEventBatchFramer } from '../../schemas/codec.js';
import type { KtrailEvent } from '../../schemas/types.js';

const framer = createEventBatchFramer();
const writer = createRecordWriter(PASS_THROUGH_KINDS);

/** Every record of `buf`: the writer's item and avsc's item of the decoded event. */
function both(buf: Buffer): Array<{ kind: string; ours: Buffer; avsc: Buffer }> {
  const decoded = decodeBatch(buf, createDecodeStats());
  const offsets = createDecoder(writer.types).decode(buf).events;
  expect(offsets).toHaveLength(decoded.length);
  writer.setBatch(buf);
  return decoded.map((event, i) => {
    const at = offsets[i];
    const out = Buffer.alloc(16 * 1024);
    const theirs = Buffer.alloc(16 * 1024);
    const avsc = theirs.subarray(0, framer.writeEvent(event as KtrailEvent, theirs, 0));
    if (typeof at !== 'number') return { kind: event.kind, ours: avsc, avsc }; // not a raw kind
    expect(writer.kindOf(at)).toBe(event.kind);
    expect(writer.kindOfType(writer.typeOf(at))).toBe(event.kind);
    return { kind: event.kind, ours: out.subarray(0, writer.write(at, out, 0)), avsc };
  });
}

describe('RecordWriter', () => {
  it('covers every kind the kernel-events stage passes on, and no other', () => {
    const kinds = writer.types.map((t) => Object.entries(EVENT_TYPE).find(([, n]) => n === t)?.[0]);
    expect(kinds.sort()).toEqual([...PASS_THROUGH_KINDS].sort());
  });

  it('writes the golden kernel records as avsc writes their decoded events', () => {
    const dir = join(REPO_ROOT, 'test/fixtures/records');
    for (const kind of PASS_THROUGH_KINDS) {
      const [item] = both(readFileSync(join(dir, `${kind}.bin`)));
      expect(item?.kind).toBe(kind);
      expect(item?.ours.toString('hex')).toBe(item?.avsc.toString('hex'));
    }
  });

  it('writes a synthetic stream of every kind as avsc does, malformed records skipped', () => {
    const s = syntheticState(7);
    const seen = new Set<string>();
    for (let n = 0; n < 5; n++) {
      for (const item of both(syntheticBatch(1_000, s, 97).buf)) {
        seen.add(item.kind);
        expect(item.ours.equals(item.avsc), item.kind).toBe(true);
      }
    }
    for (const kind of PASS_THROUGH_KINDS) expect(seen).toContain(kind);
  });

  it('matches avsc on non-ASCII text, IPv6, large numbers and cut argv', () => {
    const s = syntheticState(3);
    const buf = Buffer.alloc(8 * KT_PROC_EXEC.size);
    let off = 0;
    const F = KT_TCP_CLOSE.fields;
    const H = KT_HEADER.fields;
    const tcp = (family: number, addr: number[]): void => {
      const at = off;
      off += writeRecord(buf, off, 'tcp_close', s);
      buf.writeUInt16LE(family, at + F.family.offset);
      Buffer.from(addr).copy(buf, at + F.saddr.offset);
      buf.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, at + F.bytes_sent.offset); // >= 2^63
      buf.writeUInt32LE(0xffff_fff0, at + F.retransmits.offset); // >= 2^31
      buf.writeUInt32LE(0x8000_0000, at + H.pid.offset);
      buf.writeUInt16LE(0xffff, at + H.flags.offset);
    };
    tcp(10, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    tcp(10, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]); // IPv4-mapped
    tcp(7, [1, 2, 3, 4]); // unknown family: empty text
    tcp(2, [255, 0, 10, 100]);
    const exec = (args: Buffer, comm: Buffer): void => {
      const at = off;
      off += writeRecord(buf, off, 'proc_exec', s);
      const E = KT_PROC_EXEC.fields;
      buf.fill(0, at + E.args.offset, at + E.args.offset + 1024);
      args.copy(buf, at + E.args.offset);
      buf.writeUInt32LE(args.length, at + E.args_size.offset);
      buf.fill(0, at + E.comm.offset, at + E.comm.offset + 16);
      comm.copy(buf, at + E.comm.offset);
    };
    exec(Buffer.from('sh\0-c\0cut-without-nul', 'latin1'), Buffer.from('caf\xc3\xa9', 'latin1'));
    exec(Buffer.alloc(0), Buffer.from([0xff, 0xfe, 0x41, 0x80])); // invalid UTF-8, no args
    exec(Buffer.from('\0\0a\0', 'latin1'), Buffer.from('0123456789abcdef', 'latin1')); // no NUL in comm
    for (const item of both(buf.subarray(0, off)))
      expect(item.ours.toString('hex'), item.kind).toBe(item.avsc.toString('hex'));
  });

  it('reports the bytes missing when the item does not fit, and writes nothing past the end', () => {
    const s = syntheticState(5);
    const buf = Buffer.alloc(KT_PROC_EXEC.size);
    const size = writeRecord(buf, 0, 'proc_exec', s);
    writer.setBatch(buf.subarray(0, size));
    const full = Buffer.alloc(4096);
    const end = writer.write(0, full, 0);
    expect(end).toBeGreaterThan(20);
    const small = Buffer.alloc(end + 10);
    expect(writer.write(0, small, 20)).toBe(small.length - (20 + end)); // minus the bytes missing
    expect(small.every((b) => b === 0)).toBe(true);
    expect(writer.write(0, small, 10)).toBe(10 + end);
    expect(small.subarray(10, 10 + end).equals(full.subarray(0, end))).toBe(true);
  });

  it('lets the collector count raw records by kind, as it counts decoded events', async () => {
    const batches = [0, 1, 2].map(() => syntheticBatch(2_000, syntheticState(7), 97));
    const expected: Record<string, number> = {};
    for (const b of batches)
      for (const e of decodeBatch(b.buf, createDecodeStats())) expected[e.kind] = (expected[e.kind] ?? 0) + 1;
    const source: EventSource = {
      start(onBatch) {
        for (const b of batches) onBatch(b.buf, b.records);
      },
      stop() {},
    };
    const decoder = createDecoder(writer.types);
    const collector = createCollector<CollectorEvent | RawRecord, never>({
      node: 'n',
      collectorVersion: 'test',
      settings: {
        batchMaxEvents: 100_000,
        batchMaxBytes: 900_000,
        batchMaxMs: 10_000,
        bufferMaxBytes: 1 << 24,
        bufferMaxMessages: 100,
        statsIntervalMs: 60_000,
        shutdownDeadlineMs: 5_000,
      },
      topics: { events: 'e', containers: 'c', stats: 's' },
      clock: fixedBootClock('00000000-0000-4000-8000-0000000000cc', 0n),
      source,
      decode: (buf, count) => {
        writer.setBatch(buf);
        return decoder.decode(buf, count);
      },
      eventBatch: {
        writeEvent: (e, buf, pos) =>
          typeof e === 'number' ? writer.write(e, buf, pos) : framer.writeEvent(e as KtrailEvent, buf, pos),
        frame: framer.frame,
        typeOf: writer.typeOf,
        kindOfType: writer.kindOfType,
      },
      encodeStats: () => Buffer.alloc(0),
      sink: { send: async () => ({ status: 'success' }), close: async () => {} },
    });
    await collector.start();
    const final = await collector.stop();
    const { malformed, ...byKind } = final.capturedByKind;
    expect(byKind).toEqual(expected);
    expect(malformed).toBe(batches.reduce((n, b) => n + b.records - b.valid, 0));
    expect(final.unaccounted).toBe(0);
  });
});
