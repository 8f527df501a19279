// Container metadata for the partitions one member owns, versioned by time: each
// (node, cgroup id) keeps the records the collector published for it, so an event joins
// the record that was valid when it happened (labels and pod fields can change during a
// container's life). Stopped containers are evicted after a retention, so memory follows
// the number of live containers, not the history.

/** What the processor needs from a ContainerRecord (schemas/ContainerRecord.avsc). */
export interface ContainerMeta {
  node: string;
  cgroupId: bigint;
  containerId: string;
  /** docker | containerd | cri-o | podman | ... ('' when unknown). */
  runtime: string;
  cgroupPath: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  pod: string;
  podUid: string;
  namespace: string;
  /** The Kubernetes owner's kind (Deployment, StatefulSet, ...) and name; '' elsewhere. */
  workloadKind: string;
  workload: string;
  /** The runtime's own namespace (containerd: k8s.io for CRI, default for ctr); '' when none. */
  runtimeNamespace: string;
  /** Wall-clock ns; 0 = unknown. */
  startedAtNs: bigint;
  /** Wall-clock ns; 0 = still running. */
  stoppedAtNs: bigint;
  updatedAtNs: bigint;
  state: string;
}

/**
 * Whether a record describes its container: the runtime (or the kubelet) named it and its
 * image. Only such a record joins events; the collector's first record of a new cgroup,
 * made from its path alone, does not (a row waits for the runtime's, then goes pending).
 */
export function describes(meta: ContainerMeta): boolean {
  return meta.name !== '' && meta.image !== '';
}

interface Version {
  validFromNs: bigint;
  meta: ContainerMeta;
}

interface Entry {
  /** Sorted by validFromNs ascending. */
  versions: Version[];
  stoppedAtNs: bigint;
}

/** cgroup v2 root: its directory inode is always 1. */
const ROOT_CGROUP_ID = 1n;

export interface MetadataTableStats {
  containers: number;
  versions: number;
  evictions: number;
}

export class MetadataTable {
  private readonly byNode = new Map<string, Map<bigint, Entry>>();
  /** cgroups known not to be containers (from cgroup_mkdir events or records without a container id). */
  private readonly hostByNode = new Map<string, Set<bigint>>();
  private versionCount = 0;
  evictions = 0;

  constructor(private readonly retentionNs: bigint) {}

  upsert(meta: ContainerMeta): void {
    if (meta.containerId === '') {
      this.markHost(meta.node, meta.cgroupId);
      return;
    }
    // A runtime's record says the cgroup is a container, whatever its path looked like (ctr's
    // free-form ids are not in the path parser's patterns).
    this.hostByNode.get(meta.node)?.delete(meta.cgroupId);
    let perNode = this.byNode.get(meta.node);
    if (perNode === undefined) {
      perNode = new Map();
      this.byNode.set(meta.node, perNode);
    }
    let entry = perNode.get(meta.cgroupId);
    if (entry === undefined) {
      entry = { versions: [], stoppedAtNs: 0n };
      perNode.set(meta.cgroupId, entry);
    }
    // The first version is valid from the container's start; later ones from their update.
    const validFromNs =
      entry.versions.length === 0 ? minNonZero(meta.startedAtNs, meta.updatedAtNs) : meta.updatedAtNs;
    const versions = entry.versions;
    const same = versions.findIndex((v) => v.meta.updatedAtNs === meta.updatedAtNs);
    if (same >= 0) {
      (versions[same] as Version).meta = meta; // re-read of the compacted topic: idempotent
    } else {
      let i = versions.length;
      while (i > 0 && (versions[i - 1] as Version).validFromNs > validFromNs) i--;
      versions.splice(i, 0, { validFromNs, meta });
      this.versionCount++;
    }
    if (meta.stoppedAtNs > 0n) entry.stoppedAtNs = meta.stoppedAtNs;
  }

  markHost(node: string, cgroupId: bigint): void {
    let set = this.hostByNode.get(node);
    if (set === undefined) {
      set = new Set();
      this.hostByNode.set(node, set);
    }
    set.add(cgroupId);
  }

  /** Whether some runtime record (named or not) exists for the cgroup. */
  hasRecord(node: string, cgroupId: bigint): boolean {
    return this.byNode.get(node)?.has(cgroupId) === true;
  }

  isHost(node: string, cgroupId: bigint): boolean {
    return cgroupId === ROOT_CGROUP_ID || this.hostByNode.get(node)?.has(cgroupId) === true;
  }

  /**
   * The record that describes the container at `atNs` (wall clock), or undefined while no
   * record of the cgroup does (unknown, or known only by its path).
   */
  lookup(node: string, cgroupId: bigint, atNs: bigint): ContainerMeta | undefined {
    const versions = this.byNode.get(node)?.get(cgroupId)?.versions;
    if (versions === undefined) return undefined;
    // Latest description valid at the event; an event before the first one (an exec before
    // the runtime reported the start, a container gone before it was named) joins the first:
    // a container's name and image do not change while it lives.
    let first: ContainerMeta | undefined;
    for (let i = versions.length - 1; i >= 0; i--) {
      const v = versions[i] as Version;
      if (!describes(v.meta)) continue;
      if (v.validFromNs <= atNs) return v.meta;
      first = v.meta;
    }
    return first;
  }

  /** The newest record that describes the container, whatever its time. */
  named(node: string, cgroupId: bigint): ContainerMeta | undefined {
    const versions = this.byNode.get(node)?.get(cgroupId)?.versions;
    if (versions === undefined) return undefined;
    for (let i = versions.length - 1; i >= 0; i--) {
      const meta = (versions[i] as Version).meta;
      if (describes(meta)) return meta;
    }
    return undefined;
  }

  /** The newest record of a cgroup, whether it describes the container or knows only its path. */
  newest(node: string, cgroupId: bigint): ContainerMeta | undefined {
    return this.byNode.get(node)?.get(cgroupId)?.versions.at(-1)?.meta;
  }

  /** Drops containers stopped more than the retention ago; returns how many went. */
  evictStopped(nowNs: bigint): number {
    let n = 0;
    for (const perNode of this.byNode.values()) {
      for (const [cgroupId, entry] of perNode) {
        if (entry.stoppedAtNs > 0n && nowNs - entry.stoppedAtNs > this.retentionNs) {
          perNode.delete(cgroupId);
          this.versionCount -= entry.versions.length;
          n++;
        }
      }
    }
    this.evictions += n;
    return n;
  }

  stats(): MetadataTableStats {
    let containers = 0;
    for (const perNode of this.byNode.values()) containers += perNode.size;
    return { containers, versions: this.versionCount, evictions: this.evictions };
  }
}

function minNonZero(a: bigint, b: bigint): bigint {
  if (a === 0n) return b;
  if (b === 0n) return a;
  return a < b ? a : b;
}
