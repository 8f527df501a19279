// The report's chart helpers: axis tops and time ticks a person can read.
import { describe, expect, it } from 'vitest';
import { niceCeil, timeTicks } from '../../deploy/clickhouse/report-charts.js';

describe('report charts', () => {
  it.each([
    [1.91, 2],
    [2.0001, 2.5],
    [0.0515, 0.06],
    [450, 500],
    [0, 1],
    [Number.NaN, 1],
  ])('axis top for %d is %d', (v, top) => {
    expect(niceCeil(v)).toBe(top);
  });

  it('time ticks: whole minutes or hours, at most six, none twice', () => {
    const t0 = Date.UTC(2026, 0, 1, 20, 47, 51);
    const label = (ts: number[]) => ts.map((t) => new Date(t).toISOString().slice(11, 16));
    expect(label(timeTicks(t0, t0 + 3 * 60_000))).toEqual(['20:48', '20:49', '20:50']);
    expect(label(timeTicks(t0, t0 + 24 * 3600_000))).toEqual(['00:00', '06:00', '12:00', '18:00']);
    const hour = timeTicks(t0, t0 + 3600_000);
    expect(hour.length).toBeLessThanOrEqual(6);
    expect(new Set(label(hour)).size).toBe(hour.length);
  });
});
