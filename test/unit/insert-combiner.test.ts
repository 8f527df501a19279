// Group commit of inserts (processor/src/clickhouse/insert-combiner.ts) over a fake insert
// function whose statements the test ends by hand: inserts that arrive while their table's
// statement runs share the next one; other tables and unshareable inserts go alone; a bad-data
// rejection of a shared statement reaches only the member whose rows are bad; other errors
// reach every member; statements stay under the row bound.
import { describe, expect, it } from 'vitest';
import { PoisonError, TransientError } from '../../common/errors.js';
import { combineInserts } from '../../processor/src/clickhouse/insert-combiner.js';
import type { InsertBatchParams, InsertResult } from '../../processor/src/clickhouse/writer.js';
import { asRows } from '../../processor/src/event-columns.js';

interface Statement {
  params: InsertBatchParams;
  end(err?: unknown): void;
}

function fakeBackend(reject: (params: InsertBatchParams) => unknown = () => undefined) {
  const statements: Statement[] = [];
  const insertOne = (params: InsertBatchParams) =>
    new Promise<InsertResult>((resolve, fail) => {
      const err = reject(params);
      if (err !== undefined) {
        statements.push({ params, end: () => {} });
        fail(err);
        return;
      }
      statements.push({
        params,
        end: (e) =>
          e === undefined ? resolve({ rows: params.rows.length, attempts: 1, format: 'Native' }) : fail(e),
      });
    });
  return { statements, insertOne };
}

const rows = (partition: number, n: number) => Array.from({ length: n }, (_, i) => ({ partition, i }));
const params = (table: string, partition: number, n: number, shareable = true): InsertBatchParams => ({
  table,
  rows: rows(partition, n),
  dedupToken: `${table}:t:${partition}:0-${n - 1}`,
  shareable,
});
const tick = () => new Promise((r) => setTimeout(r, 0));

/**
 * Partition 0's insert in flight, then partitions 1.. (rows each) arriving behind it; once the
 * first statement ended, they went as one shared statement (statements[1]), still running.
 */
async function sharedBehindOne(
  insertOne: (p: InsertBatchParams) => Promise<InsertResult>,
  statements: Statement[],
  rowCounts: number[],
): Promise<Promise<InsertResult>[]> {
  const store = combineInserts(insertOne, 100_000, 0);
  const head = store.insert(params('cpu_sample', 0, 1));
  await tick();
  const behind = rowCounts.map((n, i) => store.insert(params('cpu_sample', i + 1, n)));
  statements[0]?.end();
  await head;
  await tick();
  return behind;
}

describe('insert combiner', () => {
  it('sends what arrives while a statement runs as one statement, under the joined tokens', async () => {
    const { statements, insertOne } = fakeBackend();
    const store = combineInserts(insertOne, 100_000, 0);
    const first = store.insert(params('cpu_sample', 0, 3));
    await tick();
    expect(statements).toHaveLength(1);
    const second = store.insert(params('cpu_sample', 1, 2));
    const third = store.insert(params('cpu_sample', 2, 4));
    const other = store.insert(params('event_batches', 1, 1));
    await tick();
    // event_batches had nothing in flight: it went at once, alone.
    expect(statements.map((s) => s.params.table)).toEqual(['cpu_sample', 'event_batches']);
    statements[0]?.end();
    statements[1]?.end();
    await expect(first).resolves.toMatchObject({ rows: 3 });
    await expect(other).resolves.toMatchObject({ rows: 1 });
    await tick();
    expect(statements).toHaveLength(3);
    const shared = statements[2] as Statement;
    expect(shared.params.rows).toEqual([...rows(1, 2), ...rows(2, 4)]);
    expect(shared.params.dedupToken).toBe('cpu_sample:t:1:0-1|cpu_sample:t:2:0-3');
    shared.end();
    await expect(second).resolves.toMatchObject({ rows: 2 });
    await expect(third).resolves.toMatchObject({ rows: 4 });
    expect(store.counts).toEqual({ statements: 3, shared: 2 });
  });

  it('waits gatherMs on an idle table for partners', async () => {
    const { statements, insertOne } = fakeBackend();
    const store = combineInserts(insertOne, 100_000, 20);
    const a = store.insert(params('cpu_sample', 0, 1));
    await tick();
    const b = store.insert(params('cpu_sample', 1, 1));
    expect(statements).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 40));
    expect(statements).toHaveLength(1);
    statements[0]?.end();
    await Promise.all([a, b]);
    expect(store.counts.statements).toBe(1);
  });

  it('never shares an insert that is not shareable', async () => {
    const { statements, insertOne } = fakeBackend();
    const store = combineInserts(insertOne, 100_000, 0);
    const a = store.insert(params('collector_stats', 0, 1, false));
    const b = store.insert(params('collector_stats', 1, 1, false));
    await tick();
    expect(statements).toHaveLength(2);
    for (const s of statements) s.end();
    await Promise.all([a, b]);
  });

  it('sends each member alone when a shared statement is rejected as bad data', async () => {
    const bad = new PoisonError('Cannot parse input', { context: { reason: 'insert_rejected' } });
    const { statements, insertOne } = fakeBackend((p) =>
      asRows(p.rows).some((r) => (r as { partition: number }).partition === 2) ? bad : undefined,
    );
    const [good, poisoned] = await sharedBehindOne(insertOne, statements, [2, 2]);
    // The shared statement [1, 2] failed; then 1 alone, then 2 alone (failing again).
    await tick();
    statements[2]?.end();
    await expect(good).resolves.toMatchObject({ rows: 2 });
    await expect(poisoned).rejects.toBe(bad);
    expect(statements.map((s) => s.params.dedupToken)).toEqual([
      'cpu_sample:t:0:0-0',
      'cpu_sample:t:1:0-1|cpu_sample:t:2:0-1',
      'cpu_sample:t:1:0-1',
      'cpu_sample:t:2:0-1',
    ]);
  });

  it('fails every member of a shared statement that failed otherwise (each retries alone)', async () => {
    const { statements, insertOne } = fakeBackend();
    const [a, b] = await sharedBehindOne(insertOne, statements, [1, 1]);
    const down = new TransientError('connection reset');
    statements[1]?.end(down);
    await expect(a).rejects.toBe(down);
    await expect(b).rejects.toBe(down);
    expect(statements).toHaveLength(2);
  });

  it('keeps each statement under the row bound, in arrival order', async () => {
    const { statements, insertOne } = fakeBackend();
    const store = combineInserts(insertOne, 5, 0);
    const all = [store.insert(params('cpu_sample', 0, 1))];
    await tick();
    for (const [p, n] of [
      [1, 3],
      [2, 2],
      [3, 4],
      [4, 9],
    ] as const)
      all.push(store.insert(params('cpu_sample', p, n)));
    for (let i = 0; i < 4; i++) {
      statements[i]?.end();
      await tick();
    }
    await Promise.all(all);
    // 3 + 2 fit in 5; 4 alone (with 9 it would pass 5); 9 alone, though over the bound.
    expect(statements.map((s) => s.params.rows.length)).toEqual([1, 5, 4, 9]);
  });
});
