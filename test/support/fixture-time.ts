// Times for test data, always relative to now: a fixed date ages past the raw tables' TTL
// (14 days) and the engine drops the rows as they are inserted.

const DAY_MS = 86_400_000;

/** UTC midnight `daysAgo` days before today: whole-day and whole-hour buckets stay predictable. */
export function utcDayMs(daysAgo: number, now = Date.now()): number {
  return Math.floor(now / DAY_MS) * DAY_MS - daysAgo * DAY_MS;
}

/** A UTC time of day on the day `daysAgo` days back, e.g. fixtureMs(2, 10) = 10:00 two days ago. */
export function fixtureMs(daysAgo: number, hour: number, minute = 0, second = 0): number {
  return utcDayMs(daysAgo) + ((hour * 60 + minute) * 60 + second) * 1000;
}

/** Milliseconds since the epoch as nanoseconds. */
export const msToNs = (ms: number): bigint => BigInt(ms) * 1_000_000n;
