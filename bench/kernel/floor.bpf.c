// SPDX-License-Identifier: GPL-2.0
/*
 * floor.bpf.c - the floor of the kernel-cost benchmark: on every hook a ktrail program
 * uses, a program that only counts its runs (one inlined per-CPU array increment).
 * Attached next to the real programs, it sees the same events in the same run, so its
 * run_time_ns / run_cnt is what the hook, the dispatch and bpf stats themselves cost on
 * this CPU; a ktrail program's cost above it is what ktrail adds. Never shipped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} kt_floor_runs SEC(".maps");

static __always_inline int count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&kt_floor_runs, &slot);
	if (n)
		*n += 1;
	return 0;
}

/* One program per hook; the name says which (the benchmark pairs them by hook). */
#define FLOOR_TP(hook, slot)                                                                       \
	SEC("tp_btf/" #hook)                                                                       \
	int floor_##hook(void *ctx)                                                                \
	{                                                                                          \
		return count(slot);                                                                \
	}

FLOOR_TP(sched_switch, 0)
FLOOR_TP(sched_process_exec, 1)
FLOOR_TP(sched_process_fork, 2)
FLOOR_TP(sched_process_exit, 3)
FLOOR_TP(inet_sock_set_state, 4)
FLOOR_TP(tcp_send_reset, 5)
FLOOR_TP(tcp_receive_reset, 6)
FLOOR_TP(cgroup_mkdir, 7)
FLOOR_TP(cgroup_rmdir, 8)
FLOOR_TP(block_rq_issue, 9)
FLOOR_TP(block_rq_complete, 10)
FLOOR_TP(mark_victim, 11)

SEC("cgroup_skb/ingress")
int floor_cgroup_skb_ingress(struct __sk_buff *skb)
{
	count(12);
	return 1;
}

SEC("cgroup_skb/egress")
int floor_cgroup_skb_egress(struct __sk_buff *skb)
{
	count(13);
	return 1;
}
