// The u64 Avro long (schemas/avro-types.ts U64_LONG): its writer splits the bigint into
// two uint32 halves and writes the zigzag varint with integer math. These tests pin it to
// the Avro spec's encoding computed with plain bigint arithmetic, over every boundary where
// the varint grows or a half changes, and over random values of the whole u64 range.
import { describe, expect, it } from 'vitest';
import { U64_LONG } from '../../schemas/avro-types.js';

/** Avro long encoding of the same 64 bits read as a signed long (reference, bigint math). */
function reference(v: bigint): Buffer {
  const signed = BigInt.asIntN(64, v);
  let zz = BigInt.asUintN(64, (signed << 1n) ^ (signed >> 63n));
  const out: number[] = [];
  while (zz >= 0x80n) {
    out.push(Number(zz & 0x7fn) | 0x80);
    zz >>= 7n;
  }
  out.push(Number(zz));
  return Buffer.from(out);
}

const boundaries: bigint[] = [0n, 1n, 2n, 63n, 64n, 127n, 128n];
for (let bit = 7n; bit <= 64n; bit++) {
  const p = 1n << bit;
  for (const v of [p - 2n, p - 1n, p, p + 1n]) if (v >= 0n && v < 1n << 64n) boundaries.push(v);
}

function random64(seed: number): bigint[] {
  let x = BigInt(seed);
  const out: bigint[] = [];
  for (let i = 0; i < 2_000; i++) {
    x = BigInt.asUintN(64, x * 6364136223846793005n + 1442695040888963407n);
    out.push(x >> BigInt(i % 64)); // every magnitude, not only huge values
  }
  return out;
}

describe('u64 Avro long', () => {
  it.each(boundaries.map((v) => [v.toString(), v] as const))(
    '%s encodes as the spec says and round-trips',
    (_, v) => {
      const bytes = U64_LONG.toBuffer(v);
      expect(bytes.toString('hex')).toBe(reference(v).toString('hex'));
      expect(U64_LONG.fromBuffer(bytes)).toBe(v);
    },
  );

  it('matches the reference on random values over the whole range', () => {
    for (const v of random64(7)) {
      const bytes = U64_LONG.toBuffer(v);
      expect(bytes.equals(reference(v))).toBe(true);
      expect(U64_LONG.fromBuffer(bytes)).toBe(v);
    }
  });

  it('rejects what is not an unsigned 64-bit bigint instead of wrapping it', () => {
    for (const bad of [-1n, 1n << 64n, (1n << 64n) + 5n, 5, '5', null, undefined])
      expect(() => U64_LONG.toBuffer(bad as never)).toThrow(/unsigned 64-bit/);
  });
});
