/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * events.h - the one contract between ktrail's eBPF programs and user space.
 *
 * Rules (docs/events.md is the human-readable catalog of the same thing):
 *  - fixed-width fields only (no bool/int/long), explicit padding that writers zero;
 *  - every ring-buffer record starts with struct kt_header (32 bytes) and its size
 *    is a multiple of 8, so records can be laid end to end in a batch; hdr.size is the
 *    struct's size, except proc_exec, which ends after the argv bytes it uses;
 *  - event type numbers are never reused: retire a type, never renumber it;
 *  - collector/src/kernel/layout.ts mirrors every offset here, and a test compares
 *    it with the BTF of the compiled objects (bpf/.output/layout.bpf.o).
 *
 * Included from BPF programs (after vmlinux.h) and from user-space C (after
 * <linux/types.h>); only __u8/__u16/__u32/__u64 are used.
 */
#ifndef KTRAIL_EVENTS_H
#define KTRAIL_EVENTS_H

/* ---- typedefs that say what a field means (Inspektor Gadget style) ---- */
typedef __u64 kt_boot_ns;   /* bpf_ktime_get_boot_ns(): boot-time clock, ns */
typedef __u64 kt_cgroup_id; /* v2 cgroup id = inode number of the cgroup dir */

/* ---- event types: explicitly numbered, never reused ---- */
enum kt_event_type {
	KT_EV_PROC_EXEC = 1,
	KT_EV_PROC_FORK = 2,
	KT_EV_PROC_EXIT = 3,
	KT_EV_CGROUP_MKDIR = 4,
	KT_EV_CGROUP_RMDIR = 5,
	KT_EV_CGROUP_RENAME = 6,
	KT_EV_OOM_KILL = 7,
	KT_EV_TCP_CONNECT = 8,
	KT_EV_TCP_ACCEPT = 9,
	KT_EV_TCP_CLOSE = 10,
	KT_EV_TCP_RESET = 11,
	KT_EV_MEMORY_RELEASE = 12, /* never leaves the collector: it becomes a memory_sample */
	/* 13..63 reserved for future ring-buffer events */
	/* 64.. user-space samples built from aggregate maps (never in the ring buffer) */
	KT_EV_CPU_SAMPLE = 64,
	KT_EV_NET_SAMPLE = 65,
	KT_EV_BLOCK_SAMPLE = 66,
	KT_EV_MEMORY_SAMPLE = 67,
};

/* ---- header flags ---- */
enum kt_event_flags {
	KT_F_TRUNCATED = 1 << 0,      /* a string/argv did not fit its bound */
	/* bit 1 reserved */
	KT_F_RESET_SENT = 1 << 2,     /* tcp_close: this side sent a RST */
	KT_F_RESET_RECEIVED = 1 << 3, /* tcp_close: this side received a RST */
	/* memory_release, and the memory_sample it becomes: read by the kernel when the
	 * cgroup was removed, so peak_bytes is the cgroup's whole-life peak */
	KT_F_MEMORY_RELEASE = 1 << 4,
};

/* ---- drop-counter slots: one per program (kt_drops[slot] += 1 on failed reserve
 * or on a full aggregate map). Append only; never renumber. ---- */
enum kt_prog_slot {
	KT_SLOT_PROC_EXEC = 0,
	KT_SLOT_PROC_FORK = 1,
	KT_SLOT_PROC_EXIT = 2,
	KT_SLOT_CGROUP_MKDIR = 3,
	KT_SLOT_CGROUP_RMDIR = 4,
	KT_SLOT_CGROUP_RENAME = 5,
	KT_SLOT_OOM_KILL = 6,
	KT_SLOT_TCP_STATE = 7,
	KT_SLOT_TCP_SEND_RESET = 8,
	KT_SLOT_TCP_RECV_RESET = 9,
	KT_SLOT_CPU_SWITCH = 10,  /* kt_cpu insert failed */
	KT_SLOT_NET_INGRESS = 11, /* kt_net insert failed */
	KT_SLOT_NET_EGRESS = 12,  /* kt_net insert failed */
	KT_SLOT_BLOCK_ISSUE = 13, /* kt_block_start full */
	KT_SLOT_BLOCK_DONE = 14,  /* kt_block insert failed */
	KT_SLOT_MEMORY_RELEASE = 15,
	KT_SLOT_MAX = 32,
};

/* ---- bounds ---- */
#define KT_COMM_LEN 16
#define KT_FILENAME_LEN 256
#define KT_ARGS_LEN 1024 /* power of two: the BPF side masks with KT_ARGS_LEN - 1 */
#define KT_PATH_LEN 256
#define KT_ADDR_LEN 16
#define KT_LAT_BUCKETS 32

/* ---- common header: every ring-buffer record starts with it (32 bytes) ---- */
struct kt_header {
	__u16 type;  /* enum kt_event_type */
	__u16 flags; /* enum kt_event_flags */
	__u32 size;  /* total record size in bytes, header included */
	kt_boot_ns ts_ns;
	kt_cgroup_id cgroup_id;
	__u32 pid;  /* kernel task id (thread id) */
	__u32 tgid; /* user-space pid */
};

/* type 1. Variable size: hdr.size = KT_PROC_EXEC_SIZE(args_size), the fixed part and args
 * up to the 8-byte word holding its last byte (zero after args_size); readers frame by
 * hdr.size, so the unused rest of args never leaves the kernel. */
struct kt_proc_exec {
	struct kt_header hdr;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 args_count; /* argc of the new program (all of them, even if truncated) */
	__u32 args_size;  /* bytes of args[] used, NULs included */
	__u32 pad;
	char comm[KT_COMM_LEN];
	char filename[KT_FILENAME_LEN];
	char args[KT_ARGS_LEN]; /* NUL-separated argv */
};
#define KT_PROC_EXEC_FIXED_SIZE 328 /* offsetof(struct kt_proc_exec, args) */
#define KT_PROC_EXEC_SIZE(args_size) (KT_PROC_EXEC_FIXED_SIZE + (((args_size) + 7) & ~7ULL))

/* type 2: emitted for new processes only (not for new threads) */
struct kt_proc_fork {
	struct kt_header hdr;
	__u32 parent_pid;
	__u32 parent_tgid;
	__u32 child_pid;
	__u32 child_tgid;
	char comm[KT_COMM_LEN];
};

/* type 3: once per process, when its last thread exits */
struct kt_proc_exit {
	struct kt_header hdr;
	__u32 ppid;
	__u32 exit_code;   /* (status >> 8) & 0xff */
	__u32 signal;      /* status & 0x7f */
	__u32 core_dumped; /* 1 if status & 0x80 */
	kt_boot_ns start_ns;
	__u64 cpu_ns; /* on-CPU time of the whole process (sum_exec_runtime) */
	char comm[KT_COMM_LEN];
};

/* types 4, 5, 6 */
struct kt_cgroup_event {
	struct kt_header hdr; /* hdr.cgroup_id = the cgroup created/removed/renamed */
	__u32 level;
	__u32 hierarchy_id;
	char path[KT_PATH_LEN]; /* relative to the hierarchy root, e.g. "/docker/<id>" */
};

/* type 7 */
struct kt_oom_kill {
	struct kt_header hdr; /* hdr.cgroup_id/pid/tgid = the victim's */
	__u32 victim_pid;
	__u32 victim_uid;
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	char comm[KT_COMM_LEN];
};

/* types 8 and 9. hdr.cgroup_id = the socket's cgroup (sk->sk_cgrp_data). */
struct kt_tcp_conn {
	struct kt_header hdr;
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
	__u16 sport;  /* host byte order */
	__u16 dport;  /* host byte order */
	__u16 pad;
	__u8 saddr[KT_ADDR_LEN]; /* IPv4 in the first 4 bytes */
	__u8 daddr[KT_ADDR_LEN];
	__u64 sock_cookie;
};

/* type 10 */
struct kt_tcp_close {
	struct kt_header hdr; /* flags may carry KT_F_RESET_SENT / KT_F_RESET_RECEIVED */
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u8 saddr[KT_ADDR_LEN];
	__u8 daddr[KT_ADDR_LEN];
	__u64 sock_cookie;
	__u64 bytes_sent;     /* payload bytes sent, retransmissions counted once */
	__u64 bytes_received; /* payload bytes received (a FIN is not a byte) */
	__u64 duration_ns;    /* first state change seen -> close; 0 if unknown */
	__u32 retransmits;    /* tcp_sock.total_retrans */
	__u32 resets;         /* RSTs seen on this socket (sent + received) */
};

/* type 11 */
struct kt_tcp_reset {
	struct kt_header hdr;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u8 saddr[KT_ADDR_LEN];
	__u8 daddr[KT_ADDR_LEN];
	__u64 sock_cookie;
	__u32 direction; /* 0 sent, 1 received */
	__u32 pad2;
};

/* type 12: a cgroup that had memory controller state of its own was removed (v2 with
 * the memory controller enabled for it, or any v1 memory hierarchy cgroup). Values are
 * the memcg's page counter at rmdir, while cgroup_mutex still keeps its css online.
 * hdr.cgroup_id = the removed cgroup's id in ITS hierarchy (hierarchy_id): a v1 id on a
 * hybrid host, which the collector maps to the v2 cgroup of the same path. */
struct kt_memory_release {
	struct kt_header hdr; /* flags: KT_F_MEMORY_RELEASE */
	__u32 level;
	__u32 hierarchy_id;
	__u64 peak_bytes;    /* watermark: v2 memory.peak, v1 memory.max_usage_in_bytes */
	__u64 current_bytes; /* still charged at removal (page cache, kernel memory) */
	__u64 limit_bytes;   /* memory.max / memory.limit_in_bytes; 0 = no limit */
	__u64 oom_kills;     /* memory.events oom_kill (v1: memory.oom_control oom_kill) */
	char path[KT_PATH_LEN]; /* relative to the hierarchy root */
};

/* ---- aggregate map values (key: kt_cgroup_id). All three maps are
 * BPF_MAP_TYPE_LRU_PERCPU_HASH: readers SUM the per-CPU values. Counters are
 * cumulative since the entry was created; the collector computes deltas and deletes
 * an entry after reading it once its cgroup is removed. ---- */

/* kt_cpu */
struct kt_cpu_value {
	__u64 cpu_ns;   /* on-CPU time, from sched_switch */
	__u64 switches; /* times a task of this cgroup was switched out */
};

/* kt_net */
struct kt_net_value {
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
};

/* kt_block */
struct kt_block_value {
	__u64 read_bytes;
	__u64 write_bytes;
	__u64 read_ios;
	__u64 write_ios;
	__u64 latency_hist[KT_LAT_BUCKETS]; /* bucket i: latency in [2^i, 2^(i+1)) us; 0 also < 1 us */
};

#endif /* KTRAIL_EVENTS_H */
