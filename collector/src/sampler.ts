// Periodic samples (docs/events.md types 64-67). The kernel keeps cumulative per-cgroup
// counters in per-CPU LRU hash maps (kt_cpu, kt_net, kt_block); every intervalMs we read them
// (the addon sums the CPUs), subtract the previous reading, and emit one sample per cgroup
// whose counters moved; removed cgroups' entries are taken out of the maps
// (kernel-maps.ts). Memory is read from cgroupfs for the cgroups the resolver knows
// (memory.current/peak/max/events on v2; v1 names where v2 lacks them); a cgroup's last
// memory sample comes from the kernel at its removal (memoryReleased), so containers that
// live less than an interval have one too.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import type { BlockSample, CpuSample, MemorySample, NetSample } from '../../schemas/types.js';
import type { BootClock } from './clock.js';
import type { Sampler } from './collector.js';
import type { MemoryRelease } from './kernel/decode.js';
import { FLAG } from './kernel/layout.js';
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
  /**
   * The kernel's reading of a memory cgroup at its removal, as the last memory_sample of the
   * v2 cgroup `cgroupId`; its OOM kills counted from this sampler's last reading of it.
   */
  memoryReleased(release: MemoryRelease, cgroupId: bigint): MemorySample;
}

/**
 * How long the OOM count of a cgroup that left the sample targets is kept for its release
 * record: on a hybrid host the v1 memory cgroup may go a little after the v2 one.
 */
const RELEASE_WAIT_MS = 120_000;

/**
 * A kernel memory_release as the v2 cgroup's last memory_sample (flag KT_F_MEMORY_RELEASE).
 * `oomBefore`: the OOM kills already reported by periodic samples (undefined: none were).
 */
export function releaseToSample(release: MemoryRelease, cgroupId: bigint, oomBefore?: bigint): MemorySample {
  const kills = release.oomKills;
  return {
    kind: 'memory_sample',
    tsNs: release.tsNs,
    cgroupId,
    pid: 0,
    tgid: 0,
    flags: FLAG.memoryRelease,
    currentBytes: release.currentBytes,
    peakBytes: release.peakBytes,
    limitBytes: release.limitBytes,
    oomEvents: oomBefore === undefined || kills < oomBefore ? kills : kills - oomBefore,
  };
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
  // OOM kills at the last reading, and when it was (Date.now()), per v2 cgroup id.
  const oomBefore = new Map<bigint, { kills: bigint; atMs: number }>();
  let timer: NodeJS.Timeout | undefined;
  let emit: ((events: SampleEvent[]) => void) | undefined;

  function sampleMemory(nowNs: bigint, out: SampleEvent[]): void {
    if (!memoryTargets) return;
    const nowMs = Date.now();
    for (const { cgroupId, dir } of memoryTargets()) {
      const current = readBytes(dir, 'memory.current', 'memory.usage_in_bytes');
      if (current === undefined) continue; // cgroup gone or no memory controller
      const ooms = readOomKills(dir);
      const before = oomBefore.get(cgroupId)?.kills;
      oomBefore.set(cgroupId, { kills: ooms, atMs: nowMs });
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
    // Kept a while after the last reading: the cgroup's release record still needs it.
    for (const [id, last] of oomBefore) if (nowMs - last.atMs > RELEASE_WAIT_MS) oomBefore.delete(id);
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
    memoryReleased(release, cgroupId) {
      const before = oomBefore.get(cgroupId)?.kills;
      oomBefore.delete(cgroupId);
      return releaseToSample(release, cgroupId, before);
    },
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
