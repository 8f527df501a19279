// SPDX-License-Identifier: GPL-2.0
/*
 * process.bpf.c - process lifecycle: exec, fork (new processes), exit (once per
 * process). BTF raw tracepoints (tp_btf): typed arguments, no trace-buffer copy, and task
 * fields read with plain loads through the arguments' BTF pointers instead of helpers.
 */
#include "common.bpf.h"
#include "user_pages.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_proc_exec);
KT_BTF_ANCHOR(kt_proc_fork);
KT_BTF_ANCHOR(kt_proc_exit);

/* Keep at most this many argv entries (0 = as many as fit in KT_ARGS_LEN bytes). */
const volatile __u32 kt_cfg_args_max = 0;

_Static_assert(__builtin_offsetof(struct kt_proc_exec, args) == KT_PROC_EXEC_FIXED_SIZE,
	       "events.h: KT_PROC_EXEC_FIXED_SIZE is the offset of args");

#define KT_SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h, not in BTF */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(kt_proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	/* task is current. Fields are read through BTF pointers (plain loads, no helper calls). */
	__u32 tgid = task->tgid;
	if (kt_ignored_tgid(tgid))
		return 0;
	__u64 cgid = kt_task_cgroup_id(task);
	if (!kt_cgroup_wanted(cgid))
		return 0;

	struct kt_proc_exec *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_PROC_EXEC);
		return 0;
	}
	/* Every byte up to hdr.size is written below: no stale ring memory in the record. The
	 * args tail beyond hdr.size is never delivered (readers frame by hdr.size). */
	kt_fill_header(&e->hdr, KT_EV_PROC_EXEC, sizeof(*e), cgid, task->pid, tgid);
	/* What bpf_get_current_uid_gid() reports: the (new) credentials' real ids. */
	const struct cred *cred = task->cred;
	e->uid = cred->uid.val;
	e->gid = cred->gid.val;
	e->ppid = task->real_parent->tgid;
	e->args_count = bprm->argc;
	e->pad = 0;
	kt_copy_comm(e->comm, task->comm);

	kt_zero(e->filename, sizeof(e->filename) / 8);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename);
	if (n == sizeof(e->filename))
		e->hdr.flags |= KT_F_TRUNCATED; /* may have been cut at the bound */

	/* argv lives NUL-separated in the new mm between arg_start and arg_end. */
	struct mm_struct *mm = task->mm;
	__u64 arg_start = mm->arg_start;
	__u64 arg_end = mm->arg_end;
	__u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (kt_cfg_args_max != 0 && e->args_count > kt_cfg_args_max) {
		/* Cut where argument number kt_cfg_args_max starts: its pointer is in the argv
		 * array on the new stack (start_stack: argc, then argv[]). No byte scanning, which
		 * the verifier would have to walk byte by byte. 64-bit processes only: a 32-bit
		 * one fails the range check and keeps the byte bound alone. */
		__u64 cut = 0;
		__u64 argv_at = mm->start_stack + 8 * (kt_cfg_args_max + 1);
		if (kt_copy_user(mm, (char *)&cut, argv_at, sizeof(cut), sizeof(cut)) && cut > arg_start &&
		    cut < arg_end)
			len = cut - arg_start;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	if (len > KT_ARGS_LEN) {
		len = KT_ARGS_LEN;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	/* The record ends at the 8-byte word holding the last argument byte: kt_copy_user leaves
	 * the bytes between the end of argv and hdr.size zero. */
	if (len > 0 && !kt_copy_user(mm, e->args, arg_start, len, KT_ARGS_LEN)) {
		len = 0;
		e->hdr.flags |= KT_F_TRUNCATED;
	}
	e->args_size = len;
	e->hdr.size = KT_PROC_EXEC_SIZE(len);

	kt_submit(e, sizeof(*e));
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(kt_proc_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = child->pid;
	__u32 child_tgid = child->tgid;
	if (child_pid != child_tgid)
		return 0; /* a new thread, not a new process */
	__u32 parent_tgid = parent->tgid;
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
	__u32 parent_pid = parent->pid;
	/* Stamped with the child's start_boottime: the boot clock as the kernel created it,
	 * microseconds ago, and the start_ns its proc_exit will carry. Saves a clock read. */
	kt_fill_header_at(&e->hdr, KT_EV_PROC_FORK, sizeof(*e), child->start_boottime, cgid, parent_pid,
			  parent_tgid);
	e->parent_pid = parent_pid;
	e->parent_tgid = parent_tgid;
	e->child_pid = child_pid;
	e->child_tgid = child_tgid;
	kt_copy_comm(e->comm, child->comm);
	kt_submit(e, sizeof(*e));
	return 0;
}

/* Only the first argument is used: older kernels lack the group_dead argument. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kt_proc_exit, struct task_struct *task)
{
	struct signal_struct *sig = task->signal;
	/* signal->live was decremented before the tracepoint: 0 = last thread of the
	 * process, so the process is gone, report it once. */
	if (sig->live.counter != 0)
		return 0;
	__u32 tgid = task->tgid;
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
	kt_fill_header(&e->hdr, KT_EV_PROC_EXIT, sizeof(*e), cgid, task->pid, tgid);

	/* wait(2) status of the process: the group exit code when the whole group was
	 * told to exit (exit_group, fatal signal), else this last thread's own code. */
	__u32 code = task->exit_code;
	if (sig->flags & KT_SIGNAL_GROUP_EXIT)
		code = sig->group_exit_code;
	e->exit_code = (code >> 8) & 0xff;
	e->signal = code & 0x7f;
	e->core_dumped = (code & 0x80) ? 1 : 0;
	e->ppid = task->real_parent->tgid;
	/* Threads already released are summed in signal->sum_sched_runtime; add this last
	 * thread's own time, and the leader's if it is another thread (a leader stays a
	 * zombie until the parent reaps the process, so it is not in the sum yet). Threads
	 * exiting at the same moment may not be added yet: approximate for them. */
	struct task_struct *leader = task->group_leader;
	__u64 cpu = sig->sum_sched_runtime + task->se.sum_exec_runtime;
	if (leader != task)
		cpu += leader->se.sum_exec_runtime;
	e->cpu_ns = cpu;
	e->start_ns = leader->start_boottime;
	kt_copy_comm(e->comm, leader->comm);
	kt_submit(e, sizeof(*e));
	return 0;
}
