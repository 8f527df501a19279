// The byte layout of every record and map value in bpf/include/events.h, written once.
// The decoder reads fields at these offsets; test/unit/decode-layout.test.ts compares
// every size and offset here with the BTF of the compiled objects, so a change to
// events.h that is not mirrored here fails a test instead of corrupting data.
// Field names are the C names (snake_case), as in BTF.

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}

export interface StructLayout {
  /** C struct name in events.h / BTF. */
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

const f = (offset: number, size: number): FieldLayout => ({ offset, size });

export const HEADER_SIZE = 32;
export const COMM_LEN = 16;
export const FILENAME_LEN = 256;
export const ARGS_LEN = 1024;
export const PATH_LEN = 256;
export const ADDR_LEN = 16;
export const LAT_BUCKETS = 32;

export const KT_HEADER = {
  name: 'kt_header',
  size: HEADER_SIZE,
  fields: {
    type: f(0, 2),
    flags: f(2, 2),
    size: f(4, 4),
    ts_ns: f(8, 8),
    cgroup_id: f(16, 8),
    pid: f(24, 4),
    tgid: f(28, 4),
  },
} as const satisfies StructLayout;

const hdr = f(0, HEADER_SIZE);

export const KT_PROC_EXEC = {
  name: 'kt_proc_exec',
  size: 1352,
  fields: {
    hdr,
    ppid: f(32, 4),
    uid: f(36, 4),
    gid: f(40, 4),
    args_count: f(44, 4),
    args_size: f(48, 4),
    pad: f(52, 4),
    comm: f(56, COMM_LEN),
    filename: f(72, FILENAME_LEN),
    args: f(328, ARGS_LEN),
  },
} as const satisfies StructLayout;

export const KT_PROC_FORK = {
  name: 'kt_proc_fork',
  size: 64,
  fields: {
    hdr,
    parent_pid: f(32, 4),
    parent_tgid: f(36, 4),
    child_pid: f(40, 4),
    child_tgid: f(44, 4),
    comm: f(48, COMM_LEN),
  },
} as const satisfies StructLayout;

export const KT_PROC_EXIT = {
  name: 'kt_proc_exit',
  size: 80,
  fields: {
    hdr,
    ppid: f(32, 4),
    exit_code: f(36, 4),
    signal: f(40, 4),
    core_dumped: f(44, 4),
    start_ns: f(48, 8),
    cpu_ns: f(56, 8),
    comm: f(64, COMM_LEN),
  },
} as const satisfies StructLayout;

/** Types 4, 5, 6 (cgroup mkdir, rmdir, rename) share this layout. */
export const KT_CGROUP_EVENT = {
  name: 'kt_cgroup_event',
  size: 296,
  fields: {
    hdr,
    level: f(32, 4),
    hierarchy_id: f(36, 4),
    path: f(40, PATH_LEN),
  },
} as const satisfies StructLayout;

export const KT_OOM_KILL = {
  name: 'kt_oom_kill',
  size: 88,
  fields: {
    hdr,
    victim_pid: f(32, 4),
    victim_uid: f(36, 4),
    total_vm_kb: f(40, 8),
    anon_rss_kb: f(48, 8),
    file_rss_kb: f(56, 8),
    shmem_rss_kb: f(64, 8),
    comm: f(72, COMM_LEN),
  },
} as const satisfies StructLayout;

/** Type 12: a memory cgroup's last reading, at its removal (becomes a memory_sample). */
export const KT_MEMORY_RELEASE = {
  name: 'kt_memory_release',
  size: 328,
  fields: {
    hdr,
    level: f(32, 4),
    hierarchy_id: f(36, 4),
    peak_bytes: f(40, 8),
    current_bytes: f(48, 8),
    limit_bytes: f(56, 8),
    oom_kills: f(64, 8),
    path: f(72, PATH_LEN),
  },
} as const satisfies StructLayout;

/** The address block every TCP record starts with, right after the header. */
const tcpAddr = {
  family: f(32, 2),
  sport: f(34, 2),
  dport: f(36, 2),
  pad: f(38, 2),
  saddr: f(40, ADDR_LEN),
  daddr: f(56, ADDR_LEN),
  sock_cookie: f(72, 8),
} as const;

/** Types 8 and 9 (tcp connect, accept). */
export const KT_TCP_CONN = {
  name: 'kt_tcp_conn',
  size: 80,
  fields: { hdr, ...tcpAddr },
} as const satisfies StructLayout;

export const KT_TCP_CLOSE = {
  name: 'kt_tcp_close',
  size: 112,
  fields: {
    hdr,
    ...tcpAddr,
    bytes_sent: f(80, 8),
    bytes_received: f(88, 8),
    duration_ns: f(96, 8),
    retransmits: f(104, 4),
    resets: f(108, 4),
  },
} as const satisfies StructLayout;

export const KT_TCP_RESET = {
  name: 'kt_tcp_reset',
  size: 88,
  fields: { hdr, ...tcpAddr, direction: f(80, 4), pad2: f(84, 4) },
} as const satisfies StructLayout;

// Aggregate map values (key: u64 cgroup id). The maps are per-CPU hashes: a reader
// sums each field over the CPUs.

export const KT_CPU_VALUE = {
  name: 'kt_cpu_value',
  size: 16,
  fields: { cpu_ns: f(0, 8), switches: f(8, 8) },
} as const satisfies StructLayout;

export const KT_NET_VALUE = {
  name: 'kt_net_value',
  size: 32,
  fields: { rx_bytes: f(0, 8), rx_packets: f(8, 8), tx_bytes: f(16, 8), tx_packets: f(24, 8) },
} as const satisfies StructLayout;

export const KT_BLOCK_VALUE = {
  name: 'kt_block_value',
  size: 288,
  fields: {
    read_bytes: f(0, 8),
    write_bytes: f(8, 8),
    read_ios: f(16, 8),
    write_ios: f(24, 8),
    latency_hist: f(32, 8 * LAT_BUCKETS),
  },
} as const satisfies StructLayout;

/** Every ABI struct, for the layout test. */
export const ALL_STRUCTS: readonly StructLayout[] = [
  KT_HEADER,
  KT_PROC_EXEC,
  KT_PROC_FORK,
  KT_PROC_EXIT,
  KT_CGROUP_EVENT,
  KT_OOM_KILL,
  KT_TCP_CONN,
  KT_TCP_CLOSE,
  KT_TCP_RESET,
  KT_MEMORY_RELEASE,
  KT_CPU_VALUE,
  KT_NET_VALUE,
  KT_BLOCK_VALUE,
];

/** enum kt_event_type: numbers are never reused. */
export const EVENT_TYPE = {
  proc_exec: 1,
  proc_fork: 2,
  proc_exit: 3,
  cgroup_mkdir: 4,
  cgroup_rmdir: 5,
  cgroup_rename: 6,
  oom_kill: 7,
  tcp_connect: 8,
  tcp_accept: 9,
  tcp_close: 10,
  tcp_reset: 11,
  memory_release: 12,
  cpu_sample: 64,
  net_sample: 65,
  block_sample: 66,
  memory_sample: 67,
} as const;

/** Which struct each ring-buffer type uses. */
export const RECORD_LAYOUT: Readonly<Record<number, StructLayout>> = {
  [EVENT_TYPE.proc_exec]: KT_PROC_EXEC,
  [EVENT_TYPE.proc_fork]: KT_PROC_FORK,
  [EVENT_TYPE.proc_exit]: KT_PROC_EXIT,
  [EVENT_TYPE.cgroup_mkdir]: KT_CGROUP_EVENT,
  [EVENT_TYPE.cgroup_rmdir]: KT_CGROUP_EVENT,
  [EVENT_TYPE.cgroup_rename]: KT_CGROUP_EVENT,
  [EVENT_TYPE.oom_kill]: KT_OOM_KILL,
  [EVENT_TYPE.tcp_connect]: KT_TCP_CONN,
  [EVENT_TYPE.tcp_accept]: KT_TCP_CONN,
  [EVENT_TYPE.tcp_close]: KT_TCP_CLOSE,
  [EVENT_TYPE.tcp_reset]: KT_TCP_RESET,
  [EVENT_TYPE.memory_release]: KT_MEMORY_RELEASE,
};

/** enum kt_event_flags. */
export const FLAG = {
  truncated: 1 << 0,
  resetSent: 1 << 2,
  resetReceived: 1 << 3,
  memoryRelease: 1 << 4,
} as const;

/** enum kt_prog_slot: index into kt_drops (a per-CPU array; sum over CPUs). */
export const PROG_SLOT = {
  proc_exec: 0,
  proc_fork: 1,
  proc_exit: 2,
  cgroup_mkdir: 3,
  cgroup_rmdir: 4,
  cgroup_rename: 5,
  oom_kill: 6,
  tcp_state: 7,
  tcp_send_reset: 8,
  tcp_recv_reset: 9,
  cpu_switch: 10,
  net_ingress: 11,
  net_egress: 12,
  block_issue: 13,
  block_done: 14,
  memory_release: 15,
} as const;
export const PROG_SLOT_MAX = 32;

/** Slot number -> name, for reporting kt_drops. */
export const PROG_SLOT_NAME: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, slot] of Object.entries(PROG_SLOT)) names[slot] = name;
  return names;
})();
