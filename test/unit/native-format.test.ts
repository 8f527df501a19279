// The Native block encoder without the engine: exact 64-bit arithmetic, the byte layout of a
// small block, and every reason it must refuse a batch (the writer then sends JSONEachRow).
// Byte equality with the engine's own Native output is in test/integration/clickhouse-native-format.test.ts.
import { describe, expect, it } from 'vitest';
import {
  encodeNativeBlock,
  NativeValueError,
  writeGiga,
} from '../../processor/src/clickhouse/native-format.js';

const types = new Map([
  ['a', 'UInt64'],
  ['s', 'LowCardinality(String)'],
  ['str', 'String'],
  ['t', "DateTime64(9, 'UTC')"],
  ['x', 'Array(UInt64)'],
  ['u8', 'UInt8'],
  ['m', 'Map(String, String)'],
]);

function u64At(buf: Buffer, pos: number): bigint {
  return buf.readBigUInt64LE(pos);
}

describe('writeGiga', () => {
  it('writes high * 1e9 + low exactly over the whole u64 range', () => {
    const buf = Buffer.alloc(8);
    const cases: Array<[number, number]> = [
      [0, 0],
      [0, 999_999_999],
      [1, 0],
      [1_764_072_000, 123_456_789], // a 2026 timestamp in ns
      [9_223_372_035, 854_775_807], // Int64 max
      [18_446_744_073, 709_551_615], // u64 max
      [4_294_967_295, 999_999_999],
      [65_535, 1],
      [65_536, 1],
    ];
    for (let i = 0; i < 2000; i++)
      cases.push([Math.floor(Math.random() * 18_446_744_073), Math.floor(Math.random() * 1e9)]);
    for (const [high, low] of cases) {
      writeGiga(buf, 0, high, low);
      expect(u64At(buf, 0)).toBe(BigInt(high) * 1_000_000_000n + BigInt(low));
    }
  });
});

describe('encodeNativeBlock', () => {
  it('lays out a block as columns, rows, then name, type and data per column', () => {
    const enc = encodeNativeBlock(
      [
        { a: '7', s: 'x' },
        { a: 18_446_744_073_709_551_615n, s: 'é' },
      ],
      types,
    );
    expect(enc?.columns).toEqual(['a', 's']);
    const b = enc?.block as Buffer;
    let p = 0;
    expect(b[p++]).toBe(2); // columns
    expect(b[p++]).toBe(2); // rows
    expect(b.subarray(p, p + 9).toString('latin1')).toBe('\x01a\x06UInt64');
    p += 9;
    expect(u64At(b, p)).toBe(7n);
    expect(u64At(b, p + 8)).toBe(18_446_744_073_709_551_615n);
    p += 16;
    // LowCardinality(String): version, flags, the dictionary ('' first), then UInt8 indexes.
    expect(b.subarray(p, p + 25).toString('latin1')).toBe('\x01s\x16LowCardinality(String)');
    p += 25;
    expect(u64At(b, p)).toBe(1n); // shared dictionaries with additional keys
    expect(u64At(b, p + 8)).toBe(0x600n); // has additional keys | update dictionary | UInt8
    expect(u64At(b, p + 16)).toBe(3n); // keys
    p += 24;
    expect([...b.subarray(p, p + 6)]).toEqual([0, 1, 0x78, 2, 0xc3, 0xa9]); // '', 'x', 'é'
    p += 6;
    expect(u64At(b, p)).toBe(2n); // rows
    expect([...b.subarray(p + 8)]).toEqual([1, 2]);
  });

  it('widens LowCardinality indexes past 256 and 65,536 keys, and repeats none', () => {
    for (const [distinct, width, flag] of [
      [255, 1, 0n],
      [256, 2, 1n],
      [70_000, 4, 2n],
    ] as const) {
      const rows = Array.from({ length: distinct * 2 }, (_, i) => ({ s: `v${i % distinct}` }));
      const b = encodeNativeBlock(rows, types)?.block as Buffer;
      const p = b.indexOf('LowCardinality(String)') + 22;
      expect(u64At(b, p + 8)).toBe(0x600n | flag);
      expect(u64At(b, p + 16)).toBe(BigInt(distinct + 1)); // '' is always key 0
      const indexes = b.subarray(b.length - rows.length * width);
      const at = (i: number) =>
        width === 1 ? indexes[i]! : width === 2 ? indexes.readUInt16LE(i * 2) : indexes.readUInt32LE(i * 4);
      expect(at(0)).toBe(1);
      expect(at(distinct - 1)).toBe(distinct);
      expect(at(distinct)).toBe(1); // the second round reuses the keys
      expect(u64At(b, b.length - rows.length * width - 8)).toBe(BigInt(rows.length));
    }
  });

  it('gives the same bytes for a u64 as number, bigint and decimal text of any length', () => {
    for (const v of [0n, 1n, 999_999_999_999_999n, 1_000_000_000_000_000n, 123_456_789_012_345_678n]) {
      const asText = encodeNativeBlock([{ a: String(v) }], types)?.block;
      expect(encodeNativeBlock([{ a: v }], types)?.block).toEqual(asText);
      if (v <= BigInt(Number.MAX_SAFE_INTEGER))
        expect(encodeNativeBlock([{ a: Number(v) }], types)?.block).toEqual(asText);
      expect(u64At(asText as Buffer, (asText as Buffer).length - 8)).toBe(v);
    }
  });

  it('writes DateTime64(9) text as Int64 nanoseconds', () => {
    const b = encodeNativeBlock([{ t: '1764072000.000000042' }], types)?.block as Buffer;
    expect(u64At(b, b.length - 8)).toBe(1_764_072_000_000_000_042n);
  });

  it('writes DateTime64(9) from bigint ns (event rows) as from its text', () => {
    const rows = [{ t: 1_764_072_000_000_000_042n }, { t: 9_223_372_035_999_999_999n }];
    const asText = encodeNativeBlock([{ t: '1764072000.000000042' }, { t: '9223372035.999999999' }], types);
    expect(encodeNativeBlock(rows, types)?.block).toEqual(asText?.block);
    expect(() => encodeNativeBlock([{ t: 0x8000_0000_0000_0000n }], types)).toThrow(NativeValueError);
  });

  it('writes Array(UInt64) as end offsets, then the elements', () => {
    const b = encodeNativeBlock([{ x: [5n, 6n] }, { x: [] }, { x: ['7'] }], types)?.block as Buffer;
    const data = b.subarray(b.length - 6 * 8);
    expect([0, 1, 2, 3, 4, 5].map((i) => u64At(data, i * 8))).toEqual([2n, 2n, 3n, 5n, 6n, 7n]);
  });

  it('indexes runs of one LowCardinality value like any other rows', () => {
    const rows = ['x', 'x', 'y', 'y', 'x', 'z', 'z'].map((s) => ({ s }));
    const b = encodeNativeBlock(rows, types)?.block as Buffer;
    expect(u64At(b, b.length - rows.length - 8)).toBe(BigInt(rows.length));
    expect([...b.subarray(b.length - rows.length)]).toEqual([1, 1, 2, 2, 1, 3, 3]);
  });

  it('writes strings longer than 127 bytes with a multi-byte length', () => {
    const long = 'y'.repeat(300);
    const b = encodeNativeBlock([{ str: long }], types)?.block as Buffer;
    expect([...b.subarray(b.length - 302, b.length - 300)]).toEqual([0xac, 0x02]);
    expect(b.subarray(b.length - 300).toString()).toBe(long);
  });

  it.each([
    ['a column the table lacks', [{ zz: 1 }]],
    ['a type it does not write (Map)', [{ m: { k: 'v' } }]],
    ['a later row missing a column', [{ a: 1, s: 'x' }, { s: 'y' }]],
    ['an empty batch', []],
    ['a u64 that is not a number', [{ a: '12a' }]],
    ['a string column holding a number', [{ s: 5 }]],
    ['a string column holding a number after repeats of a string', [{ s: 'x' }, { s: 'x' }, { s: 5 }]],
    ['a string column left undefined', [{ s: undefined }]],
    ['a string column left undefined after a string', [{ s: 'x' }, { s: undefined }]],
    ['time text without nine fraction digits', [{ t: '1764072000.5' }]],
    ['ISO time text', [{ t: '2026-12-03T10:00:00.000' }]],
  ])('cannot write %s (the writer sends JSONEachRow instead)', (_why, rows) => {
    expect(encodeNativeBlock(rows as Record<string, unknown>[], types)).toBeUndefined();
  });

  it.each([
    ['a value out of range', [{ u8: 1 }, { u8: 256 }], 'u8', 1],
    ['a u64 above the maximum', [{ a: '18446744073709551616' }], 'a', 0],
    ['a negative u64', [{ a: -1 }], 'a', 0],
    ['a time past 2262', [{ t: 2n ** 63n }], 't', 0],
  ])('refuses %s as bad data, naming the column and row', (_why, rows, column, row) => {
    let thrown: unknown;
    try {
      encodeNativeBlock(rows as Record<string, unknown>[], types);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(NativeValueError);
    expect(thrown).toMatchObject({ column, row });
  });
});
