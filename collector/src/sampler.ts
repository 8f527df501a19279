// Periodic samples (docs/events.md types 64-67). The kernel keeps cumulative per-cgroup
// counters in per-CPU hash maps (kt_cpu, kt_net, kt_block); every intervalMs we read them
// (the addon sums the CPUs), subtract the previous reading, and emit one sample per cgroup
// whose counters moved. Memory is not eBPF: it is read from cgroupfs for the cgroups the
// resolver knows (memory.current/peak/max/events on v2; v1 names where v2 lacks them).
//
// Deltas, not totals: a reader sums samples over any window without knowing when the
// collector restarted. The first reading after start is the baseline (counters from before
// we looked are not attributed to an interval we did not observe). A cgroup that appears
// between two readings started from zero inside the interval, so its whole value is the
// delta. A counter that went down (map entry recreated) restarts from its new value.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import type { BlockSample, CpuSample, MemorySample, NetSample } from '../../schemas/types.js';
import type { BootClock } from './clock.js';
import type { Sampler } from './collector.js';

export type SampleEvent = CpuSample | NetSample | BlockSample | MemorySample;

/** Reads a kernel map as [key, value] Buffers, per-CPU values summed (KernelCapture.readMap). */
export type MapReader = (name: string) => Array<[Buffer, Buffer]>;

export interface MemoryTarget {
  cgroupId: bigint;
  /** Absolute cgroupfs directory of the cgroup (v2 preferred; v1 memory controller dir otherwise). */
  dir: string;
}

export interface SamplerOptions {
  intervalMs: number;
  clock: BootClock;
  readMap?: MapReader;
  /** Cgroups to read memory for (typically the containers the resolver knows). */
  memoryTargets?: () => Iterable<MemoryTarget>;
}

const LAT_BUCKETS = 32;

interface Previous {
  tsNs: bigint;
  values: Map<bigint, bigint[]>;
}

/** Reads every u64 lane of a map value (kt_cpu_value, kt_net_value, kt_block_value). */
function lanes(value: Buffer): bigint[] {
  const out = new Array<bigint>(value.length >>> 3);
  for (let i = 0; i < out.length; i++) out[i] = value.readBigUInt64LE(i * 8);
  return out;
}

/** Delta of one map between two readings; undefined entries mean "baseline only". */
export function mapDeltas(
  previous: Previous | undefined,
  entries: Array<[Buffer, Buffer]>,
  nowNs: bigint,
): { deltas: Array<{ cgroupId: bigint; delta: bigint[]; intervalNs: bigint }>; next: Previous } {
  const values = new Map<bigint, bigint[]>();
  const deltas: Array<{ cgroupId: bigint; delta: bigint[]; intervalNs: bigint }> = [];
  for (const [key, value] of entries) {
    if (key.length < 8) continue;
    const cgroupId = key.readBigUInt64LE(0);
    const now = lanes(value);
    values.set(cgroupId, now);
    if (previous === undefined) continue;
    const before = previous.values.get(cgroupId);
    let moved = false;
    const delta = new Array<bigint>(now.length);
    const reset = before !== undefined && now.some((v, i) => v < (before[i] ?? 0n));
    for (let i = 0; i < now.length; i++) {
      const d = before === undefined || reset ? (now[i] as bigint) : (now[i] as bigint) - (before[i] ?? 0n);
      delta[i] = d;
      if (d !== 0n) moved = true;
    }
    if (moved) deltas.push({ cgroupId, delta, intervalNs: nowNs - previous.tsNs });
  }
  return { deltas, next: { tsNs: nowNs, values } };
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

function readBytes(dir: string, v2: string, v1: string): bigint | undefined {
  const text = readText(join(dir, v2)) ?? readText(join(dir, v1));
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'max') return 0n; // no limit
  if (!/^\d+$/.test(t)) return undefined;
  const n = BigInt(t);
  // v1 reports "no limit" as a huge page-rounded number.
  return n >= 1n << 62n ? 0n : n;
}

function readOomKills(dir: string): bigint {
  const text = readText(join(dir, 'memory.events'));
  if (text !== undefined) {
    const m = /^oom_kill (\d+)$/m.exec(text);
    return m ? BigInt(m[1] as string) : 0n;
  }
  const v1 = readText(join(dir, 'memory.oom_control'));
  const m = v1 === undefined ? null : /^oom_kill (\d+)$/m.exec(v1);
  return m ? BigInt(m[1] as string) : 0n;
}

export function createSampler(
  options: SamplerOptions,
): Sampler<SampleEvent> & { sampleNow(): SampleEvent[] } {
  const log = createLogger('collector.sampler');
  const { clock, readMap, memoryTargets } = options;
  const previous = new Map<string, Previous>();
  const oomBefore = new Map<bigint, bigint>();
  let timer: NodeJS.Timeout | undefined;
  let emit: ((events: SampleEvent[]) => void) | undefined;

  function readKernelMap(name: string): Array<[Buffer, Buffer]> {
    if (!readMap) return [];
    try {
      return readMap(name);
    } catch (err) {
      log.debug({ err, map: name }, 'map not readable (program not loaded?)');
      return [];
    }
  }

  function sampleMap(name: string, nowNs: bigint, out: SampleEvent[]): void {
    const { deltas, next } = mapDeltas(previous.get(name), readKernelMap(name), nowNs);
    previous.set(name, next);
    for (const { cgroupId, delta: d, intervalNs } of deltas) {
      const base = { tsNs: nowNs, cgroupId, pid: 0, tgid: 0, flags: 0, intervalNs };
      if (name === 'kt_cpu')
        out.push({ kind: 'cpu_sample', ...base, cpuNs: d[0] ?? 0n, switches: d[1] ?? 0n });
      else if (name === 'kt_net')
        out.push({
          kind: 'net_sample',
          ...base,
          rxBytes: d[0] ?? 0n,
          rxPackets: d[1] ?? 0n,
          txBytes: d[2] ?? 0n,
          txPackets: d[3] ?? 0n,
        });
      else {
        const latencyHist: bigint[] = [];
        for (let i = 0; i < LAT_BUCKETS; i++) latencyHist.push(d[4 + i] ?? 0n);
        out.push({
          kind: 'block_sample',
          ...base,
          readBytes: d[0] ?? 0n,
          writeBytes: d[1] ?? 0n,
          readIos: d[2] ?? 0n,
          writeIos: d[3] ?? 0n,
          latencyHist,
        });
      }
    }
  }

  function sampleMemory(nowNs: bigint, out: SampleEvent[]): void {
    if (!memoryTargets) return;
    const seen = new Set<bigint>();
    for (const { cgroupId, dir } of memoryTargets()) {
      const current = readBytes(dir, 'memory.current', 'memory.usage_in_bytes');
      if (current === undefined) continue; // cgroup gone or no memory controller
      seen.add(cgroupId);
      const ooms = readOomKills(dir);
      const before = oomBefore.get(cgroupId);
      oomBefore.set(cgroupId, ooms);
      out.push({
        kind: 'memory_sample',
        tsNs: nowNs,
        cgroupId,
        pid: 0,
        tgid: 0,
        flags: 0,
        currentBytes: current,
        peakBytes: readBytes(dir, 'memory.peak', 'memory.max_usage_in_bytes') ?? 0n,
        limitBytes: readBytes(dir, 'memory.max', 'memory.limit_in_bytes') ?? 0n,
        // OOM kills in this interval (first sight: since the cgroup's creation).
        oomEvents: before === undefined || ooms < before ? ooms : ooms - before,
      });
    }
    for (const id of oomBefore.keys()) if (!seen.has(id)) oomBefore.delete(id);
  }

  function sampleNow(): SampleEvent[] {
    const out: SampleEvent[] = [];
    const nowNs = clock.bootNowNs();
    for (const name of ['kt_cpu', 'kt_net', 'kt_block']) sampleMap(name, nowNs, out);
    sampleMemory(nowNs, out);
    return out;
  }

  function tick(): void {
    try {
      const events = sampleNow();
      if (events.length > 0) emit?.(events);
    } catch (err) {
      log.warn({ err }, 'sampling failed; will retry next interval');
    }
  }

  return {
    sampleNow,
    start(onEvents) {
      emit = onEvents;
      // The first reading is the baseline for the map deltas.
      tick();
      timer = setInterval(tick, options.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      emit = undefined;
    },
  };
}
