// The per-cgroup kernel maps (kt_cpu, kt_net, kt_block) as the sampler reads them: cumulative
// counters per cgroup, turned into deltas per reading, and the maps' lifetime.
//
// Deltas, not totals: a reader sums samples over any window without knowing when the
// collector restarted. The first reading after start is the baseline (counters from before
// we looked are not attributed to an interval we did not observe). A cgroup that appears
// between two readings started from zero inside the interval, so its whole value is the
// delta. A counter that went down (map entry recreated) restarts from its new value.
//
// Lifetime: when a cgroup is removed (its cgroup_rmdir event), the next reading takes its
// entries out of the maps - read and deleted in one step - and emits what they gained since
// the previous reading, so a removed cgroup's last counts appear exactly once and its entry
// frees a slot; past a threshold of removals they are taken at once. Its id is remembered for
// a grace period: late activity (a dying task's last context switch, an orphaned socket's
// packets, a completing IO) recreates the entry, and the next reading takes that too. Entries
// that vanish without us (LRU eviction, the net for a missed rmdir) are counted.
// docs/bpf.md, "Map lifetime".
import { Counter, Gauge, type Registry } from 'prom-client';
import { createLogger, createThrottledWarn, type Logger } from '../../common/log.js';
import type { SampleEvent } from './sampler.js';

/** Reads a kernel map as [key, value] Buffers, per-CPU values summed (KernelCapture.readMap). */
export type MapReader = (name: string) => Array<[Buffer, Buffer]>;

/** Reads and deletes these cgroup ids' entries, per-CPU values summed (KernelCapture.takeMapEntries). */
export type MapTaker = (name: string, cgroupIds: bigint[]) => Array<[Buffer, Buffer]>;

/** The kernel maps the sampler reads, in reading order. */
export const SAMPLED_MAPS = ['kt_cpu', 'kt_net', 'kt_block'] as const;
export type SampledMap = (typeof SAMPLED_MAPS)[number];

/** Occupancy and churn of one map, as of the last reading. */
export interface MapStats {
  map: SampledMap;
  /** Entries left after the last reading (and its deletions). */
  entries: number;
  /** The most entries any reading found (before its deletions). */
  peakEntries: number;
  /** max_entries; undefined until known (map not loaded). */
  maxEntries: number | undefined;
  /** Entries read and deleted after their cgroup's removal, cumulative. */
  deleted: number;
  /** Entries that vanished between two readings without being deleted here (LRU eviction), cumulative. */
  evicted: number;
}

export interface KernelMapsOptions {
  readMap?: MapReader;
  /** Without it, entries are never deleted (the kernel's LRU is then all that frees them). */
  takeMapEntries?: MapTaker;
  /** max_entries of a map, for the occupancy metrics; undefined when unknown. */
  mapCapacity?: (name: SampledMap) => number | undefined;
  /** How long a removed cgroup's id is remembered, so a recreated entry is taken too (default 120 s). */
  removedGraceMs?: number;
  /** Bound on remembered removed ids (default 65,536; the oldest go first). */
  maxRemoved?: number;
  /**
   * Removals that make the sampler take their entries at once instead of at the next reading
   * (default 1,024), so heavy churn can't fill a map within one interval.
   */
  removedTakeThreshold?: number;
  /** Boot-time ns for the samples of an early take. */
  bootNowNs: () => bigint;
  /** For tests. */
  now?: () => number;
}

export interface KernelMaps {
  /** One reading of every map: samples of the cgroups whose counters moved go to `out`. */
  read(nowNs: bigint, out: SampleEvent[]): void;
  /** A v2 cgroup was removed (its cgroup_rmdir event): take its entries at the next reading. */
  cgroupRemoved(cgroupId: bigint): void;
  mapStats(): MapStats[];
  /** Where the samples of an early take go; undefined (stopped): no early take. */
  onEarlyTake: ((events: SampleEvent[]) => void) | undefined;
}

export type MapDelta = { cgroupId: bigint; delta: bigint[]; intervalNs: bigint };

interface Previous {
  tsNs: bigint;
  values: Map<bigint, bigint[]>;
}

const LAT_BUCKETS = 32;

/** Reads every u64 lane of a map value (kt_cpu_value, kt_net_value, kt_block_value). */
function lanes(value: Buffer): bigint[] {
  const out = new Array<bigint>(value.length >>> 3);
  for (let i = 0; i < out.length; i++) out[i] = value.readBigUInt64LE(i * 8);
  return out;
}

/**
 * Delta of one map between two readings; undefined `previous` means "baseline only". Ids in
 * `taken` were deleted from the map after this reading: they are not carried into `next`, so
 * a recreated entry counts from zero. `vanished`: ids of `previous` missing from `entries` or
 * whose counters went down (an entry deleted by someone else, i.e. evicted, and recreated).
 */
export function mapDeltas(
  previous: Previous | undefined,
  entries: Array<[Buffer, Buffer]>,
  nowNs: bigint,
  taken?: ReadonlySet<bigint>,
): { deltas: MapDelta[]; next: Previous; vanished: number } {
  const values = new Map<bigint, bigint[]>();
  const deltas: MapDelta[] = [];
  let seenBefore = 0;
  let restarted = 0; // evicted and recreated between the two readings
  for (const [key, value] of entries) {
    if (key.length < 8) continue;
    const cgroupId = key.readBigUInt64LE(0);
    const now = lanes(value);
    if (taken === undefined || !taken.has(cgroupId)) values.set(cgroupId, now);
    if (previous === undefined) continue;
    const before = previous.values.get(cgroupId);
    if (before !== undefined) seenBefore++;
    let moved = false;
    const delta = new Array<bigint>(now.length);
    const reset = before !== undefined && now.some((v, i) => v < (before[i] ?? 0n));
    if (reset) restarted++;
    for (let i = 0; i < now.length; i++) {
      const d = before === undefined || reset ? (now[i] as bigint) : (now[i] as bigint) - (before[i] ?? 0n);
      delta[i] = d;
      if (d !== 0n) moved = true;
    }
    if (moved) deltas.push({ cgroupId, delta, intervalNs: nowNs - previous.tsNs });
  }
  // Clamped: the get_next_key fallback may repeat keys.
  const vanished = previous === undefined ? 0 : Math.max(0, previous.values.size - seenBefore) + restarted;
  return { deltas, next: { tsNs: nowNs, values }, vanished };
}

/** One sample event per delta, in the map's layout (events.h kt_cpu_value, ...). */
function pushSamples(name: SampledMap, deltas: MapDelta[], nowNs: bigint, out: SampleEvent[]): void {
  for (const { cgroupId, delta: d, intervalNs } of deltas) {
    const base = { tsNs: nowNs, cgroupId, pid: 0, tgid: 0, flags: 0, intervalNs };
    if (name === 'kt_cpu') out.push({ kind: 'cpu_sample', ...base, cpuNs: d[0] ?? 0n, switches: d[1] ?? 0n });
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

/** The map's entries, or undefined when it can't be read (then its state is left as it was). */
function readKernelMap(
  readMap: MapReader | undefined,
  name: SampledMap,
  log: Logger,
): Array<[Buffer, Buffer]> | undefined {
  if (!readMap) return [];
  try {
    return readMap(name);
  } catch (err) {
    log.debug({ err, map: name }, 'map not readable (program not loaded?)');
    return undefined;
  }
}

export function createKernelMaps(options: KernelMapsOptions): KernelMaps {
  const log = createLogger('collector.sampler');
  const warn = createThrottledWarn(log, 60_000);
  const { readMap, takeMapEntries } = options;
  const now = options.now ?? Date.now;
  const graceMs = options.removedGraceMs ?? 120_000;
  const maxRemoved = options.maxRemoved ?? 65_536;
  const takeThreshold = options.removedTakeThreshold ?? 1_024;
  const previous = new Map<SampledMap, Previous>();
  // Removed cgroup ids -> when we learnt it; insertion order is removal order.
  const removed = new Map<bigint, number>();
  // Removed since the last reading or early take; taken early once there are takeThreshold.
  const pending = new Set<bigint>();
  let earlyTakeQueued = false;
  const stats = new Map<SampledMap, MapStats>(
    SAMPLED_MAPS.map((map) => [
      map,
      { map, entries: 0, peakEntries: 0, maxEntries: undefined, deleted: 0, evicted: 0 },
    ]),
  );

  /** takeMapEntries, or undefined (logged) when it failed: the entries stay for the next reading. */
  function take(name: SampledMap, ids: bigint[]): Array<[Buffer, Buffer]> | undefined {
    if (!takeMapEntries) return undefined;
    try {
      return takeMapEntries(name, ids);
    } catch (err) {
      warn(`take:${name}`, { err, map: name }, 'could not delete removed cgroups from a kernel map');
      return undefined;
    }
  }

  function forgetRemoved(): void {
    const cutoff = now() - graceMs;
    for (const [id, at] of removed) {
      if (at > cutoff && removed.size <= maxRemoved) break;
      removed.delete(id);
    }
  }

  /**
   * Entries of removed cgroups, read and deleted in one step; their final values replace
   * what the full read saw. An entry gone meanwhile keeps its read value.
   */
  function takeRemoved(name: SampledMap, entries: Array<[Buffer, Buffer]>): Set<bigint> {
    const taken = new Set<bigint>();
    if (removed.size === 0) return taken;
    const index = new Map<bigint, number>();
    entries.forEach(([key], i) => {
      if (key.length < 8) return;
      const id = key.readBigUInt64LE(0);
      if (removed.has(id)) index.set(id, i);
    });
    if (index.size === 0) return taken;
    for (const [key, value] of take(name, [...index.keys()]) ?? []) {
      const id = key.readBigUInt64LE(0);
      const i = index.get(id);
      if (i === undefined) continue;
      entries[i] = [key, value];
      taken.add(id);
    }
    return taken;
  }

  function readOne(name: SampledMap, nowNs: bigint, out: SampleEvent[]): void {
    const entries = readKernelMap(readMap, name, log);
    if (entries === undefined) return;
    const taken = takeRemoved(name, entries);
    const { deltas, next, vanished } = mapDeltas(previous.get(name), entries, nowNs, taken);
    previous.set(name, next);
    const st = stats.get(name) as MapStats;
    st.entries = entries.length - taken.size;
    st.peakEntries = Math.max(st.peakEntries, entries.length);
    st.deleted += taken.size;
    st.evicted += vanished;
    if (st.maxEntries === undefined) {
      try {
        st.maxEntries = options.mapCapacity?.(name);
      } catch {} // not loaded (program filtered out)
    }
    if (vanished > 0)
      warn(
        `evicted:${name}`,
        { map: name, evicted: st.evicted, entries: entries.length, maxEntries: st.maxEntries },
        'kernel map entries vanished without a delete (LRU eviction: the map was full)',
      );
    pushSamples(name, deltas, nowNs, out);
  }

  /**
   * Takes the entries of cgroups removed since the last reading without waiting for the next
   * one, and emits what they gained since it (maps without a baseline yet are left to it).
   */
  function takePending(): void {
    earlyTakeQueued = false;
    const emit = maps.onEarlyTake;
    if (pending.size === 0 || emit === undefined) return; // stopped: leave them
    const ids = [...pending];
    pending.clear();
    const nowNs = options.bootNowNs();
    const out: SampleEvent[] = [];
    for (const name of SAMPLED_MAPS) {
      const before = previous.get(name);
      if (before === undefined) continue;
      const finals = take(name, ids);
      if (finals === undefined) continue;
      const taken = new Set(finals.map(([key]) => key.readBigUInt64LE(0)));
      pushSamples(name, mapDeltas(before, finals, nowNs, taken).deltas, nowNs, out);
      for (const id of taken) before.values.delete(id);
      const st = stats.get(name) as MapStats;
      st.deleted += taken.size;
      st.entries = Math.max(0, st.entries - taken.size);
    }
    if (out.length > 0) emit(out);
  }

  const maps: KernelMaps = {
    onEarlyTake: undefined,
    read(nowNs, out) {
      forgetRemoved();
      pending.clear(); // this reading takes them (and every other remembered removal it finds)
      for (const name of SAMPLED_MAPS) readOne(name, nowNs, out);
    },
    cgroupRemoved(cgroupId) {
      removed.delete(cgroupId); // re-inserted at the end: removal order
      removed.set(cgroupId, now());
      if (!takeMapEntries) return;
      pending.add(cgroupId);
      // Not in the caller's stack (the source batch path): on its own turn of the event loop.
      if (pending.size >= takeThreshold && maps.onEarlyTake !== undefined && !earlyTakeQueued) {
        earlyTakeQueued = true;
        setImmediate(() => {
          try {
            takePending();
          } catch (err) {
            log.warn({ err }, 'taking removed cgroups failed; the next reading will');
          }
        });
      }
    },
    mapStats: () => [...stats.values()].map((st) => ({ ...st })),
  };
  return maps;
}

/** Per-map occupancy and churn on /metrics, read at scrape time. */
export function registerKernelMapMetrics(registry: Registry, maps: Pick<KernelMaps, 'mapStats'>): void {
  const registers = [registry];
  const each = (fn: (st: MapStats) => void) => {
    for (const st of maps.mapStats()) fn(st);
  };
  new Gauge({
    name: 'ktrail_collector_kernel_map_entries',
    help: 'Entries in a per-cgroup kernel map after the last sample (and its deletions)',
    labelNames: ['map'],
    registers,
    collect() {
      each((st) => this.set({ map: st.map }, st.entries));
    },
  });
  new Gauge({
    name: 'ktrail_collector_kernel_map_peak_entries',
    help: 'The most entries a sample found in a per-cgroup kernel map since start',
    labelNames: ['map'],
    registers,
    collect() {
      each((st) => this.set({ map: st.map }, st.peakEntries));
    },
  });
  new Gauge({
    name: 'ktrail_collector_kernel_map_max_entries',
    help: 'Capacity (max_entries) of a per-cgroup kernel map',
    labelNames: ['map'],
    registers,
    collect() {
      each((st) => {
        if (st.maxEntries !== undefined) this.set({ map: st.map }, st.maxEntries);
      });
    },
  });
  new Counter({
    name: 'ktrail_collector_kernel_map_deleted_total',
    help: 'Entries read and deleted after their cgroup was removed',
    labelNames: ['map'],
    registers,
    collect() {
      this.reset();
      each((st) => this.inc({ map: st.map }, st.deleted));
    },
  });
  new Counter({
    name: 'ktrail_collector_kernel_map_evicted_total',
    help: 'Entries that vanished between two samples without a delete (LRU eviction of a full map)',
    labelNames: ['map'],
    registers,
    collect() {
      this.reset();
      each((st) => this.inc({ map: st.map }, st.evicted));
    },
  });
}
