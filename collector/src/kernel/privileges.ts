// Which Linux capabilities the kernel capture needs, and which one a failed step lacked.
//
// The addon records where each object or program stopped (open, maps, load, module_btf,
// attach) and its errno. EPERM at a step means the kernel refused a capability check there
// (kernel/bpf/syscall.c, 6.x): the table below says which capabilities each step checks, and
// the process's effective set (/proc/self/status) says which of them it lacks. The collector
// then stops with that name instead of running with programs missing.
import { readFileSync } from 'node:fs';
import { KtrailError } from '../../../common/errors.js';

/**
 * Every capability the collector holds, and why: the DaemonSet adds exactly these
 * (deploy/k8s/collector-daemonset.yaml, checked by test/unit/k8s-manifests.test.ts), and
 * test/integration/collector-privileges.test.ts runs the collector with only them, then
 * without each one.
 */
export const COLLECTOR_CAPABILITIES = {
  BPF: 'create the maps and load the programs (bpf()); tracing programs need it whatever kernel.unprivileged_bpf_disabled says',
  PERFMON: 'load the tracing (tp_btf) programs, which read kernel memory',
  NET_ADMIN: 'attach the cgroup_skb programs to the cgroup v2 root',
} as const;

export type CollectorCapability = keyof typeof COLLECTOR_CAPABILITIES;

// linux/capability.h numbers, for reading the hex masks of /proc/<pid>/status.
const CAPABILITY_NUMBERS: Record<string, number> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/** Capability names (without CAP_) in a /proc status mask such as "000000c000001000". */
export function capabilitiesOfMask(hex: string): Set<string> {
  const mask = BigInt(`0x${hex.trim()}`);
  const held = new Set<string>();
  for (const [name, bit] of Object.entries(CAPABILITY_NUMBERS))
    if ((mask >> BigInt(bit)) & 1n) held.add(name);
  return held;
}

/** This process's effective capabilities and uid, from /proc/self/status. */
export function processPrivileges(status = readFileSync('/proc/self/status', 'utf8')): {
  uid: number;
  effective: Set<string>;
} {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
  return {
    uid: Number(field('Uid').split(/\s+/)[1] ?? Number.NaN), // the effective uid
    effective: capabilitiesOfMask(field('CapEff') || '0'),
  };
}

/** A failed step as the addon reports it (counters().programs[] / objects[]). */
export interface StepFailure {
  name: string;
  /** libbpf's program type name (tracing, cgroup_skb, ...); absent for objects. */
  type?: string;
  failedStep?: string;
  errno?: number;
}

const EPERM = 1;
const STEP_TEXT: Record<string, string> = {
  maps: 'creating the shared maps for',
  load: 'loading',
  module_btf: 'listing kernel module BTFs (a CO-RE relocation vmlinux cannot satisfy) for',
  attach: 'attaching',
};
// Program types whose load also checks CAP_PERFMON (is_perfmon_prog_type) or
// CAP_NET_ADMIN (is_net_admin_prog_type), besides CAP_BPF.
const PERFMON_TYPES = new Set([
  'kprobe',
  'tracepoint',
  'perf_event',
  'raw_tracepoint',
  'raw_tracepoint_writable',
  'tracing',
  'lsm',
]);
const NET_ADMIN_TYPES = new Set([
  'sched_cls',
  'sched_act',
  'xdp',
  'lwt_in',
  'lwt_out',
  'lwt_xmit',
  'lwt_seg6local',
  'cgroup_sock',
  'cgroup_sock_addr',
  'cgroup_sockopt',
  'cgroup_sysctl',
  'sock_ops',
  'ext',
  'netfilter',
]);
// Attaching to a cgroup checks CAP_NET_ADMIN for cgroup_skb (bpf_prog_attach_check_attach_type).
const CGROUP_ATTACH_TYPES = new Set([
  'cgroup_skb',
  'cgroup_sock',
  'cgroup_sock_addr',
  'cgroup_sockopt',
  'cgroup_sysctl',
  'cgroup_device',
  'sock_ops',
]);

/** The capabilities the kernel checks at a step (any of them may be replaced by SYS_ADMIN). */
export function capabilitiesChecked(step: string | undefined, type: string | undefined): string[] {
  switch (step) {
    case 'maps':
      return ['BPF'];
    case 'load':
      if (type === undefined) return ['BPF'];
      if (PERFMON_TYPES.has(type)) return ['BPF', 'PERFMON'];
      if (NET_ADMIN_TYPES.has(type)) return ['BPF', 'NET_ADMIN'];
      return ['BPF'];
    case 'module_btf':
      return ['SYS_ADMIN']; // BPF_BTF_GET_NEXT_ID
    case 'attach':
      return type !== undefined && CGROUP_ATTACH_TYPES.has(type) ? ['NET_ADMIN'] : [];
    default:
      return [];
  }
}

/** The capabilities of `checked` that `held` lacks (SYS_ADMIN stands in for BPF, PERFMON, NET_ADMIN). */
function lacking(checked: string[], held: Set<string>): string[] {
  return checked.filter((cap) => !held.has(cap) && !(cap !== 'SYS_ADMIN' && held.has('SYS_ADMIN')));
}

/** The kernel refused the capture a capability: names it, the step and what was refused. */
export class CapabilityError extends KtrailError {
  readonly missing: string[];
  constructor(message: string, missing: string[], context: Record<string, unknown>) {
    super(message, { context });
    this.missing = missing;
  }
}

/**
 * The capture's EPERM failures explained: undefined when there are none, else an error that
 * names each missing capability with the step and the programs it stopped; when every checked
 * capability is held, the refusal came from elsewhere (a seccomp profile, an LSM) and it says so.
 */
export function capabilityError(
  failures: StepFailure[],
  privileges: { uid: number; effective: Set<string> },
): CapabilityError | undefined {
  const refused = failures.filter((f) => f.errno === EPERM);
  if (refused.length === 0) return undefined;
  // One line per (step, capabilities checked): the programs it stopped, and what was lacking.
  const groups = new Map<string, { step: string; checked: string[]; failures: StepFailure[] }>();
  for (const f of refused) {
    const step = f.failedStep ?? 'an unknown step';
    const checked = capabilitiesChecked(step, f.type);
    const key = `${step}|${checked.join(',')}`;
    const group = groups.get(key) ?? { step, checked, failures: [] };
    group.failures.push(f);
    groups.set(key, group);
  }
  const held = [...privileges.effective].sort().map((c) => `CAP_${c}`);
  const lines: string[] = [];
  const allMissing = new Set<string>();
  for (const { step, checked, failures: group } of groups.values()) {
    const types = [...new Set(group.map((f) => f.type ?? 'unknown'))].join('/');
    const programs = `${group.map((f) => f.name).join(', ')} (${group.length} ${types} program${group.length === 1 ? '' : 's'})`;
    const what = `${STEP_TEXT[step] ?? `${step} of`} ${programs}`;
    const missing = lacking(checked, privileges.effective);
    for (const cap of missing) allMissing.add(cap);
    if (missing.length > 0)
      lines.push(`needs ${missing.map((c) => `CAP_${c}`).join(' and ')}: ${what} failed with EPERM`);
    else
      lines.push(
        `${what} failed with EPERM ${
          checked.length > 0
            ? `although ${checked.map((c) => `CAP_${c}`).join(' and ')} ${checked.length === 1 ? 'is' : 'are'} held`
            : 'at a step that checks no capability'
        }: a seccomp profile or an LSM refuses it (docs/collector.md, Privileges)`,
      );
  }
  const missing = [...allMissing].sort();
  const head =
    missing.length > 0
      ? `kernel capture needs ${missing.map((c) => `CAP_${c}`).join(', ')}`
      : 'kernel capture refused with EPERM, not for a missing capability';
  return new CapabilityError(
    `${head} (uid ${privileges.uid} holds ${held.length > 0 ? held.join(', ') : 'no capabilities'}):\n  ${lines.join('\n  ')}`,
    missing,
    { uid: privileges.uid, held },
  );
}
