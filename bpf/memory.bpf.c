// SPDX-License-Identifier: GPL-2.0
/*
 * memory.bpf.c - OOM kills (oom:mark_victim). Per-cgroup memory usage is NOT eBPF: the
 * collector reads it from cgroupfs (memory.current etc.) at the sampling period.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_oom_kill);

/* Pages -> KiB. 4 KiB pages (x86_64, default arm64); PAGE_SHIFT is not in BTF. */
#define KT_PAGE_TO_KB(pages) ((pages) << 2)

/* mm_struct before 6.2: rss_stat was a struct of atomic counters. Local "flavor" types
 * (the ___pre62 suffix is ignored by CO-RE) let one object read both layouts. The layout
 * test is a field check on mm_struct, not bpf_core_type_exists(mm_rss_stat): a type that
 * vmlinux lacks sends libbpf (1.1) to the module BTFs, whose listing needs CAP_SYS_ADMIN. */
struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));
struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

static __always_inline __u64 kt_mm_counter(struct mm_struct *mm, int member)
{
	__s64 pages;
	if (bpf_core_field_exists(((struct mm_struct___pre62 *)0)->rss_stat)) {
		pages = BPF_CORE_READ((struct mm_struct___pre62 *)mm, rss_stat.count[member].counter);
	} else {
		/* 6.2+: a percpu_counter array; .count is the global part, off by at most the
		 * per-CPU batches (a few hundred KiB): fine for an OOM report. */
		pages = BPF_CORE_READ(mm, rss_stat[member].count);
	}
	return pages > 0 ? (__u64)pages : 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(kt_oom_mark_victim, struct task_struct *task, uid_t uid)
{
	__u64 cgid = kt_task_cgroup_id(task);
	if (!kt_cgroup_wanted(cgid))
		return 0;
	struct kt_oom_kill *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_OOM_KILL);
		return 0;
	}
	__u32 pid = BPF_CORE_READ(task, pid);
	kt_fill_header(&e->hdr, KT_EV_OOM_KILL, sizeof(*e), cgid, pid, BPF_CORE_READ(task, tgid));
	e->victim_pid = pid;
	e->victim_uid = uid;
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	e->total_vm_kb = KT_PAGE_TO_KB(BPF_CORE_READ(mm, total_vm));
	e->anon_rss_kb = KT_PAGE_TO_KB(kt_mm_counter(mm, MM_ANONPAGES));
	e->file_rss_kb = KT_PAGE_TO_KB(kt_mm_counter(mm, MM_FILEPAGES));
	e->shmem_rss_kb = KT_PAGE_TO_KB(kt_mm_counter(mm, MM_SHMEMPAGES));
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	kt_submit(e);
	return 0;
}
