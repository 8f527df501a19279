// Malformed input to the decoder is counted and skipped, never a crash (issue 3 item 7):
// truncated records, unknown types, sizes that do not match the type, broken framing,
// and random garbage.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDecoder, createDecodeStats, decodeBatch, ipText } from '../../collector/src/kernel/decode.js';
import { REPO_ROOT } from '../../common/repo-root.js';

const golden = (kind: string): Buffer =>
  readFileSync(join(REPO_ROOT, 'test/fixtures/records', `${kind}.bin`));
const exit = golden('proc_exit'); // 80 bytes
const fork = golden('proc_fork'); // 64 bytes

function withHeader(base: Buffer, type: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  base.copy(b, 0, 0, Math.min(size, base.length));
  b.writeUInt16LE(type, 0);
  b.writeUInt32LE(size, 4);
  return b;
}

describe('decoder on malformed input', () => {
  it('a truncated last record is counted; the records before it are kept', () => {
    const stats = createDecodeStats();
    const events = decodeBatch(Buffer.concat([fork, exit.subarray(0, 50)]), stats, [], 2);
    expect(events.map((e) => e.kind)).toEqual(['proc_fork']);
    expect(stats).toMatchObject({ decoded: 1, truncated: 1, malformed: 1 });
  });

  it('bytes too short for a header are counted as truncated', () => {
    const stats = createDecodeStats();
    expect(decodeBatch(Buffer.concat([fork, Buffer.alloc(12)]), stats)).toHaveLength(1);
    expect(stats).toMatchObject({ truncated: 1, malformed: 1 });
  });

  it('an unknown type is skipped by its size and decoding goes on', () => {
    const stats = createDecodeStats();
    const events = decodeBatch(
      Buffer.concat([withHeader(fork, 63, 48), exit, withHeader(fork, 999, 32), fork]),
      stats,
    );
    expect(events.map((e) => e.kind)).toEqual(['proc_exit', 'proc_fork']);
    expect(stats).toMatchObject({ decoded: 2, unknownType: 2, malformed: 2 });
  });

  it('a known type with the wrong size is skipped, not misread', () => {
    const stats = createDecodeStats();
    // proc_exit is 80 bytes; one claiming 88 (framing intact) and one claiming 72.
    const events = decodeBatch(
      Buffer.concat([withHeader(exit, 3, 88), withHeader(exit, 3, 72), fork]),
      stats,
    );
    expect(events.map((e) => e.kind)).toEqual(['proc_fork']);
    expect(stats).toMatchObject({ sizeMismatch: 2, malformed: 2, decoded: 1 });
  });

  it('proc_exec is as long as its argv: any size that holds args_size decodes, others do not', () => {
    const exec = golden('proc_exec');
    const used = exec.readUInt32LE(48); // args_size
    const argsAt = 328;
    const whole = Buffer.alloc(1352);
    exec.copy(whole, 0, 0, Math.min(exec.length, argsAt + used));
    whole.writeUInt32LE(1352, 4); // the full struct, as older writers sent it
    const trimmed = withHeader(whole, 1, argsAt + ((used + 7) & ~7));
    const stats = createDecodeStats();
    const [a, b] = decodeBatch(Buffer.concat([whole, trimmed]), stats);
    expect(stats).toMatchObject({ decoded: 2, malformed: 0 });
    expect(a).toEqual(b);
    expect(a).toMatchObject({ kind: 'proc_exec', argsSize: used });
    // Shorter than its argv, shorter than the fixed part, longer than the struct.
    const bad = [
      withHeader(whole, 1, argsAt + ((used - 1) & ~7)),
      withHeader(whole, 1, 320),
      withHeader(whole, 1, 1360),
    ];
    const badStats = createDecodeStats();
    expect(decodeBatch(Buffer.concat([...bad, fork]), badStats).map((e) => e.kind)).toEqual(['proc_fork']);
    expect(badStats).toMatchObject({ sizeMismatch: 3, malformed: 3 });
  });

  it('a size below the header breaks framing: the rest of the batch is counted lost', () => {
    const stats = createDecodeStats();
    const bad = withHeader(fork, 2, 64);
    bad.writeUInt32LE(8, 4);
    const events = decodeBatch(Buffer.concat([fork, bad, fork, fork]), stats, [], 4);
    expect(events).toHaveLength(1);
    expect(stats.malformed).toBe(3);
    expect(stats.sizeMismatch).toBe(1);
  });

  it('records padded to 8 bytes are framed by size rounded up', () => {
    const odd = withHeader(Buffer.alloc(0), 63, 36); // unknown, size 36 -> occupies 40
    const stats = createDecodeStats();
    const events = decodeBatch(Buffer.concat([odd, Buffer.alloc(4), fork]), stats);
    expect(events.map((e) => e.kind)).toEqual(['proc_fork']);
  });

  it('random garbage and mutated records never throw, and every byte is accounted', () => {
    const { decode, stats } = createDecoder();
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.concat([fork, exit, golden('tcp_close')]);
      for (let k = 0; k < 1 + (rnd() % 8); k++) b[rnd() % b.length] = rnd() & 0xff;
      const cut = b.subarray(0, rnd() % (b.length + 1));
      expect(() => decode(cut, 3)).not.toThrow();
    }
    for (let i = 0; i < 200; i++) {
      const g = Buffer.alloc(rnd() % 4096);
      for (let k = 0; k < g.length; k++) g[k] = rnd() & 0xff;
      expect(() => decode(g)).not.toThrow();
    }
    expect(stats.decoded + stats.malformed).toBeGreaterThan(0);
    expect(stats.malformed).toBe(stats.truncated + stats.unknownType + stats.sizeMismatch);
  });
});

describe('address text', () => {
  const v6 = (hex: string) => Buffer.from(hex.replace(/:/g, ''), 'hex');
  it.each([
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '2001:db8::ff00:42:8329'],
    ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'], // one zero group: no ::
    ['2001:0000:0000:0001:0000:0000:0000:0001', '2001:0:0:1::1'], // longest run wins
    ['0000:0000:0000:0000:0000:ffff:7f00:0001', '::ffff:127.0.0.1'],
    ['0000:0000:0000:0000:0000:0000:0000:0000', '::'],
    ['fe80:0000:0000:0000:0000:0000:0000:0000', 'fe80::'],
  ])('%s -> %s (RFC 5952)', (hex, text) => {
    expect(ipText(v6(hex), 0, 10)).toBe(text);
  });
  it('IPv4 is a dotted quad from the first 4 bytes', () => {
    expect(ipText(Buffer.from([10, 0, 0, 254, 9, 9]), 0, 2)).toBe('10.0.0.254');
  });
});
