// JSON for fixture values: bigint as "123n", bytes as {"$bytes": "<hex>"}, so a fixture shows
// exact u64 values (JSON numbers can't) and reads back to the same JS value.
const BIGINT = /^\d+n$/;

export function toFixtureJson(value: unknown): string {
  return `${JSON.stringify(
    value,
    function replacer(this: Record<string, unknown>, key: string, v: unknown) {
      const raw = this[key];
      if (typeof raw === 'bigint') return `${raw}n`;
      if (Buffer.isBuffer(raw)) return { $bytes: raw.toString('hex') };
      return v;
    },
    2,
  )}\n`;
}

export function fromFixtureJson(text: string): unknown {
  return JSON.parse(text, (_key, v: unknown) => {
    if (typeof v === 'string' && BIGINT.test(v)) return BigInt(v.slice(0, -1));
    if (typeof v === 'object' && v !== null && typeof (v as { $bytes?: unknown }).$bytes === 'string') {
      return Buffer.from((v as { $bytes: string }).$bytes, 'hex');
    }
    return v;
  });
}
