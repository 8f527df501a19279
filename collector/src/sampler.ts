// Periodic samples (docs/events.md types 64-67). The kernel keeps cumulative per-cgroup
// counters in per-CPU LRU hash maps (kt_cpu, kt_net, kt_block); every intervalMs we read them
// (the addon sums the CPUs), subtract the previous reading, and emit one sample per cgroup
// whose counters moved; removed cgroups' entries are taken out of the maps
// (kernel-maps.ts). Memory is not eBPF: it is read from cgroupfs for the cgroups the
// resolver knows (memory.current/peak/max/events on v2; v1 names where v2 lacks them).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import type { BlockSample, CpuSample, MemorySample, NetSample } from '../../schemas/types.js';
import type { BootClock } from './clock.js';
import type { Sampler } from './collector.js';
import { createKernelMaps, type KernelMaps, type KernelMapsOptions } from './kernel-maps.js';

export type SampleEvent = CpuSample | NetSample | BlockSample | MemorySample;

export interface MemoryTarget {
  cgroupId: bigint;
  /** Absolute cgroupfs directory of the cgroup (v2 preferred; v1 memory controller dir otherwise). */
  dir: string;
}

export interface SamplerOptions extends Omit<KernelMapsOptions, 'bootNowNs'> {
  intervalMs: number;
  clock: BootClock;
  /** Cgroups to read memory for (typically the containers the resolver knows). */
  memoryTargets?: () => Iterable<MemoryTarget>;
}

export interface MapSampler extends Sampler<SampleEvent>, Pick<KernelMaps, 'cgroupRemoved' | 'mapStats'> {
  sampleNow(): SampleEvent[];
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

export function createSampler(options: SamplerOptions): MapSampler {
  const log = createLogger('collector.sampler');
  const { clock, memoryTargets } = options;
  const maps = createKernelMaps({ ...options, bootNowNs: () => clock.bootNowNs() });
  const oomBefore = new Map<bigint, bigint>();
  let timer: NodeJS.Timeout | undefined;
  let emit: ((events: SampleEvent[]) => void) | undefined;

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
    maps.read(nowNs, out);
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
    cgroupRemoved: (cgroupId) => maps.cgroupRemoved(cgroupId),
    mapStats: () => maps.mapStats(),
    start(onEvents) {
      emit = onEvents;
      maps.onEarlyTake = onEvents;
      // The first reading is the baseline for the map deltas.
      tick();
      timer = setInterval(tick, options.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      emit = undefined;
      maps.onEarlyTake = undefined;
    },
  };
}
