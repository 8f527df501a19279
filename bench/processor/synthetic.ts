// Synthetic collector output for the processor's tests and benchmark: EventBatch messages
// (single-object Avro, exactly what the collector writes) and ContainerRecords. Every event
// has a unique (node, ts_ns), so a checker can count rows and distinct rows separately:
// count == produced means no loss, uniqExact == count means no duplicates.
import { createEncoder } from '../../schemas/codec.js';
import type { ContainerRecord, KtrailEvent } from '../../schemas/types.js';

const eventBatchEncoder = createEncoder('EventBatch');
const containerEncoder = createEncoder('ContainerRecord');

/** A recent boot: raw tables have a TTL, and rows older than it vanish on insert. */
export const BOOT_EPOCH_NS = (BigInt(Date.now()) - 3_600_000n) * 1_000_000n;
/** First cgroup id of the synthetic containers; ids below are host cgroups. */
export const CONTAINER_CGROUP_BASE = 10_000n;

export function containerId(node: string, i: number): string {
  return `${node}-c${i}`.padEnd(64, '0');
}

export function containerRecord(
  node: string,
  i: number,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    node,
    cgroupId: CONTAINER_CGROUP_BASE + BigInt(i),
    cgroupPath: `/docker/${containerId(node, i)}`,
    runtime: 'docker',
    containerId: containerId(node, i),
    name: `app-${i}`,
    image: `busybox:${i % 3}`,
    imageId: null,
    labels: { app: `app-${i}` },
    podUid: null,
    podName: `pod-${i}`,
    namespace: i % 2 === 0 ? 'prod' : 'dev',
    workloadKind: null,
    workloadName: null,
    cpuRequestMillis: null,
    cpuLimitMillis: null,
    memoryRequestBytes: null,
    memoryLimitBytes: null,
    startedAtNs: BOOT_EPOCH_NS,
    stoppedAtNs: null,
    updatedAtNs: BOOT_EPOCH_NS,
    state: 'RUNNING',
    ...over,
  };
}

export function encodeContainerRecord(rec: Record<string, unknown>): Buffer {
  return containerEncoder.encode(rec as unknown as ContainerRecord);
}

export interface SyntheticNodeOptions {
  node: string;
  containers: number;
  /** Share of proc_exit events (the rest are cpu_sample), 0..1. */
  exitShare?: number;
  /** When set, events use this cgroup id instead of a container's (late-metadata tests). */
  cgroupOverride?: bigint;
  /** exit_code of the proc_exit events (0 by default; non-zero feeds the crash-loop rule). */
  exitCode?: number;
  /**
   * Values as a live node sends them (what bytes on disk are measured on): event times ~1 ms
   * apart with ns jitter, per-sample CPU time, switches and interval that vary, pids and
   * commands of a few processes per container. Off: every value repeats (compresses to
   * nothing), which tests that count rows prefer.
   */
  realistic?: boolean;
}

/** A deterministic generator (mulberry32): the same node name gives the same stream. */
function prng(seed: string): () => number {
  let a = 0;
  for (let i = 0; i < seed.length; i++) a = (Math.imul(a, 31) + seed.charCodeAt(i)) | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMS = ['nginx', 'python3', 'java', 'node', 'sh', 'postgres', 'redis-server', 'envoy'];

/** One node's event stream; `next(n)` encodes the next EventBatch of n events. */
export class SyntheticNode {
  sequence = 0n;
  private ts = 0n;
  readonly node: string;
  private readonly random: () => number;

  constructor(private readonly opts: SyntheticNodeOptions) {
    this.node = opts.node;
    this.random = prng(opts.node);
  }

  /** A live-looking value in [0, n). */
  private pick(n: number): number {
    return Math.floor(this.random() * n);
  }

  next(n: number, bootEpochNs: bigint = BOOT_EPOCH_NS): Buffer {
    const events: KtrailEvent[] = new Array(n);
    const exitEvery =
      this.opts.exitShare === undefined || this.opts.exitShare <= 0 ? 0 : Math.round(1 / this.opts.exitShare);
    for (let i = 0; i < n; i++) {
      if (this.opts.realistic === true) {
        events[i] = this.realisticEvent(i, exitEvery);
        continue;
      }
      this.ts++;
      const cgroupId =
        this.opts.cgroupOverride ?? CONTAINER_CGROUP_BASE + (this.ts % BigInt(this.opts.containers));
      events[i] =
        exitEvery > 0 && i % exitEvery === 0
          ? {
              kind: 'proc_exit',
              tsNs: this.ts,
              cgroupId,
              pid: 100 + i,
              tgid: 100 + i,
              flags: 0,
              ppid: 1,
              exitCode: this.opts.exitCode ?? 0,
              signal: 0,
              coreDumped: 0,
              startNs: 0n,
              cpuNs: 1_000n,
              comm: 'sh',
            }
          : {
              kind: 'cpu_sample',
              tsNs: this.ts,
              cgroupId,
              pid: 0,
              tgid: 0,
              flags: 0,
              cpuNs: 5_000_000n,
              switches: 12n,
              intervalNs: 1_000_000_000n,
            };
    }
    this.sequence++;
    return encodeEventBatch(this.opts.node, this.sequence, events, bootEpochNs);
  }

  private realisticEvent(i: number, exitEvery: number): KtrailEvent {
    this.ts += 1_000_000n + BigInt(this.pick(1_000_000)); // ~1k events/s per node, unique ts
    const container = this.pick(this.opts.containers);
    const cgroupId = this.opts.cgroupOverride ?? CONTAINER_CGROUP_BASE + BigInt(container);
    const proc = this.pick(4);
    const pid = 1_000 + container * 97 + proc * 13;
    if (exitEvery > 0 && i % exitEvery === 0) {
      const exitPid = 20_000 + this.pick(40_000);
      return {
        kind: 'proc_exit',
        tsNs: this.ts,
        cgroupId,
        pid: exitPid,
        tgid: exitPid,
        flags: 0,
        ppid: pid,
        exitCode: this.opts.exitCode ?? (this.pick(10) === 0 ? 1 : 0),
        signal: 0,
        coreDumped: 0,
        startNs: this.ts > 5_000_000_000n ? this.ts - BigInt(this.pick(5_000_000_000)) : 0n,
        cpuNs: BigInt(this.pick(50_000_000)),
        comm: COMMS[(container + proc) % COMMS.length] as string,
      };
    }
    return {
      kind: 'cpu_sample',
      tsNs: this.ts,
      cgroupId,
      pid,
      tgid: pid,
      flags: 0,
      cpuNs: BigInt(this.pick(this.pick(4) === 0 ? 1_000_000_000 : 20_000_000)),
      switches: BigInt(this.pick(400)),
      intervalNs: 1_000_000_000n + BigInt(this.pick(2_000_000)) - 1_000_000n,
    };
  }
}

/** One EventBatch message (single-object Avro, as the collector writes it) of `events`. */
export function encodeEventBatch(
  node: string,
  sequence: bigint,
  events: KtrailEvent[],
  bootEpochNs: bigint = BOOT_EPOCH_NS,
): Buffer {
  return eventBatchEncoder.encode({
    node,
    bootId: 'boot-1',
    collectorVersion: 'synthetic',
    sequence,
    producedAtNs: BigInt(Date.now()) * 1_000_000n,
    bootEpochNs,
    events,
  });
}

export interface ContainerRunOptions {
  node: string;
  /** `docker run --name <name>`: the same for every run of a re-created container. */
  name: string;
  /** 64 hex digits, as Docker makes them: /docker/<id> is a container's cgroup only then. */
  containerId: string;
  cgroupId: bigint;
  /** Wall-clock ns the container's process started. */
  startNs: bigint;
  /** How long the process lived before it exited. */
  lifeMs: number;
  exitCode: number;
  image?: string;
  bootEpochNs?: bigint;
}

/**
 * What a collector sends for one run of a Docker container whose process exits with
 * `exitCode` (docker run --name X ...; then docker rm X): the kernel's events of the
 * container's cgroup and process, and the registry's records of it — first the path alone
 * (at the cgroup's mkdir, before Docker's inspect answers), then RUNNING with its name,
 * STOPPED, and REMOVED once the container is removed.
 */
export function dockerContainerRun(o: ContainerRunOptions): {
  events: KtrailEvent[];
  pathOnly: Record<string, unknown>;
  named: Record<string, unknown>[];
} {
  const epoch = o.bootEpochNs ?? BOOT_EPOCH_NS;
  const ms = 1_000_000n;
  const exitNs = o.startNs + BigInt(o.lifeMs) * ms;
  const ts = (wallNs: bigint) => wallNs - epoch;
  const cgroupPath = `/docker/${o.containerId}`;
  const pid = 40_000 + Number(o.cgroupId % 10_000n);
  const header = { cgroupId: o.cgroupId, pid, tgid: pid, flags: 0 };
  const cgroupEvent = { ...header, pid: 0, tgid: 0, level: 2, hierarchyId: 0, path: cgroupPath };
  const events: KtrailEvent[] = [
    { kind: 'cgroup_mkdir', tsNs: ts(o.startNs - 20n * ms), ...cgroupEvent },
    {
      kind: 'proc_exec',
      tsNs: ts(o.startNs),
      ...header,
      ppid: 1,
      uid: 0,
      gid: 0,
      argsCount: 3,
      argsSize: 17,
      comm: 'sh',
      filename: '/bin/sh',
      args: ['sh', '-c', `exit ${o.exitCode}`],
    },
    {
      kind: 'proc_exit',
      tsNs: ts(exitNs),
      ...header,
      ppid: 1,
      exitCode: o.exitCode,
      signal: 0,
      coreDumped: 0,
      startNs: ts(o.startNs),
      cpuNs: 2_000_000n,
      comm: 'sh',
    },
    { kind: 'cgroup_rmdir', tsNs: ts(exitNs + 5n * ms), ...cgroupEvent },
  ];
  const base = containerRecord(o.node, 0, {
    cgroupId: o.cgroupId,
    cgroupPath,
    containerId: o.containerId,
    labels: {},
    podName: null,
    namespace: null,
  });
  const pathOnly = {
    ...base,
    name: '',
    image: '',
    startedAtNs: null,
    updatedAtNs: o.startNs - 15n * ms,
    state: 'UNKNOWN',
  };
  const image = o.image ?? 'ktrail/busybox:latest';
  const named = [
    { ...base, name: o.name, image, startedAtNs: o.startNs, updatedAtNs: exitNs + 2n * ms, state: 'RUNNING' },
    {
      ...base,
      name: o.name,
      image,
      startedAtNs: o.startNs,
      stoppedAtNs: exitNs,
      updatedAtNs: exitNs + 3n * ms,
      state: 'STOPPED',
    },
    {
      ...base,
      name: o.name,
      image,
      startedAtNs: o.startNs,
      stoppedAtNs: exitNs,
      updatedAtNs: exitNs + 500n * ms,
      state: 'REMOVED',
    },
  ];
  return { events, pathOnly, named };
}

/** Bytes that are not any Avro message ktrail knows: a dead letter. */
export function poisonMessage(): Buffer {
  return Buffer.from([0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 42, 42]);
}
