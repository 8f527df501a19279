// SPDX-License-Identifier: GPL-2.0
/*
 * process.bpf.c - process lifecycle: exec, fork (new processes), exit (once per
 * process). BTF raw tracepoints (tp_btf): typed arguments, no trace-buffer copy.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_proc_exec);
KT_BTF_ANCHOR(kt_proc_fork);
KT_BTF_ANCHOR(kt_proc_exit);

/* Keep at most this many argv entries (0 = as many as fit in KT_ARGS_LEN bytes). */
const volatile __u32 kt_cfg_args_max = 0;

#define KT_SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h, not in BTF */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(kt_proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (kt_ignored_tgid(tgid))
		return 0;
	__u64 cgid = bpf_get_current_cgroup_id();
	if (!kt_cgroup_wanted(cgid))
		return 0;

	struct kt_proc_exec *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_PROC_EXEC);
		return 0;
	}
	/* Zero everything: string tails and padding must never carry stale ring memory. */
	kt_zero(e, sizeof(*e) / 8);
	kt_fill_header(&e->hdr, KT_EV_PROC_EXEC, sizeof(*e), cgid, (__u32)id, tgid);

	__u64 ugid = bpf_get_current_uid_gid();
	e->uid = (__u32)ugid;
	e->gid = ugid >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->args_count = BPF_CORE_READ(bprm, argc);
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	if (n == sizeof(e->filename))
		e->hdr.flags |= KT_F_TRUNCATED; /* may have been cut at the bound */

	/* argv lives NUL-separated in the new mm between arg_start and arg_end. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__u64 arg_start = BPF_CORE_READ(mm, arg_start);
	__u64 arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (kt_cfg_args_max != 0 && e->args_count > kt_cfg_args_max) {
		/* Cut where argument number kt_cfg_args_max starts: its pointer is in the argv
		 * array on the new stack (start_stack: argc, then argv[]). No byte scanning, which
		 * the verifier would have to walk byte by byte. 64-bit processes only: a 32-bit
		 * one fails the range check and keeps the byte bound alone. */
		__u64 start_stack = BPF_CORE_READ(mm, start_stack);
		__u64 cut = 0;
		if (bpf_probe_read_user(&cut, sizeof(cut), (const void *)(start_stack + 8 * (kt_cfg_args_max + 1))) == 0 &&
		    cut > arg_start && cut < arg_end)
			len = cut - arg_start;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	if (len > KT_ARGS_LEN) {
		len = KT_ARGS_LEN;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	if (len > 0 && bpf_probe_read_user(e->args, len, (const void *)arg_start) != 0) {
		len = 0;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	e->args_size = len;

	kt_submit(e);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(kt_proc_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_pid != child_tgid)
		return 0; /* a new thread, not a new process */
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	if (kt_ignored_tgid(parent_tgid))
		return 0;
	/* The child's cgroup: differs from the parent's with CLONE_INTO_CGROUP. */
	__u64 cgid = kt_task_cgroup_id(child);
	if (!kt_cgroup_wanted(cgid))
		return 0;

	struct kt_proc_fork *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_PROC_FORK);
		return 0;
	}
	__u32 parent_pid = BPF_CORE_READ(parent, pid);
	kt_fill_header(&e->hdr, KT_EV_PROC_FORK, sizeof(*e), cgid, parent_pid, parent_tgid);
	e->parent_pid = parent_pid;
	e->parent_tgid = parent_tgid;
	e->child_pid = child_pid;
	e->child_tgid = child_tgid;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	kt_submit(e);
	return 0;
}

/* Only the first argument is used: older kernels lack the group_dead argument. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kt_proc_exit, struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	/* signal->live was decremented before the tracepoint: 0 = last thread of the
	 * process, so the process is gone, report it once. */
	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;
	__u32 pid = BPF_CORE_READ(task, pid);
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (kt_ignored_tgid(tgid))
		return 0;
	__u64 cgid = kt_task_cgroup_id(task);
	if (!kt_cgroup_wanted(cgid))
		return 0;

	struct kt_proc_exit *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_PROC_EXIT);
		return 0;
	}
	kt_fill_header(&e->hdr, KT_EV_PROC_EXIT, sizeof(*e), cgid, pid, tgid);

	/* wait(2) status of the process: the group exit code when the whole group was
	 * told to exit (exit_group, fatal signal), else this last thread's own code. */
	__u32 code = BPF_CORE_READ(task, exit_code);
	if (BPF_CORE_READ(sig, flags) & KT_SIGNAL_GROUP_EXIT)
		code = BPF_CORE_READ(sig, group_exit_code);
	e->exit_code = (code >> 8) & 0xff;
	e->signal = code & 0x7f;
	e->core_dumped = (code & 0x80) ? 1 : 0;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/* Threads already released are summed in signal->sum_sched_runtime; add this last
	 * thread's own time, and the leader's if it is another thread (a leader stays a
	 * zombie until the parent reaps the process, so it is not in the sum yet). Threads
	 * exiting at the same moment may not be added yet: approximate for them. */
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	__u64 cpu = BPF_CORE_READ(sig, sum_sched_runtime) + BPF_CORE_READ(task, se.sum_exec_runtime);
	if (leader != task)
		cpu += BPF_CORE_READ(leader, se.sum_exec_runtime);
	e->cpu_ns = cpu;
	e->start_ns = BPF_CORE_READ(leader, start_boottime);
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	BPF_CORE_READ_STR_INTO(&e->comm, leader, comm);
	kt_submit(e);
	return 0;
}
