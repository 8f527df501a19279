// common/mapped-pages.ts: which mappings are handed back (read-only ones of exactly the named
// file), the smaps arithmetic, and the addon's madvise against the real kernel. That the
// engine's pages really leave memory, and that the store works after, is in
// test/integration/engine-pages.test.ts.
import { describe, expect, it } from 'vitest';
import { pageOutMappedFile, parseMaps, residentBytesOfFile } from '../../common/mapped-pages.js';
import { loadCodecAddon } from '../../common/native-codec.js';

const MAPS = [
  '7f0000000000-7f0000400000 r--p 00000000 fe:00 1234   /opt/x/libchdb.so',
  '7f0000400000-7f0002000000 r-xp 00400000 fe:00 1234   /opt/x/libchdb.so',
  '7f0002000000-7f0002100000 rw-p 02000000 fe:00 1234   /opt/x/libchdb.so',
  '7f0002100000-7f0002200000 r--p 00000000 fe:00 99     /opt/x/libchdb.so.bak',
  '7f0002200000-7f0002300000 rw-p 00000000 00:00 0',
  '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]',
  'not a mapping line',
].join('\n');

describe('parseMaps', () => {
  it('reads address range, permissions and path of every mapping line', () => {
    const maps = parseMaps(MAPS);
    expect(maps).toHaveLength(6);
    expect(maps[1]).toEqual({
      start: 0x7f0000400000n,
      end: 0x7f0002000000n,
      perms: 'r-xp',
      path: '/opt/x/libchdb.so',
    });
    expect(maps[4]?.path).toBe('');
    expect(maps[5]?.path).toBe('[stack]');
  });
});

describe('residentBytesOfFile', () => {
  it("sums the Rss of the file's mappings only", () => {
    const smaps = [
      '7f0000000000-7f0000400000 r--p 00000000 fe:00 1234   /opt/x/libchdb.so',
      'Size:               4096 kB',
      'Rss:                1000 kB',
      '7f0000400000-7f0002000000 r-xp 00400000 fe:00 1234   /opt/x/libchdb.so',
      'Rss:                 24 kB',
      '7f0002100000-7f0002200000 r--p 00000000 fe:00 99     /opt/x/libchdb.so.bak',
      'Rss:                500 kB',
      '7f0002200000-7f0002300000 rw-p 00000000 00:00 0',
      'Rss:                700 kB',
    ].join('\n');
    expect(residentBytesOfFile('libchdb.so', smaps)).toBe(1024 * 1024);
    expect(residentBytesOfFile('libnothing.so', smaps)).toBe(0);
  });
});

describe('pageOutMappedFile', () => {
  it('advises the read-only mappings of exactly that file, never a writable one', () => {
    const advised: Array<[bigint, number]> = [];
    const result = pageOutMappedFile('libchdb.so', { pageOut: (a, n) => advised.push([a, n]) }, () => MAPS);
    expect(advised).toEqual([
      [0x7f0000000000n, 0x400000],
      [0x7f0000400000n, 0x1c00000],
    ]);
    expect(result.mappings).toBe(2);
    expect(result.advisedBytes).toBe(0x2000000);
  });

  it("passes on the kernel's refusal", () => {
    const refuse = () => {
      throw Object.assign(new Error('madvise(MADV_PAGEOUT): Invalid argument'), { errno: 22 });
    };
    expect(() => pageOutMappedFile('libchdb.so', { pageOut: refuse }, () => MAPS)).toThrow(
      /Invalid argument/,
    );
  });
});

describe('the addon against the kernel', () => {
  const codec = loadCodecAddon();

  it('pages out a library this process maps (libc): pages shared with other processes stay', () => {
    const result = pageOutMappedFile('libc.so.6', codec);
    expect(result.mappings).toBeGreaterThan(0);
    expect(result.residentAfter).toBeLessThanOrEqual(result.residentBefore);
  });

  it('refuses an address that is not page-aligned with EINVAL, and bad arguments with a TypeError', () => {
    expect(() => codec.pageOut(1n, 4096)).toThrow(expect.objectContaining({ errno: 22 }));
    expect(() => (codec.pageOut as (...a: unknown[]) => void)(4096, 4096)).toThrow(TypeError);
    expect(() => codec.pageOut(4096n, 0)).toThrow(RangeError);
  });
});
