// The container record every metadata provider publishes, and the provider interface.
// Same fields as schemas/ContainerRecord.avsc (io.ktrail.v1.ContainerRecord): optional
// fields here are the Avro ["null", T] unions (undefined -> null when encoding).
import type { ContainerState } from '../../../schemas/types.js';
import type { ContainerRuntime } from './cgroup-path.js';

/** The Avro enum io.ktrail.v1.ContainerState (REMOVED: the container and its cgroup are gone). */
export type { ContainerState };

export type ContainerRecord = {
  node: string;
  /** v2 cgroup id (inode of the cgroup dir); 0n while not known yet. */
  cgroupId: bigint;
  /** Path relative to the v2 root; '' while not known yet. */
  cgroupPath: string;
  runtime: ContainerRuntime | string;
  containerId: string;
  name: string;
  image: string;
  imageId?: string;
  labels: Record<string, string>;
  podUid?: string;
  podName?: string;
  namespace?: string;
  workloadKind?: string;
  workloadName?: string;
  cpuRequestMillis?: bigint;
  cpuLimitMillis?: bigint;
  memoryRequestBytes?: bigint;
  memoryLimitBytes?: bigint;
  /** Wall clock, Unix ns. */
  startedAtNs?: bigint;
  stoppedAtNs?: bigint;
  updatedAtNs: bigint;
  state: ContainerState;
  /** The runtime's own namespace (containerd: k8s.io for CRI, default for ctr and nerdctl). */
  runtimeNamespace?: string;
};

/** A source of container metadata (Docker, containerd, the Kubernetes pod watch). */
export interface MetadataProvider {
  /** Publishes what exists now, then every change, until stop(). Resolves once the initial list is out. */
  start(onRecord: (record: ContainerRecord) => void): Promise<void>;
  stop(): Promise<void>;
}

/** Unix time in ns as bigint, now. */
export function wallNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/**
 * RFC 3339 time with up to 9 fractional digits (Docker, containerd, Kubernetes) -> Unix ns.
 * Undefined for missing values and Go's zero time (0001-01-01...), which runtimes use for "never".
 */
export function rfc3339ToNs(value: string | undefined | null): bigint | undefined {
  if (!value || value.startsWith('0001-01-01')) return undefined;
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(value);
  if (!m) {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : BigInt(ms) * 1_000_000n;
  }
  const seconds = Date.parse(m[1]! + m[3]!);
  if (Number.isNaN(seconds)) return undefined;
  return BigInt(seconds) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}
