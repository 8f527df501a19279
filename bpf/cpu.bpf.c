// SPDX-License-Identifier: GPL-2.0
/*
 * cpu.bpf.c - on-CPU time per cgroup from sched_switch, aggregated in the kernel.
 * High rate (every context switch), so nothing goes to the ring buffer: the outgoing
 * task's run time since it was switched in (from the scheduler's sum_exec_runtime, no
 * clock read) is added to its cgroup in kt_cpu, a per-CPU LRU hash (no atomics, no
 * cache-line bouncing; readers sum the CPUs). The collector deletes a cgroup's entry
 * after its rmdir; LRU only reclaims what it missed.
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

#define KT_MAX_RT_PRIO 100 /* include/linux/sched/prio.h: prio below it is real-time or deadline */

/* Per CPU: the task switched in last and its sum_exec_runtime at that moment. */
struct kt_cpu_running {
	__u64 task; /* task_struct address; 0 = no switch seen yet on this CPU */
	__u64 runtime_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_cpu_running);
} kt_cpu_switched_in SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(kt_cpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	struct kt_cpu_running *run = bpf_map_lookup_elem(&kt_cpu_switched_in, &zero);
	if (!run)
		return 0;
	/* The scheduler's own accounting instead of a clock read: by this tracepoint it has
	 * charged prev's slice to prev->se.sum_exec_runtime (update_curr() on dequeue or
	 * put_prev_task()), which is what cpu.stat and proc_exit's cpu_ns add up too. */
	__u64 start = run->runtime_ns;
	__u64 was = run->task;
	run->task = (__u64)next;
	run->runtime_ns = next->se.sum_exec_runtime;
	if (prev->pid == 0)
		return 0; /* the idle task */
	__u64 ns = prev->se.sum_exec_runtime;
	if (was == (__u64)prev)
		ns -= start;
	else if (prev->prio >= KT_MAX_RT_PRIO)
		/* prev's switch-in went unseen: the first switch after load, or one this program
		 * did not run for (about 0.2 % of switches on the test VMs). The fair class keeps
		 * the runtime prev had when last picked, which is that same start. */
		ns -= prev->se.prev_sum_exec_runtime;
	else
		ns = 0; /* real-time or deadline: no such record; the entry still counts the switch */

	__u64 cgid = kt_task_cgroup_id(prev);
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
	v->cpu_ns += ns;
	v->switches += 1;
	return 0;
}
