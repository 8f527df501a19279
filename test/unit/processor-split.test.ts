// The split of a batch ClickHouse rejected as bad data (partition-batch.ts rowsByMessage and
// splitRejected): which sub-ranges are inserted, that good rows land once, that the bad
// messages come out, and that a split redone after a crash repeats the same tokens. The insert
// here is a function over a token-deduplicating set; the real thing (chDB, the broker) is in
// test/integration/processor-insert-rejected.test.ts.
import { describe, expect, it } from 'vitest';
import {
  dedupToken,
  type MessageRows,
  type Row,
  rowsByMessage,
  splitRejected,
} from '../../processor/src/partition-batch.js';

/** n messages at offsets 100.., `per` rows each; a row is bad when its message is in `bad`. */
function batch(n: number, per: number, bad: Set<number>): Row[] {
  const rows: Row[] = [];
  for (let m = 0; m < n; m++)
    for (let i = 0; i < per; i++)
      rows.push({ kafka_offset: String(100 + m), i, bad: bad.has(100 + m), key: `${100 + m}/${i}` });
  return rows;
}

/** ClickHouse's contract as far as the split relies on it: all-or-nothing, repeats of a token dropped. */
class Store {
  tokens = new Set<string>();
  rows: Row[] = [];
  calls: string[] = [];
  /** Throws (a crash) when this many inserts were attempted. */
  crashAfter = Number.POSITIVE_INFINITY;
  insert = async (first: bigint, last: bigint, rows: Row[]): Promise<string | undefined> => {
    const token = dedupToken('cpu_sample', 'events', 0, first, last);
    if (this.calls.length >= this.crashAfter) throw new Error('crash');
    this.calls.push(token);
    const bad = rows.find((r) => r.bad === true);
    if (bad !== undefined) return `rejected at offset ${bad.kafka_offset}`;
    if (this.tokens.has(token)) return undefined;
    this.tokens.add(token);
    this.rows.push(...rows);
    return undefined;
  };
}

async function split(store: Store, rows: Row[]) {
  return splitRejected(rowsByMessage(rows) as MessageRows[], store.insert, 'whole batch rejected');
}

describe('rowsByMessage', () => {
  it('groups rows by source offset, in offset order, keeping row order within a message', () => {
    const rows: Row[] = [
      { kafka_offset: '7', n: 1 },
      { kafka_offset: '5', n: 2 },
      { kafka_offset: '7', n: 3 },
      { kafka_offset: 10n, n: 4 },
    ];
    expect(rowsByMessage(rows)?.map((m) => [m.offset, m.rows.map((r) => r.n)])).toEqual([
      [5n, [2]],
      [7n, [1, 3]],
      [10n, [4]],
    ]);
  });

  it('is undefined when a row does not name its message', () => {
    expect(rowsByMessage([{ kafka_offset: '1' }, { other: 1 }])).toBeUndefined();
    expect(rowsByMessage([{ kafka_offset: 'x' }])).toBeUndefined();
  });
});

describe('splitRejected', () => {
  it('isolates the bad messages; every good row lands exactly once', async () => {
    const bad = new Set([103, 117, 118, 140]);
    const rows = batch(64, 5, bad);
    const store = new Store();
    const out = await split(store, rows);
    expect(out.map((m) => m.offset)).toEqual([103n, 117n, 118n, 140n]);
    expect(out.every((m) => m.rows.length === 5 && m.error === `rejected at offset ${m.offset}`)).toBe(true);
    const landed = store.rows.map((r) => r.key);
    expect(landed).toHaveLength(60 * 5);
    expect(new Set(landed).size).toBe(60 * 5);
    expect(store.rows.some((r) => r.bad === true)).toBe(false);
    // No sub-range is the whole batch (its token is the batch's, and its rejection is given).
    expect(store.calls).not.toContain(dedupToken('cpu_sample', 'events', 0, 100n, 163n));
  });

  it('a single bad message among many costs about 2·log2(n) inserts, the good rows land in large ones', async () => {
    const store = new Store();
    const out = await split(store, batch(64, 10, new Set([150])));
    expect(out.map((m) => m.offset)).toEqual([150n]);
    expect(store.calls.length).toBe(12);
    expect(store.rows).toHaveLength(63 * 10);
  });

  it('a batch of one message is that message, without another insert', async () => {
    const store = new Store();
    const out = await split(store, batch(1, 3, new Set([100])));
    expect(out).toHaveLength(1);
    expect(out[0]?.error).toBe('whole batch rejected');
    expect(store.calls).toEqual([]);
  });

  it('when every message is bad, all come out and nothing lands', async () => {
    const store = new Store();
    const out = await split(store, batch(5, 2, new Set([100, 101, 102, 103, 104])));
    expect(out.map((m) => m.offset)).toEqual([100n, 101n, 102n, 103n, 104n]);
    expect(store.rows).toEqual([]);
  });

  it('is deterministic: a split redone after a crash repeats the same tokens, so good rows still land once', async () => {
    const bad = new Set([101, 109, 110, 125]);
    const reference = new Store();
    await split(reference, batch(32, 4, bad));
    for (let crashAt = 1; crashAt < reference.calls.length; crashAt++) {
      const store = new Store();
      store.crashAfter = crashAt;
      await expect(split(store, batch(32, 4, bad))).rejects.toThrow('crash');
      expect(store.calls).toEqual(reference.calls.slice(0, crashAt));
      // The rebuilt batch (fresh row objects, same content) splits again from the start.
      store.crashAfter = Number.POSITIVE_INFINITY;
      store.calls = [];
      const out = await split(store, batch(32, 4, bad));
      expect(store.calls).toEqual(reference.calls);
      expect(out.map((m) => m.offset)).toEqual([101n, 109n, 110n, 125n]);
      expect(store.rows).toHaveLength(28 * 4);
      expect(new Set(store.rows.map((r) => r.key)).size).toBe(28 * 4);
    }
  });
});
