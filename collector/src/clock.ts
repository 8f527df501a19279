// Time and identity of this boot. Kernel events carry bpf_ktime_get_boot_ns() (CLOCK_BOOTTIME:
// monotonic, counts suspend, starts at boot). People want wall-clock time. The collector does
// not rewrite every event: it puts the offset (wall-clock ns minus boot-time ns), measured
// once per batch, into the batch envelope, and the processor computes wall = tsNs + offset.
// Keeping tsNs untouched keeps ordering and durations exact even when NTP steps the wall clock.
//
// Node has no CLOCK_BOOTTIME. Choice: process.hrtime.bigint() is CLOCK_MONOTONIC, which
// differs from CLOCK_BOOTTIME only by time spent suspended. We measure that difference from
// /proc/uptime (CLOCK_BOOTTIME, printed in 10 ms steps) by waiting for it to tick: right at
// the tick the printed value is exact, so the offset is right to the read latency (~10 µs)
// instead of ±10 ms. It is re-measured every few minutes (a node may suspend; servers
// rarely do).
import { readFileSync } from 'node:fs';

/** How often CLOCK_BOOTTIME - CLOCK_MONOTONIC is measured again (a suspend changes it). */
const RECALIBRATE_MS = 300_000;

export interface BootClock {
  /** Kernel boot id (/proc/sys/kernel/random/boot_id): sequence numbers restart per boot. */
  readonly bootId: string;
  /** Current CLOCK_BOOTTIME in ns, the clock of the events' tsNs. */
  bootNowNs(): bigint;
  /** Wall-clock ns minus boot-time ns, now. Add to an event's tsNs to get Unix-epoch ns. */
  wallMinusBootNs(): bigint;
}

export function readBootId(path = '/proc/sys/kernel/random/boot_id'): string {
  return readFileSync(path, 'utf8').trim();
}

/** CLOCK_BOOTTIME ns from /proc/uptime's first field (exact decimal parse, no float). */
function readUptimeNs(path: string): bigint {
  const text = readFileSync(path, 'latin1');
  const field = text.slice(0, text.indexOf(' '));
  const dot = field.indexOf('.');
  const secs = BigInt(dot < 0 ? field : field.slice(0, dot));
  const frac = dot < 0 ? '' : field.slice(dot + 1);
  return secs * 1_000_000_000n + BigInt((frac + '000000000').slice(0, 9));
}

/**
 * One measurement at a /proc/uptime tick: the tick fell between the last read that showed
 * the old value and the first that shows the new one; the midpoint of that bracket is the
 * estimate and its width the error bound (tiny unless the process was descheduled).
 */
function measureOnce(uptimePath: string): { offset: bigint; width: bigint } {
  const first = readUptimeNs(uptimePath);
  const giveUp = process.hrtime.bigint() + 30_000_000n;
  let lastBefore = process.hrtime.bigint();
  for (;;) {
    const before = process.hrtime.bigint();
    const now = readUptimeNs(uptimePath);
    const after = process.hrtime.bigint();
    if (now !== first || after > giveUp)
      return { offset: now - (lastBefore + after) / 2n, width: after - lastBefore };
    lastBefore = before;
  }
}

/**
 * Measures CLOCK_BOOTTIME - CLOCK_MONOTONIC at /proc/uptime ticks (busy-waits ~10 ms per
 * sample) and keeps the sample with the narrowest bracket, so a sample taken while the
 * process was descheduled (a loaded node) does not spoil the result.
 */
export function measureBootMinusMonotonicNs(uptimePath = '/proc/uptime', samples = 5): bigint {
  let best = measureOnce(uptimePath);
  for (let i = 1; i < samples && best.width > 50_000n; i++) {
    const m = measureOnce(uptimePath);
    if (m.width < best.width) best = m;
  }
  return best.offset;
}

export function createBootClock(): BootClock {
  const bootId = readBootId();
  let bootMinusMono = measureBootMinusMonotonicNs();
  let calibratedAt = Date.now();

  const bootNowNs = (): bigint => {
    if (Date.now() - calibratedAt > RECALIBRATE_MS) {
      bootMinusMono = measureBootMinusMonotonicNs();
      calibratedAt = Date.now();
    }
    return process.hrtime.bigint() + bootMinusMono;
  };

  return {
    bootId,
    bootNowNs,
    wallMinusBootNs() {
      // Date.now() has ms resolution: the offset is good to ~1 ms, which is what wall time
      // needs; durations and order come from tsNs itself.
      return BigInt(Date.now()) * 1_000_000n - bootNowNs();
    },
  };
}

/** A fixed clock for replayed captures: their boot id and offset come from the capture. */
export function fixedBootClock(bootId: string, wallMinusBootNs: bigint): BootClock {
  return {
    bootId,
    bootNowNs: () => BigInt(Date.now()) * 1_000_000n - wallMinusBootNs,
    wallMinusBootNs: () => wallMinusBootNs,
  };
}
