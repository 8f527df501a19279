// Typed wrapper around the native addon (native/, docs/native.md). The addon owns the BPF
// objects and a polling thread; JavaScript receives whole batches: one Buffer holding many
// ring-buffer records, each starting with its own 32-byte header and padded to 8 bytes.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { KtrailError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { nativeAddonPath, requireNativeAddon } from '../../../common/native-addon.js';
import { COLLECTOR_CAPABILITIES, capabilityError, processPrivileges } from './privileges.js';

const log = createLogger('collector.kernel.addon');

/** Where `npm run build:native` puts the addon; KTRAIL_NATIVE_ADDON overrides it. */
export const addonPath: string = nativeAddonPath('KTRAIL_NATIVE_ADDON', 'ktrail_native.node');

/** Test fixture objects built with the addon (native/test/*.bpf.c). */
export const fixtureDir: string = resolve(dirname(addonPath), 'fixtures');

export interface CaptureSettings {
  /** Paths of CO-RE objects (.bpf.o); each loads and attaches on its own. */
  objects: string[];
  /** Size of the one shared ring buffer: a power of two, at least one page. */
  ringBufferBytes: number;
  /** Only these programs (by function name); default all. */
  programs?: string[];
  /** Report only these v2 cgroup ids (sets kt_cfg_filter_enabled=1 unless cfg says otherwise). */
  filterCgroups?: bigint[];
  /** A batch goes to JS when it holds this many bytes... */
  batchMaxBytes: number;
  /** ...or when its first record is this old. */
  batchMaxMs: number;
  /** Bound of the queue between the polling thread and JS; a batch that finds it full is dropped and counted. */
  maxQueuedBatches?: number;
  /**
   * While records flow, the polling thread sleeps this long between drains (default 500 µs;
   * 0 = wake on every kernel notification). The kernel wakes only a reader that had caught up,
   * so this trades ≤ 0.5 ms of latency for one wakeup per interval instead of one per record.
   */
  drainIntervalUs?: number;
  /** cgroup v2 mount that cgroup_skb programs attach to (default: found by cgroupV2Root()). */
  cgroupRoot?: string;
  /** Load-time settings: `const volatile kt_cfg_<name>` globals, with or without the prefix. */
  cfg?: Record<string, number | bigint | boolean>;
}

export interface KernelFeatures {
  kernelRelease: string;
  btf: boolean;
  ringbuf: boolean;
  tracepoint: boolean;
  rawTracepoint: boolean;
  cgroupSkb: boolean;
  tracefs: boolean;
  bpfStats: boolean;
}

/** Where an object or program stopped (native/src/capture.h, struct Failure). */
export type FailedStep = 'open' | 'maps' | 'prepare' | 'load' | 'module_btf' | 'attach' | 'ring_buffer';

export interface ProgramState {
  name: string;
  object: string;
  section: string;
  /** libbpf's name of the program type: 'tracing' (tp_btf), 'cgroup_skb', 'tracepoint', ... */
  type?: string;
  /** Verified and in the kernel. */
  loaded: boolean;
  /** Attached to its hook (a program whose section names no hook, e.g. `tc`, is loaded only). */
  attached: boolean;
  /** Why it is not running: the verifier log tail, the attach error, or "not selected". */
  error?: string;
  /** The step that failed and its errno (EPERM = 1: a capability check; see privileges.ts). */
  failedStep?: FailedStep;
  errno?: number;
  /** Kernel program id and the kernel's own cost accounting (needs kernel.bpf_stats_enabled=1). */
  id?: number;
  runTimeNs?: number;
  runCount?: number;
}

export interface CaptureCounters {
  /** Records and bytes handed to JS (queued to the JS thread). */
  records: number;
  bytes: number;
  batches: number;
  /** Records lost in the addon because the queue to JS was full (exact). */
  lostRecords: number;
  lostBatches: number;
  /** Ring-buffer samples whose header size was impossible; skipped. */
  malformedRecords: number;
  pollErrors: number;
  closed: boolean;
  /** Failed ring-buffer reserves per program slot (kt_drops summed over CPUs; enum kt_prog_slot). */
  kernelDrops: number[];
  programs: ProgramState[];
  objects: Array<{
    path: string;
    loaded: boolean;
    error?: string;
    failedStep?: FailedStep;
    errno?: number;
    /** The kernel refused `path`: its compat build (no kfuncs, bpf/.output/compat/) was loaded instead. */
    compatPath?: string;
    compatReason?: string;
  }>;
  /** cfg names no object declares. */
  unusedCfg: string[];
  features: KernelFeatures;
  ringBufferBytes: number;
}

/** `sum`: per-CPU values summed as u64 lanes (the default); `raw`: every CPU's value, 8-byte aligned. */
export type MapReadMode = 'sum' | 'raw';

/**
 * Receives one batch: `records` records laid end to end. The Buffer is lent for this call
 * only: afterwards the addon detaches it (a reference kept reads as empty) and reuses its
 * memory, so decode it here or copy what you keep (`Buffer.from(batch)`).
 */
export type BatchHandler = (batch: Buffer, records: number) => void;

/** A loaded map as the kernel describes it (bpf_map_info). */
export interface MapInfo {
  name: string;
  id: number;
  type: number;
  /** libbpf's name of the type, e.g. 'lru_percpu_hash'. */
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface KernelCapture {
  counters(): CaptureCounters;
  /** Every entry of a map as raw [key, value] Buffers; the caller decodes them. */
  readMap(name: string, mode?: MapReadMode): Array<[Buffer, Buffer]>;
  /**
   * Reads and deletes these keys (u64 keys as bigint, others as Buffers), each in one step
   * where the kernel can (BPF_MAP_LOOKUP_AND_DELETE_ELEM); returns the entries that existed.
   */
  takeMapEntries(name: string, keys: Array<bigint | Buffer>, mode?: MapReadMode): Array<[Buffer, Buffer]>;
  mapInfo(name: string): MapInfo;
  allowCgroup(cgroupId: bigint): void;
  disallowCgroup(cgroupId: bigint): void;
  /** Stops the thread (joins it), detaches every program, closes every fd. Idempotent. */
  close(): void;
}

interface NativeAddon {
  Capture: new (settings: CaptureSettings, onBatch: BatchHandler) => KernelCapture;
}

let cached: NativeAddon | undefined;

/** Loads the compiled addon; a clear error if it was never built. */
export function loadAddon(): NativeAddon {
  cached ??= requireNativeAddon<NativeAddon>(addonPath, 'native addon');
  return cached;
}

/** Undefined when the kernel and the build allow a capture, else why not (privileges aside). */
function missingCaptureSupport(): string | undefined {
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF (/sys/kernel/btf/vmlinux)';
  if (!existsSync(addonPath)) return `native addon not built (${addonPath}); run npm run build:native`;
  return undefined;
}

/**
 * Undefined when this process can load BPF programs, else why not (for tests): the kernel and
 * the build, and the capabilities the collector needs (or CAP_SYS_ADMIN, which covers them).
 */
export function missingKernelCapture(): string | undefined {
  const { effective } = processPrivileges();
  const lacking = Object.keys(COLLECTOR_CAPABILITIES).filter(
    (cap) => !effective.has(cap) && !effective.has('SYS_ADMIN'),
  );
  if (lacking.length > 0)
    return `eBPF capture needs ${lacking.map((c) => `CAP_${c}`).join(', ')} (run as root)`;
  return missingCaptureSupport();
}

/**
 * The cgroup v2 mount at or under `base`: <base>/unified on hybrid hosts, <base> on pure v2
 * ones. `base` is /sys/fs/cgroup, or the host's cgroupfs as a pod mounts it (collector.cgroupRoot).
 */
export function cgroupV2Root(base = '/sys/fs/cgroup'): string | undefined {
  if (existsSync(`${base}/unified/cgroup.procs`)) return `${base}/unified`;
  if (existsSync(`${base}/cgroup.controllers`)) return base;
  return undefined;
}

/** collector.cgroupRoot as a v2 root: a host's whole cgroupfs or its v2 mount, as given. */
export function configuredCgroupV2Root(setting: string | undefined): string | undefined {
  return setting === undefined ? undefined : (cgroupV2Root(setting) ?? setting);
}

/**
 * `tracepoint/` programs read their ids from tracefs: mount it when nobody has and this
 * process may (CAP_SYS_ADMIN). ktrail's own programs are tp_btf and cgroup_skb, which attach
 * through bpf() alone, so the collector runs without tracefs (and without the mount right).
 */
export function ensureTracefs(): void {
  if (existsSync('/sys/kernel/tracing/events') || existsSync('/sys/kernel/debug/tracing/events')) return;
  if (!processPrivileges().effective.has('SYS_ADMIN')) {
    log.debug('tracefs not visible and no CAP_SYS_ADMIN to mount it; only tracepoint/ programs need it');
    return;
  }
  log.info('mounting tracefs at /sys/kernel/tracing');
  try {
    execFileSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing'], { stdio: 'pipe' });
  } catch (err) {
    log.warn({ err }, 'could not mount tracefs; tracepoint programs will fail to attach');
  }
}

/**
 * Opens, loads and attaches every object, then starts streaming batches to `onBatch`.
 * A program the kernel refused a capability (EPERM) makes it throw a CapabilityError naming
 * the capability: a deployment without it is misconfigured, not degraded. Programs that fail
 * otherwise (the verifier's reason in counters().programs[].error) are logged while the rest
 * run; it throws when nothing at all could be attached.
 */
export function openCapture(settings: CaptureSettings, onBatch: BatchHandler): KernelCapture {
  const missing = missingCaptureSupport();
  if (missing !== undefined) throw new KtrailError(`cannot open kernel capture: ${missing}`);
  for (const path of settings.objects) {
    if (!existsSync(path)) throw new KtrailError(`BPF object not found: ${path}`, { context: { path } });
  }
  ensureTracefs();
  const addon = loadAddon();
  const root = settings.cgroupRoot ?? cgroupV2Root();
  const capture = new addon.Capture(
    root === undefined ? settings : { ...settings, cgroupRoot: root },
    onBatch,
  );
  const counters = capture.counters();
  const refused = capabilityError(counters.programs, processPrivileges());
  if (refused !== undefined) {
    capture.close();
    throw refused;
  }
  for (const o of counters.objects) {
    if (o.compatPath !== undefined)
      log.warn(
        { object: o.path, compat: o.compatPath, loaded: o.loaded, reason: o.compatReason },
        'kernel refused the object: its compat build (no kfuncs) runs instead',
      );
  }
  for (const p of counters.programs) {
    if (p.error !== undefined)
      log.warn({ program: p.name, object: p.object, reason: p.error }, 'program not running');
  }
  if (counters.unusedCfg.length > 0)
    log.warn({ unusedCfg: counters.unusedCfg }, 'settings no object declares');
  if (!counters.programs.some((p) => p.loaded)) {
    capture.close();
    const f = counters.features;
    const lacking = [
      f.btf ? undefined : 'BTF (/sys/kernel/btf/vmlinux) for CO-RE',
      f.ringbuf ? undefined : 'BPF ring buffer (Linux 5.8+)',
      f.tracepoint ? undefined : 'tracepoint programs',
      f.tracefs ? undefined : 'tracefs (mount -t tracefs nodev /sys/kernel/tracing)',
    ].filter((x) => x !== undefined);
    const reasons = [
      ...(lacking.length > 0 ? [`kernel lacks: ${lacking.join(', ')}`] : []),
      ...counters.objects.filter((o) => o.error !== undefined).map((o) => `${o.path}: ${o.error}`),
      ...counters.programs.map((p) => `${p.name}: ${p.error ?? 'not attached'}`),
    ];
    throw new KtrailError(`no BPF program could be loaded:\n${reasons.join('\n')}`, {
      context: { features: counters.features },
    });
  }
  log.info(
    {
      attached: counters.programs.filter((p) => p.attached).map((p) => p.name),
      ringBufferBytes: counters.ringBufferBytes,
      kernel: counters.features.kernelRelease,
    },
    'kernel capture open',
  );
  return capture;
}

/**
 * Byte offsets of the records in a batch, framed by each header's size field (offset 4, u32)
 * padded to 8 — the layout the addon and capture files share. Stops at a truncated record.
 */
export function recordOffsets(batch: Buffer): number[] {
  const offsets: number[] = [];
  let off = 0;
  while (off + 8 <= batch.length) {
    const size = batch.readUInt32LE(off + 4);
    if (size < 8 || off + size > batch.length) break;
    offsets.push(off);
    off += (size + 7) & ~7;
  }
  return offsets;
}
