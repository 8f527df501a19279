// The container registry: joins what the kernel says about cgroups (resolver: cgroup id ->
// path -> runtime + container id) with what the runtimes say about containers (providers:
// name, image, labels, pod, times), and emits one ContainerRecord per (cgroup id, change).
//
// Either side may come first or alone. A short-lived container may be known only from its
// kernel mkdir/rmdir (the record then has the identity from the path and REMOVED state); its
// name may arrive later from Docker's event stream, so the container id -> cgroup ids map
// outlives the cgroup (bounded) and a late provider record still joins and is re-emitted.
import { readFileSync } from 'node:fs';
import { createLogger } from '../../../common/log.js';
import type { CgroupEntry, CgroupEventKind, CgroupResolver } from './cgroup-resolver.js';
import type { ContainerRecord, MetadataProvider } from './types.js';
import { wallNs } from './types.js';

const log = createLogger('collector.containers');

type Resolver = Pick<CgroupResolver, 'onChange' | 'resolve' | 'all'>;

export type ContainerRegistryOptions = {
  node: string;
  resolver: Resolver;
  providers: MetadataProvider[];
  onRecord: (record: ContainerRecord) => void;
  /** Boot-time ns (kernel event clock) -> Unix ns. Default: offset from /proc/uptime at start. */
  bootToWallNs?: (bootNs: bigint) => bigint;
  /** Bound on remembered containers (metadata and container -> cgroup ids), default 50k. */
  maxContainers?: number;
};

export type ContainerRegistryStats = {
  containers: number;
  cgroups: number;
  emitted: number;
  /** Provider records emitted before any cgroup of theirs was known (cgroupId 0). */
  unjoined: number;
  /** Records not emitted because nothing but updatedAtNs changed (pod status churn). */
  unchanged: number;
  evicted: number;
};

type CgroupSide = { id: bigint; path: string; containerId: string; createdNs?: bigint; removedNs?: bigint };

/** Wall-clock offset of the boot-time clock (10 ms precision from /proc/uptime). */
function bootOffsetNs(): bigint {
  const uptimeSec = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return wallNs() - BigInt(Math.round(uptimeSec * 1e9));
}

export class ContainerRegistry {
  private readonly meta = new Map<string, ContainerRecord>();
  private readonly cgroupsOf = new Map<string, Set<bigint>>();
  private readonly cgroups = new Map<bigint, CgroupSide>();
  private readonly toWall: (bootNs: bigint) => bigint;
  private readonly max: number;
  private readonly counters = { emitted: 0, unjoined: 0, unchanged: 0, evicted: 0 };
  // Last emitted content per cgroup id (or container id while unjoined), to skip repeats.
  private readonly lastEmitted = new Map<string, string>();
  private readonly options: ContainerRegistryOptions;

  constructor(options: ContainerRegistryOptions) {
    this.options = options;
    this.max = options.maxContainers ?? 50_000;
    if (options.bootToWallNs) this.toWall = options.bootToWallNs;
    else {
      const offset = bootOffsetNs();
      this.toWall = (ns) => ns + offset;
    }
    // What the resolver already knows (its startup scan), then every change.
    for (const entry of options.resolver.all()) this.onCgroup(entry, 'scan');
    options.resolver.onChange((entry, kind) => this.onCgroup(entry, kind));
  }

  /** Starts every provider; a provider that fails to start is logged, the others run. */
  async start(): Promise<void> {
    const results = await Promise.allSettled(
      this.options.providers.map((p) => p.start((r) => this.onProvider(r))),
    );
    results.forEach((r, i) => {
      if (r.status === 'rejected')
        log.error({ err: r.reason, provider: i }, 'metadata provider failed to start');
    });
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.options.providers.map((p) => p.stop()));
  }

  /** The latest joined record for a cgroup id, if it belongs to a container. */
  lookup(cgroupId: bigint): ContainerRecord | undefined {
    const side = this.cgroups.get(cgroupId);
    return side ? this.join(side) : undefined;
  }

  stats(): ContainerRegistryStats {
    return { containers: this.meta.size, cgroups: this.cgroups.size, ...this.counters };
  }

  private onCgroup(entry: CgroupEntry, kind: CgroupEventKind | 'scan'): void {
    const identity = entry.identity;
    if (!identity) {
      // A rename that moved a cgroup out of a container, or a path repaired to a non-container.
      if (kind === 'cgroup_rename') {
        this.cgroups.delete(entry.id);
        this.lastEmitted.delete(String(entry.id));
      }
      return;
    }
    const side: CgroupSide = { id: entry.id, path: entry.path, containerId: identity.containerId };
    if (entry.createdNs !== undefined) side.createdNs = entry.createdNs;
    if (entry.removedNs !== undefined) side.removedNs = entry.removedNs;
    this.cgroups.set(entry.id, side);
    this.link(identity.containerId, entry.id);
    // No metadata yet: publish what the path says, so even a container nobody describes
    // (or one that is gone before its runtime answers) has a record.
    if (!this.meta.has(identity.containerId)) {
      const skeleton: ContainerRecord = {
        node: this.options.node,
        cgroupId: entry.id,
        cgroupPath: entry.path,
        runtime: identity.runtime,
        containerId: identity.containerId,
        name: '',
        image: '',
        labels: {},
        updatedAtNs: wallNs(),
        state: 'UNKNOWN',
      };
      if (identity.podUid !== undefined) skeleton.podUid = identity.podUid;
      this.meta.set(identity.containerId, skeleton);
    }
    this.emit(this.join(side));
  }

  private onProvider(record: ContainerRecord): void {
    const prev = this.meta.get(record.containerId);
    const merged = prev ? mergeRecords(prev, record) : { ...record };
    this.meta.set(record.containerId, merged);
    if (!prev) this.bound();
    // A provider that resolved the cgroup itself (stat of a live cgroup) teaches us the id.
    if (record.cgroupId !== 0n && !this.cgroups.has(record.cgroupId)) {
      this.cgroups.set(record.cgroupId, {
        id: record.cgroupId,
        path: record.cgroupPath,
        containerId: record.containerId,
      });
      this.link(record.containerId, record.cgroupId);
    }
    const ids = this.cgroupsOf.get(record.containerId);
    if (!ids || ids.size === 0) {
      this.counters.unjoined++;
      const unjoined = { ...merged, updatedAtNs: wallNs() };
      orderTimes(unjoined, undefined);
      this.emit(unjoined);
      return;
    }
    for (const id of ids) {
      const side = this.cgroups.get(id);
      if (side) this.emit(this.join(side));
    }
  }

  /** Provider metadata + this cgroup's own path, id and kernel-observed lifetime. */
  private join(side: CgroupSide): ContainerRecord {
    const base = this.meta.get(side.containerId);
    const record: ContainerRecord = {
      ...(base ?? {
        node: this.options.node,
        runtime: 'unknown',
        containerId: side.containerId,
        name: '',
        image: '',
        labels: {},
        state: 'UNKNOWN' as const,
      }),
      node: this.options.node,
      cgroupId: side.id,
      cgroupPath: side.path,
      updatedAtNs: wallNs(),
    };
    const createdNs = side.createdNs === undefined ? undefined : this.toWall(side.createdNs);
    if (record.startedAtNs === undefined && createdNs !== undefined) record.startedAtNs = createdNs;
    if (side.removedNs !== undefined) {
      // The cgroup is gone: the container is, whatever the runtime said last.
      record.state = 'REMOVED';
      record.stoppedAtNs ??= this.toWall(side.removedNs);
    } else if (record.state === 'UNKNOWN') {
      record.state = 'RUNNING'; // a live cgroup with processes in it, as far as we know
    }
    orderTimes(record, createdNs);
    return record;
  }

  private emit(record: ContainerRecord): void {
    const key = record.cgroupId === 0n ? record.containerId : String(record.cgroupId);
    const content = signature(record);
    if (this.lastEmitted.get(key) === content) {
      this.counters.unchanged++;
      return;
    }
    this.lastEmitted.set(key, content);
    this.counters.emitted++;
    this.options.onRecord(record);
  }

  private link(containerId: string, cgroupId: bigint): void {
    let ids = this.cgroupsOf.get(containerId);
    if (!ids) {
      ids = new Set();
      this.cgroupsOf.set(containerId, ids);
      this.bound();
    }
    ids.add(cgroupId);
  }

  /** Forget the oldest containers beyond the bound (Map order = first seen). */
  private bound(): void {
    while (this.meta.size > this.max || this.cgroupsOf.size > this.max) {
      const oldest = this.meta.keys().next().value ?? this.cgroupsOf.keys().next().value;
      if (oldest === undefined) return;
      this.meta.delete(oldest);
      for (const id of this.cgroupsOf.get(oldest) ?? []) {
        this.cgroups.delete(id);
        this.lastEmitted.delete(String(id));
      }
      this.lastEmitted.delete(oldest);
      this.cgroupsOf.delete(oldest);
      this.counters.evicted++;
    }
  }
}

/**
 * A container does not stop before it starts, but runtimes' own times can say so: Docker
 * stamps StartedAt once its start call has returned and FinishedAt with the shim's exit
 * time, so a process that exits at once "stops" before it "started" (containerd's task
 * start event alike). The start is then the kernel's cgroup creation (before the process
 * ran) when known and not after the stop, else the stop itself.
 */
export function orderTimes(record: ContainerRecord, kernelCreatedNs: bigint | undefined): void {
  const { startedAtNs: started, stoppedAtNs: stopped } = record;
  if (started === undefined || stopped === undefined || started <= stopped) return;
  record.startedAtNs =
    kernelCreatedNs !== undefined && kernelCreatedNs <= stopped ? kernelCreatedNs : stopped;
}

/** Later provider data wins field by field; labels are merged (Docker + Kubernetes both add). */
export function mergeRecords(prev: ContainerRecord, next: ContainerRecord): ContainerRecord {
  const merged: ContainerRecord = { ...prev };
  for (const [key, value] of Object.entries(next) as [keyof ContainerRecord, unknown][]) {
    if (value === undefined || value === '' || key === 'labels' || key === 'cgroupId' || key === 'cgroupPath')
      continue;
    if (key === 'runtime' && value === 'kubernetes' && prev.runtime !== 'unknown') continue;
    if (key === 'state' && value === 'UNKNOWN') continue;
    (merged as Record<string, unknown>)[key] = value;
  }
  merged.labels = { ...prev.labels, ...next.labels };
  // Started again after it stopped (docker start, a restart policy): the old stop is not this run's.
  if (
    next.stoppedAtNs === undefined &&
    next.startedAtNs !== undefined &&
    prev.stoppedAtNs !== undefined &&
    next.startedAtNs > prev.stoppedAtNs
  )
    delete merged.stoppedAtNs;
  if (next.cgroupId !== 0n) {
    merged.cgroupId = next.cgroupId;
    merged.cgroupPath = next.cgroupPath;
  } else if (merged.cgroupPath === '') merged.cgroupPath = next.cgroupPath;
  return merged;
}

/** Everything but updatedAtNs, as a string (bigints included), to tell a real change. */
function signature(r: ContainerRecord): string {
  let out = '';
  for (const key of Object.keys(r).sort()) {
    if (key === 'updatedAtNs') continue;
    const v = (r as Record<string, unknown>)[key];
    if (v === undefined) continue;
    out +=
      key +
      '=' +
      (typeof v === 'object' && v !== null ? JSON.stringify(v, Object.keys(v).sort()) : String(v)) +
      ';';
  }
  return out;
}
