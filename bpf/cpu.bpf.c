// SPDX-License-Identifier: GPL-2.0
/*
 * cpu.bpf.c - on-CPU time per cgroup from sched_switch, aggregated in the kernel.
 * High rate (every context switch), so nothing goes to the ring buffer: the time since
 * the previous switch on this CPU is added to the outgoing task's cgroup in kt_cpu,
 * a per-CPU LRU hash (no atomics, no cache-line bouncing; readers sum the CPUs). The
 * collector deletes a cgroup's entry after its rmdir; LRU only reclaims what it missed.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_cpu_value);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, KT_MAX_CGROUPS);
	__type(key, __u64); /* kt_cgroup_id */
	__type(value, struct kt_cpu_value);
} kt_cpu SEC(".maps");

/* Per CPU: when the running task was switched in (0 = not seen yet since load). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kt_cpu_switched_in SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(kt_cpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	__u64 *since = bpf_map_lookup_elem(&kt_cpu_switched_in, &zero);
	if (!since)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 start = *since;
	*since = now;
	/* Nothing to charge on the first switch seen, or for the idle task. */
	if (start == 0 || prev->pid == 0)
		return 0;

	/* current is still prev here. */
	__u64 cgid = bpf_get_current_cgroup_id();
	if (!kt_cgroup_wanted(cgid))
		return 0;
	struct kt_cpu_value *v = bpf_map_lookup_elem(&kt_cpu, &cgid);
	if (!v) {
		struct kt_cpu_value init = {};
		bpf_map_update_elem(&kt_cpu, &cgid, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&kt_cpu, &cgid);
		if (!v) {
			kt_count_drop(KT_SLOT_CPU_SWITCH); /* no LRU node free, or evicted at once */
			return 0;
		}
	}
	v->cpu_ns += now - start;
	v->switches += 1;
	return 0;
}
