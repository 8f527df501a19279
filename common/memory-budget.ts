// The memory budget rule, for both processes: how many bytes a process may use, and how its
// bounded buffers are sized from that, so that no outage can grow it past its memory limit
// (DESIGN.md pitfall 17: a buffer sized like the limit turns an outage into an OOM kill
// that loses the buffer and its counters).
//
//   budget   = <process>.memoryBudgetBytes, else the cgroup's limit (cgroup-memory.ts),
//              else the limit the Kubernetes manifests ship (deploy/k8s), so a process
//              without a limit behaves as it would in its pod
//   free     = budget - baseline (the process at steady state, measured) - headroom
//   buffers  = free / what one buffered byte (or row) costs in resident memory
//
// Every number below was measured on this fleet; docs/collector.md and docs/processor.md
// ("Memory budget") have the runs.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { type CgroupMemoryLimit, readCgroupMemoryLimit } from './cgroup-memory.js';
import { ConfigError } from './errors.js';

const MiB = 1024 * 1024;

/** deploy/k8s/collector-daemonset.yaml and processor-deployment.yaml `limits.memory`. */
export const SHIPPED_LIMIT = { collector: 512 * MiB, processor: 1024 * MiB } as const;

export type BudgetSource = 'setting' | 'cgroup' | 'default';

export interface MemoryBudget {
  bytes: number;
  source: BudgetSource;
  /** The setting's name, the cgroup file, or why the default applies: for logs and errors. */
  from: string;
}

/**
 * The budget: the setting when given (never above the cgroup's limit: that is an OOM kill
 * waiting for load), else the cgroup's limit, else the shipped limit.
 */
export function resolveBudget(
  setting: { name: string; value: number | undefined },
  fallbackBytes: number,
  cgroup: CgroupMemoryLimit = readCgroupMemoryLimit(),
): MemoryBudget {
  const limit = cgroup.limitBytes;
  if (setting.value !== undefined) {
    if (limit !== undefined && setting.value > limit)
      throw new ConfigError(
        `${setting.name} (${mib(setting.value)}) is above this process's memory limit ` +
          `(${mib(limit)}, ${cgroup.file}): lower it, or raise the limit`,
      );
    return { bytes: setting.value, source: 'setting', from: setting.name };
  }
  if (limit !== undefined) return { bytes: limit, source: 'cgroup', from: cgroup.file ?? 'cgroup' };
  return { bytes: fallbackBytes, source: 'default', from: 'no cgroup memory limit: the shipped limit' };
}

// --- collector ----------------------------------------------------------------------------

/**
 * RSS of the compiled collector (deploy/docker/entrypoint.sh flags) at steady state with an
 * empty buffer: 120 MiB peak at 50k events/s, 129-138 MiB at 400k+ events/s (the benchmark).
 */
export const COLLECTOR_BASELINE_BYTES = 144 * MiB;
/** Kernel memory the eBPF objects charge to the collector's cgroup, besides the ring buffer
 * (docs/bpf.md, map table): ~4 MiB, plus per-CPU map values of 5.25 MiB per CPU. */
export const KERNEL_MAPS_FIXED_BYTES = 4 * MiB;
export const KERNEL_MAPS_PER_CPU_BYTES = 5.25 * MiB;
/**
 * Resident bytes per queued byte. glibc's sliding mmap threshold makes the ~270 KB messages
 * come from its heap, fragmenting it: 1.26 measured. With MALLOC_MMAP_THRESHOLD_ fixed at
 * 131072 each is its own mapping: 1.02 measured. The image leaves it unset (it costs CPU:
 * docs/collector.md); an operator who sets it gets the smaller factor.
 */
export const QUEUE_BYTE_COST = { fixedMmapThreshold: 1.05, glibcDefault: 1.3 } as const;
/** A queued message's object, Buffer and allocation header, charged per message. */
export const QUEUE_MESSAGE_OVERHEAD_BYTES = 512;
/** bufferMaxMessages when derived: one message per this many buffered bytes. */
export const BYTES_PER_DERIVED_MESSAGE = 4096;
/** Container records and stats messages are a few hundred bytes: their queues count one per KiB. */
const SMALL_MESSAGE_BYTES = 1024;
const MIN_EVENTS_BUFFER_BYTES = 4 * MiB;

export interface CollectorMemoryInput {
  budget: MemoryBudget;
  /** Kernel memory is charged only when the eBPF source runs. */
  source: 'ebpf' | 'replay';
  ringBufferBytes: number;
  /** Explicit collector.bufferMaxBytes / bufferMaxMessages, when set. */
  bufferMaxBytes?: number | undefined;
  bufferMaxMessages?: number | undefined;
  /** Default: possibleCpus(). */
  cpuCount?: number;
  /** Whether MALLOC_MMAP_THRESHOLD_ is set (defaults to the environment). */
  fixedMmapThreshold?: boolean;
}

export interface CollectorMemoryPlan {
  budget: MemoryBudget;
  baselineBytes: number;
  kernelBytes: number;
  headroomBytes: number;
  /** What the three queues may cost, in resident bytes. */
  queuesBytes: number;
  bufferMaxBytes: number;
  bufferMaxMessages: number;
  containersQueueBytes: number;
  containersQueueMessages: number;
  statsQueueBytes: number;
  statsQueueMessages: number;
}

/**
 * The collector's queue bounds from its budget. An explicit bufferMaxBytes above what the
 * budget allows is refused (ConfigError naming both settings), never clamped: the operator
 * asked for a buffer the pod cannot hold, and would otherwise learn it in the next outage.
 */
export function planCollectorMemory(input: CollectorMemoryInput): CollectorMemoryPlan {
  const { budget } = input;
  const cpuCount = input.cpuCount ?? possibleCpus();
  const kernelBytes =
    input.source === 'ebpf'
      ? input.ringBufferBytes + KERNEL_MAPS_FIXED_BYTES + KERNEL_MAPS_PER_CPU_BYTES * cpuCount
      : 0;
  const baselineBytes = COLLECTOR_BASELINE_BYTES;
  const headroomBytes = Math.max(16 * MiB, Math.round(budget.bytes / 10));
  const queuesBytes = budget.bytes - baselineBytes - kernelBytes - headroomBytes;
  const byteCost =
    (input.fixedMmapThreshold ?? process.env.MALLOC_MMAP_THRESHOLD_ !== undefined)
      ? QUEUE_BYTE_COST.fixedMmapThreshold
      : QUEUE_BYTE_COST.glibcDefault;
  // What a share of resident memory buys in queued bytes, with one message per `perMessage` bytes.
  const bytesFor = (share: number, perMessage: number): number =>
    Math.max(0, Math.floor(share / (byteCost + QUEUE_MESSAGE_OVERHEAD_BYTES / perMessage)));
  // Container records and stats get small shares of their own, so an events backlog never
  // pushes them out; their former fixed bounds (32 and 8 MiB) are the ceilings.
  const containersShare = Math.min(32 * MiB, Math.max(0, queuesBytes) / 8);
  const statsShare = Math.min(8 * MiB, Math.max(0, queuesBytes) / 32);
  const containersQueueBytes = bytesFor(containersShare, SMALL_MESSAGE_BYTES);
  const statsQueueBytes = bytesFor(statsShare, SMALL_MESSAGE_BYTES);
  const eventsShare = queuesBytes - containersShare - statsShare;
  // An explicit message bound is charged as it is; a derived one is one per 4 KiB buffered.
  const maxBufferBytes =
    input.bufferMaxMessages === undefined
      ? bytesFor(eventsShare, BYTES_PER_DERIVED_MESSAGE)
      : Math.floor((eventsShare - input.bufferMaxMessages * QUEUE_MESSAGE_OVERHEAD_BYTES) / byteCost);
  const split =
    `budget ${mib(budget.bytes)} (${budget.from}) - baseline ${mib(baselineBytes)}` +
    (kernelBytes > 0 ? ` - kernel ${mib(kernelBytes)} (ring buffer + maps on ${cpuCount} CPUs)` : '') +
    ` - headroom ${mib(headroomBytes)}`;
  if (maxBufferBytes < MIN_EVENTS_BUFFER_BYTES)
    throw new ConfigError(
      `collector memory budget too small: ${split}` +
        (input.bufferMaxMessages === undefined
          ? ''
          : ` - ${input.bufferMaxMessages} messages (collector.bufferMaxMessages) of ${QUEUE_MESSAGE_OVERHEAD_BYTES} bytes`) +
        ` leaves ${mib(Math.max(0, maxBufferBytes))} for the events buffer (at least ` +
        `${mib(MIN_EVENTS_BUFFER_BYTES)}): raise the memory limit and collector.memoryBudgetBytes`,
    );
  if (input.bufferMaxBytes !== undefined && input.bufferMaxBytes > maxBufferBytes)
    throw new ConfigError(
      `collector.bufferMaxBytes (${mib(input.bufferMaxBytes)}) does not fit collector.memoryBudgetBytes: ` +
        `${split} leaves room for ${mib(maxBufferBytes)} (${maxBufferBytes} bytes). Lower ` +
        'collector.bufferMaxBytes, or unset it to have it derived, or raise the memory limit and budget',
    );
  const bufferMaxBytes = input.bufferMaxBytes ?? maxBufferBytes;
  return {
    budget,
    baselineBytes,
    kernelBytes,
    headroomBytes,
    queuesBytes,
    bufferMaxBytes,
    bufferMaxMessages:
      input.bufferMaxMessages ?? Math.max(1, Math.floor(bufferMaxBytes / BYTES_PER_DERIVED_MESSAGE)),
    containersQueueBytes,
    containersQueueMessages: Math.max(1, Math.floor(containersQueueBytes / SMALL_MESSAGE_BYTES)),
    statsQueueBytes,
    statsQueueMessages: Math.max(1, Math.floor(statsQueueBytes / SMALL_MESSAGE_BYTES)),
  };
}

// --- processor ----------------------------------------------------------------------------

/**
 * RSS of the processor at steady state with little pending, over 24 partitions at ~19k
 * events/s: writing to a ClickHouse server, and with the embedded chDB engine (its caches,
 * parts and merges, and libchdb.so's pages in use: docs/processor.md, memory budget).
 */
export const PROCESSOR_BASELINE_BYTES = { server: 256 * MiB, embedded: 400 * MiB } as const;
/** V8 heap the processor uses with nothing pending (code, metadata tables, kafkajs). */
export const PROCESSOR_HEAP_BASELINE_BYTES = 96 * MiB;
/** Share of the V8 heap left to pending rows: the collector needs the rest to work in. */
export const PENDING_HEAP_SHARE = 0.6;
/**
 * Heap bytes per pending row: the row is ~170-195 bytes for the collector's event mix
 * (rows.ts); the rest is its share of decoded messages, fetch buffers and the insert body
 * while a cut is written, and of V8's young generation and growth headroom.
 */
export const PENDING_ROW_BYTES = 2048;
const MIN_PENDING_ROWS = 10_000;

export interface ProcessorMemoryInput {
  budget: MemoryBudget;
  /** chDB in this process (no clickhouse.url) or a server. */
  embedded: boolean;
  /** v8.getHeapStatistics().heap_size_limit: Node sizes it from the cgroup's limit (~half). */
  heapLimitBytes: number;
  /** Explicit processor.pendingMaxRows, when set. */
  pendingMaxRows?: number | undefined;
}

export interface ProcessorMemoryPlan {
  budget: MemoryBudget;
  baselineBytes: number;
  headroomBytes: number;
  heapLimitBytes: number;
  /** Bytes pending rows may take: the smaller of what the budget and the V8 heap leave. */
  pendingBytes: number;
  pendingMaxRows: number;
}

/** The processor's bound on rows held across all partitions (pending-budget.ts). */
export function planProcessorMemory(input: ProcessorMemoryInput): ProcessorMemoryPlan {
  const { budget } = input;
  const baselineBytes = input.embedded ? PROCESSOR_BASELINE_BYTES.embedded : PROCESSOR_BASELINE_BYTES.server;
  const headroomBytes = Math.max(64 * MiB, Math.round(budget.bytes / 10));
  const byBudget = budget.bytes - baselineBytes - headroomBytes;
  const byHeap = Math.floor((input.heapLimitBytes - PROCESSOR_HEAP_BASELINE_BYTES) * PENDING_HEAP_SHARE);
  const pendingBytes = Math.min(byBudget, byHeap);
  const maxRows = Math.floor(pendingBytes / PENDING_ROW_BYTES);
  const split =
    `budget ${mib(budget.bytes)} (${budget.from}) - baseline ${mib(baselineBytes)} - headroom ` +
    `${mib(headroomBytes)} = ${mib(byBudget)}; V8 heap ${mib(input.heapLimitBytes)} allows ${mib(byHeap)}`;
  if (maxRows < MIN_PENDING_ROWS)
    throw new ConfigError(
      `processor memory budget too small: ${split}, room for ${Math.max(0, maxRows)} pending rows ` +
        `(at least ${MIN_PENDING_ROWS}): raise the memory limit and processor.memoryBudgetBytes`,
    );
  if (input.pendingMaxRows !== undefined && input.pendingMaxRows > maxRows)
    throw new ConfigError(
      `processor.pendingMaxRows (${input.pendingMaxRows}) does not fit processor.memoryBudgetBytes: ${split}, ` +
        `room for ${maxRows} rows of ${PENDING_ROW_BYTES} bytes. Lower processor.pendingMaxRows, or unset it ` +
        'to have it derived, or raise the memory limit and budget',
    );
  return {
    budget,
    baselineBytes,
    headroomBytes,
    heapLimitBytes: input.heapLimitBytes,
    pendingBytes,
    pendingMaxRows: input.pendingMaxRows ?? maxRows,
  };
}

/**
 * CPUs the kernel sizes per-CPU map values for: the possible ones (`0-63`, `0,2-5`), which
 * can exceed the online ones (hotplug); the online count when the file can't be read.
 */
export function possibleCpus(file = '/sys/devices/system/cpu/possible'): number {
  try {
    let n = 0;
    for (const part of readFileSync(file, 'utf8').trim().split(',')) {
      const [from, to] = part.split('-').map(Number);
      const last = to ?? from;
      if (from === undefined || last === undefined || !Number.isInteger(from) || !Number.isInteger(last))
        throw new Error(part);
      n += last - from + 1;
    }
    if (n > 0) return n;
  } catch {}
  return Math.max(1, cpus().length);
}

/** 268435456 -> "256 MiB" (one decimal below 10 MiB). */
export function mib(bytes: number): string {
  const m = bytes / MiB;
  return `${m < 10 ? m.toFixed(1) : Math.round(m)} MiB`;
}
