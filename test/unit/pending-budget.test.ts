// The processor's pending-rows bound (processor/src/pending-budget.ts) with a fake fetch
// control: pause at the bound, one pause per partition, resume at the low-water mark (not
// before), forced cuts never held back, release once per batch.
import { describe, expect, it } from 'vitest';
import { PendingBudget } from '../../processor/src/pending-budget.js';

function fakeControl() {
  const calls: string[] = [];
  return {
    calls,
    control: {
      pause: (ps: number[]) => calls.push(`pause ${ps.join(',')}`),
      resume: (ps: number[]) => calls.push(`resume ${[...ps].sort().join(',')}`),
    },
  };
}

describe('pending rows bound', () => {
  it('holds back at the bound, pauses each partition once, resumes them all at the low-water mark', () => {
    const { calls, control } = fakeControl();
    const budget = new PendingBudget(1_000, control);
    const a = {};
    const b = {};
    const c = {};
    budget.add(a, 400);
    expect(budget.holdBack(0, false)).toBe(false);
    budget.add(b, 400);
    budget.add(c, 250); // 1,050: a message's rows may pass the bound; the next message waits
    expect(budget.full).toBe(true);
    expect(budget.holdBack(0, false)).toBe(true);
    expect(budget.holdBack(0, false)).toBe(true);
    expect(budget.holdBack(3, false)).toBe(true);
    expect(calls).toEqual(['pause 0', 'pause 3']);
    expect(budget.snapshot()).toMatchObject({ rows: 1_050, peakRows: 1_050, paused: [0, 3], pauses: 2 });

    budget.release(a); // 650: below the bound, above the low-water mark (500)
    expect(budget.full).toBe(false);
    expect(calls).toEqual(['pause 0', 'pause 3']);
    budget.release(c); // 400 <= 500
    expect(calls).toEqual(['pause 0', 'pause 3', 'resume 0,3']);
    expect(budget.snapshot()).toMatchObject({ rows: 400, paused: [] });
    expect(budget.holdBack(0, false)).toBe(false);
  });

  it('releases a batch once, however often it is released', () => {
    const { control } = fakeControl();
    const budget = new PendingBudget(100, control);
    const batch = {};
    budget.add(batch, 30);
    budget.add(batch, 20);
    budget.release(batch); // dropped on revocation...
    budget.release(batch); // ...and its cut's write ended later
    expect(budget.rows).toBe(0);
    budget.release({}); // never added
    expect(budget.rows).toBe(0);
  });

  it('never holds back a partition that must reach a recorded cut', () => {
    const { calls, control } = fakeControl();
    const budget = new PendingBudget(10, control);
    budget.add({}, 50);
    expect(budget.holdBack(7, true)).toBe(false);
    expect(calls).toEqual([]);
  });

  it('forgets pauses of a revoked assignment (the new one pauses and resumes on its own)', () => {
    const { calls, control } = fakeControl();
    const budget = new PendingBudget(10, control, undefined, 0);
    const batch = {};
    budget.add(batch, 10);
    budget.holdBack(1, false);
    budget.forgetPaused();
    budget.release(batch);
    expect(calls).toEqual(['pause 1']);
  });

  it('rejects a bound or low-water mark that makes no sense', () => {
    const { control } = fakeControl();
    expect(() => new PendingBudget(0, control)).toThrow(/must be > 0/);
    expect(() => new PendingBudget(10, control, undefined, 10)).toThrow(/low-water/);
  });
});
