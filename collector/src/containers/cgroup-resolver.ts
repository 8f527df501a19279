// cgroup id -> cgroup path -> container identity.
//
// Every kernel event carries a cgroup id (bpf_get_current_cgroup_id: the v2 cgroup's kernfs
// id, which is also the inode number of its directory on 64-bit kernels). The resolver learns
// the id -> path map once at startup by walking the v2 hierarchy (stat with bigint: ino = id),
// then keeps it current from the kernel's cgroup_mkdir / cgroup_rmdir / cgroup_rename events,
// with no rescans. A short-lived container's cgroup is gone before anyone could stat it, so
// the kernel event is the only record of it: removed cgroups stay resolvable for a grace
// period, because their last events (exit, CPU samples) arrive after the rmdir.
import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../../common/log.js';
import { type ContainerIdentity, parseCgroupPath } from './cgroup-path.js';

const log = createLogger('collector.cgroups');

export type CgroupEventKind = 'cgroup_mkdir' | 'cgroup_rmdir' | 'cgroup_rename';

/** A decoded kernel cgroup lifecycle event (path relative to the hierarchy root). */
export type CgroupEvent = {
  kind: CgroupEventKind;
  cgroupId: bigint;
  path: string;
  tsNs: bigint;
  /** Kernel hierarchy id; 0 is the v2 (default) hierarchy. Events of other hierarchies are ignored in v2 mode. */
  hierarchyId?: number;
  /** The kernel cut the path at its buffer size (events.h KT_F_TRUNCATED). */
  truncated?: boolean;
};

export type CgroupEntry = {
  id: bigint;
  /** Path relative to the hierarchy root, always starting with '/'. */
  path: string;
  identity: ContainerIdentity | undefined;
  /** Boot-time ns of the mkdir event, when the cgroup was seen being created. */
  createdNs?: bigint;
  /** Boot-time ns of the rmdir event; set once the cgroup is gone (kept for the grace period). */
  removedNs?: bigint;
  /** Date.now() when the rmdir was applied, for the grace period. */
  removedAtMs?: number;
};

export type HierarchyInfo = {
  /** Where the hierarchy is mounted, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified. */
  mountPoint: string;
  version: 1 | 2;
  /** v1 only: the controller or name= of the hierarchy used. */
  controller?: string;
};

export type CgroupResolverOptions = {
  /** Mount point to use instead of detecting one from /proc/self/mounts. */
  mountPoint?: string;
  version?: 1 | 2;
  /** How long a removed cgroup stays resolvable (default 5 min). */
  graceMs?: number;
  /** Bound on remembered cgroups (live + removed; default 100k). */
  maxEntries?: number;
  /** For tests. */
  now?: () => number;
};

export type CgroupResolverStats = {
  entries: number;
  live: number;
  removed: number;
  scanned: number;
  hits: number;
  misses: number;
  evictedRemoved: number;
  evictedLive: number;
  truncatedRepaired: number;
};

// v1 hierarchies to fall back to, in order: memory is where container limits live and every
// runtime creates a cgroup in it; name=systemd is there on any systemd host.
const V1_PREFERENCE = ['memory', 'cpu', 'pids', 'name=systemd'];
const TRUNCATION_LIMIT = 255; // events.h path[256], NUL included

/** Finds the v2 mount (pure v2 or hybrid), else a v1 hierarchy, from /proc/self/mounts. */
export async function detectHierarchy(mountsFile = '/proc/self/mounts'): Promise<HierarchyInfo> {
  const mounts = (await readFile(mountsFile, 'utf8')).split('\n').map((line) => line.split(' '));
  const v2 = mounts.filter((m) => m[2] === 'cgroup2').map((m) => m[1]!);
  // /sys/fs/cgroup on pure v2 hosts, /sys/fs/cgroup/unified on hybrid ones; prefer the canonical one.
  const v2Mount =
    v2.find((p) => p === '/sys/fs/cgroup') ?? v2.find((p) => p === '/sys/fs/cgroup/unified') ?? v2[0];
  if (v2Mount !== undefined) return { mountPoint: v2Mount, version: 2 };
  const v1 = mounts.filter((m) => m[2] === 'cgroup');
  for (const want of V1_PREFERENCE) {
    const m = v1.find((x) => (x[3] ?? '').split(',').includes(want));
    if (m) return { mountPoint: m[1]!, version: 1, controller: want };
  }
  throw new Error('no cgroup hierarchy mounted (no cgroup2 or cgroup entries in ' + mountsFile + ')');
}

/**
 * A process's cgroup path, from /proc/<pid>/cgroup: in the given hierarchy, else the v2 one
 * (the `0::` line); '' when the process is gone or has no such line.
 */
export async function pathFromProc(pid: number, hierarchy?: HierarchyInfo): Promise<string> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return '';
  }
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, num, controllers, path] = m as unknown as [string, string, string, string];
    const wanted =
      hierarchy?.version === 1
        ? controllers.split(',').includes(hierarchy.controller ?? '')
        : num === '0' && controllers === '';
    if (wanted) return path;
  }
  return '';
}

/**
 * A cut path's last component is partial (a cut container id would not parse, or worse, an
 * outer container would be taken for the cgroup): use the deepest complete ancestor until the
 * real path is known.
 */
function identityOf(path: string, truncated: boolean): ContainerIdentity | undefined {
  return parseCgroupPath(truncated ? path.slice(0, path.lastIndexOf('/')) : path);
}

function normalize(path: string): string {
  if (path === '' || path === '/') return '/';
  const p = path.startsWith('/') ? path : '/' + path;
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

export class CgroupResolver {
  readonly hierarchy: HierarchyInfo;
  private readonly entries = new Map<bigint, CgroupEntry>();
  // path -> id of the latest cgroup known at that path (live or removed within the grace
  // period), so a record of another hierarchy with the same path finds its v2 cgroup.
  private readonly byPath = new Map<string, bigint>();
  // Removed entries in removal order, so expiry and eviction look only at the head.
  private readonly removedQueue = new IdQueue();
  private removedCount = 0;
  private readonly graceMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly counters: Omit<CgroupResolverStats, 'entries' | 'live' | 'removed'> = {
    scanned: 0,
    hits: 0,
    misses: 0,
    evictedRemoved: 0,
    evictedLive: 0,
    truncatedRepaired: 0,
  };
  private readonly listeners: ((entry: CgroupEntry, kind: CgroupEventKind | 'scan') => void)[] = [];

  private constructor(hierarchy: HierarchyInfo, options: CgroupResolverOptions) {
    this.hierarchy = hierarchy;
    this.graceMs = options.graceMs ?? 5 * 60_000;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  /** Detects the hierarchy (unless given) and runs the startup scan. */
  static async create(options: CgroupResolverOptions = {}): Promise<CgroupResolver> {
    const hierarchy: HierarchyInfo =
      options.mountPoint !== undefined
        ? { mountPoint: options.mountPoint, version: options.version ?? 2 }
        : await detectHierarchy();
    if (hierarchy.version === 1) {
      // Kernel events carry the v2 id, which on a v1-only host is the v2 root for every task:
      // the map below then names v1 cgroups, useful only to a BPF side that reads v1 ids.
      log.warn(
        { hierarchy },
        'no cgroup v2 hierarchy: resolving v1 cgroup ids (identity only where the kernel side reports v1 ids)',
      );
    }
    const resolver = new CgroupResolver(hierarchy, options);
    const started = performance.now();
    await resolver.scan();
    log.info(
      { hierarchy, cgroups: resolver.entries.size, ms: Math.round(performance.now() - started) },
      'cgroup scan done',
    );
    return resolver;
  }

  /** Walks the hierarchy and records every cgroup directory (ino = cgroup id). */
  async scan(): Promise<number> {
    let count = 0;
    const walk = async (rel: string): Promise<void> => {
      const abs = rel === '/' ? this.hierarchy.mountPoint : join(this.hierarchy.mountPoint, rel);
      let st: { ino: bigint };
      let children: Dirent[];
      try {
        st = await stat(abs, { bigint: true });
        children = await readdir(abs, { withFileTypes: true });
      } catch {
        return; // removed while we walked: the rmdir event (if any) tells the rest
      }
      if (!this.entries.has(st.ino))
        this.insert({ id: st.ino, path: rel, identity: parseCgroupPath(rel) }, 'scan');
      count++;
      // Siblings in parallel: the walk is bound by syscall latency, not CPU.
      await Promise.all(
        children
          .filter((child) => child.isDirectory())
          .map((child) => walk(rel === '/' ? '/' + child.name : rel + '/' + child.name)),
      );
    };
    await walk('/');
    this.counters.scanned += count;
    return count;
  }

  /** Applies one kernel cgroup event; returns the entry it touched. Cheap: no I/O. */
  apply(event: CgroupEvent): CgroupEntry | undefined {
    if (this.hierarchy.version === 2 && event.hierarchyId !== undefined && event.hierarchyId !== 0)
      return undefined;
    this.expire();
    const path = normalize(event.path);
    const truncated = event.truncated === true || event.path.length >= TRUNCATION_LIMIT;
    switch (event.kind) {
      case 'cgroup_mkdir': {
        const entry: CgroupEntry = {
          id: event.cgroupId,
          path,
          identity: identityOf(path, truncated),
          createdNs: event.tsNs,
        };
        this.drop(event.cgroupId); // a reused id starts over
        this.insert(entry, event.kind);
        if (truncated) void this.repairTruncated(entry);
        return entry;
      }
      case 'cgroup_rename': {
        const entry = this.entries.get(event.cgroupId);
        if (!entry) {
          const fresh: CgroupEntry = { id: event.cgroupId, path, identity: identityOf(path, truncated) };
          this.insert(fresh, event.kind);
          return fresh;
        }
        this.unindex(entry);
        entry.path = path;
        entry.identity = identityOf(path, truncated);
        this.byPath.set(path, entry.id);
        this.emit(entry, event.kind);
        if (truncated) void this.repairTruncated(entry);
        return entry;
      }
      case 'cgroup_rmdir': {
        let entry = this.entries.get(event.cgroupId);
        if (!entry) {
          // Created before we started and missed by the scan (or evicted): the rmdir still names it.
          entry = { id: event.cgroupId, path, identity: identityOf(path, truncated) };
          this.insert(entry, event.kind);
        }
        if (entry.removedAtMs === undefined) {
          entry.removedNs = event.tsNs;
          entry.removedAtMs = this.now();
          this.removedQueue.push(entry.id);
          this.removedCount++;
        }
        this.emit(entry, event.kind);
        return entry;
      }
    }
  }

  /** The cgroup for a kernel event's cgroup id (live, or removed within the grace period). */
  resolve(id: bigint): CgroupEntry | undefined {
    const entry = this.entries.get(id);
    if (entry) this.counters.hits++;
    else this.counters.misses++;
    return entry;
  }

  /**
   * The id of the cgroup known at this path (relative to the hierarchy root), live or removed
   * within the grace period; no I/O. Runtimes give a container the same path in every
   * hierarchy, so this maps a v1 cgroup (memory) to the v2 one events are keyed by.
   */
  idOfKnownPath(path: string): bigint | undefined {
    return this.byPath.get(normalize(path));
  }

  /** The cgroup id of a path relative to the hierarchy root (stat of the live directory). */
  async idOfPath(path: string): Promise<bigint | undefined> {
    const rel = normalize(path);
    try {
      const st = await stat(rel === '/' ? this.hierarchy.mountPoint : join(this.hierarchy.mountPoint, rel), {
        bigint: true,
      });
      if (!this.entries.has(st.ino))
        this.insert({ id: st.ino, path: rel, identity: parseCgroupPath(rel) }, 'scan');
      return st.ino;
    } catch {
      return undefined;
    }
  }

  /** Every cgroup known now (live, or removed within the grace period). */
  all(): IterableIterator<CgroupEntry> {
    this.expire();
    return this.entries.values();
  }

  /** Called for every new, renamed, removed or scanned cgroup (the container registry listens). */
  onChange(listener: (entry: CgroupEntry, kind: CgroupEventKind | 'scan') => void): void {
    this.listeners.push(listener);
  }

  stats(): CgroupResolverStats {
    this.expire();
    return {
      entries: this.entries.size,
      live: this.entries.size - this.removedCount,
      removed: this.removedCount,
      ...this.counters,
    };
  }

  private emit(entry: CgroupEntry, kind: CgroupEventKind | 'scan'): void {
    for (const listener of this.listeners) listener(entry, kind);
  }

  private insert(entry: CgroupEntry, kind: CgroupEventKind | 'scan'): void {
    this.entries.set(entry.id, entry);
    this.byPath.set(entry.path, entry.id);
    if (this.entries.size > this.maxEntries) this.evict();
    this.emit(entry, kind);
  }

  private drop(id: bigint): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    if (entry.removedAtMs !== undefined) this.removedCount--;
    this.unindex(entry);
    this.entries.delete(id);
  }

  /** Forgets the entry's path unless a newer cgroup took it over. */
  private unindex(entry: CgroupEntry): void {
    if (this.byPath.get(entry.path) === entry.id) this.byPath.delete(entry.path);
  }

  /** Drops removed cgroups whose grace period is over. */
  private expire(): void {
    const cutoff = this.now() - this.graceMs;
    while (this.removedQueue.length > 0) {
      const id = this.removedQueue.peek()!;
      const entry = this.entries.get(id);
      if (entry?.removedAtMs !== undefined && entry.removedAtMs > cutoff) break;
      this.removedQueue.shift();
      if (entry?.removedAtMs !== undefined) this.drop(id);
    }
  }

  /** Over the bound: the oldest removed cgroups go first, then the oldest live ones (counted). */
  private evict(): void {
    while (this.entries.size > this.maxEntries && this.removedQueue.length > 0) {
      const id = this.removedQueue.shift()!;
      if (this.entries.get(id)?.removedAtMs !== undefined) {
        this.drop(id);
        this.counters.evictedRemoved++;
      }
    }
    for (const id of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.drop(id);
      this.counters.evictedLive++;
    }
  }

  /**
   * The kernel cut a long path (kind and nested k8s paths pass 255 bytes). While the cgroup
   * still exists, find its real path: the deepest existing ancestor of the cut path holds a
   * directory whose inode is the id.
   */
  private async repairTruncated(entry: CgroupEntry): Promise<void> {
    const parts = entry.path.split('/').filter(Boolean);
    parts.pop(); // the last component is the one that was cut
    const base = '/' + parts.join('/');
    const found = await this.findById(base, entry.id, 4);
    if (found !== undefined && this.entries.get(entry.id) === entry) {
      this.unindex(entry);
      entry.path = found;
      this.byPath.set(found, entry.id);
      entry.identity = parseCgroupPath(found);
      this.counters.truncatedRepaired++;
      this.emit(entry, 'cgroup_rename');
    }
  }

  private async findById(rel: string, id: bigint, depth: number): Promise<string | undefined> {
    const abs = rel === '/' ? this.hierarchy.mountPoint : join(this.hierarchy.mountPoint, rel);
    let children: Dirent[];
    try {
      children = await readdir(abs, { withFileTypes: true });
    } catch {
      return undefined;
    }
    for (const child of children) {
      if (!child.isDirectory()) continue;
      const childRel = rel === '/' ? '/' + child.name : rel + '/' + child.name;
      try {
        if ((await stat(join(abs, child.name), { bigint: true })).ino === id) return childRel;
      } catch {}
      if (depth > 0) {
        const deeper = await this.findById(childRel, id, depth - 1);
        if (deeper !== undefined) return deeper;
      }
    }
    return undefined;
  }
}

/** FIFO of cgroup ids with O(1) push and shift (Array.prototype.shift is O(n) on big arrays). */
class IdQueue {
  private items: bigint[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(id: bigint): void {
    this.items.push(id);
  }

  peek(): bigint | undefined {
    return this.items[this.head];
  }

  shift(): bigint | undefined {
    const id = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return id;
  }
}

/** What the metadata providers need from the cgroup resolver (kept narrow for testing and reuse). */
export type CgroupLookup = {
  hierarchy: HierarchyInfo;
  idOfPath(path: string): Promise<bigint | undefined>;
};
