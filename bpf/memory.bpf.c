// SPDX-License-Identifier: GPL-2.0
/*
 * memory.bpf.c - OOM kills (oom:mark_victim), and each memory cgroup's last word as it is
 * removed (cgroup:cgroup_rmdir): its peak, what is still charged, its limit and OOM kills.
 * A container that lives less than a sampling period is gone before user space could
 * read its cgroupfs files; the rmdir tracepoint runs before the memcg can go away.
 * Per-cgroup memory of live cgroups is NOT eBPF: the collector reads cgroupfs
 * (memory.current etc.) at the sampling period.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_oom_kill);
KT_BTF_ANCHOR(kt_memory_release);

/* 4 KiB pages: always on x86_64 (the Makefile's target), the default on arm64. PAGE_SHIFT
 * is not in BTF; an arm64 kernel with 16 or 64 KiB pages would need it as a setting. */
#define KT_PAGE_SHIFT 12
/* Pages -> KiB. */
#define KT_PAGE_TO_KB(pages) ((pages) << (KT_PAGE_SHIFT - 10))
/* A page counter's "no limit" is PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE pages); anything
 * from 2^62 bytes up is reported as no limit, as the collector does for cgroupfs files. */
#define KT_NO_LIMIT_PAGES (1ULL << (62 - KT_PAGE_SHIFT))

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
	kt_submit(e, sizeof(*e));
	return 0;
}

/* The memcg's own state at rmdir. cgroup_rmdir() holds cgroup_mutex around the tracepoint
 * and the css is only taken offline (subsys[] cleared) by a later work item that needs that
 * mutex, so the css and its page counters are there: nothing races this read. */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(kt_memory_release, struct cgroup *cgrp, const char *path)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0; /* a kernel without memcg */
	int ssid = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	/* NULL when this cgroup has no memory state of its own: a v1 hierarchy without the
	 * memory controller, or a v2 cgroup whose parent does not enable it. */
	struct cgroup_subsys_state *css = BPF_CORE_READ(cgrp, subsys[ssid]);
	if (!css)
		return 0;
	__u32 hierarchy_id = BPF_CORE_READ(cgrp, root, hierarchy_id);
	__u64 id = BPF_CORE_READ(cgrp, kn, id);
	/* The allowlist holds v2 ids: only a v2 cgroup's record can be checked against it. */
	if (hierarchy_id == 0 && !kt_cgroup_wanted(id))
		return 0;
	struct mem_cgroup *memcg = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);

	struct kt_memory_release *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_MEMORY_RELEASE);
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	kt_zero(e->path, sizeof(e->path) / 8);
	kt_fill_header(&e->hdr, KT_EV_MEMORY_RELEASE, sizeof(*e), id, (__u32)pid_tgid, pid_tgid >> 32);
	e->hdr.flags = KT_F_MEMORY_RELEASE;
	e->level = BPF_CORE_READ(cgrp, level);
	e->hierarchy_id = hierarchy_id;
	e->peak_bytes = (__u64)BPF_CORE_READ(memcg, memory.watermark) << KT_PAGE_SHIFT;
	__s64 usage = BPF_CORE_READ(memcg, memory.usage.counter);
	e->current_bytes = usage > 0 ? (__u64)usage << KT_PAGE_SHIFT : 0;
	__u64 max = BPF_CORE_READ(memcg, memory.max);
	e->limit_bytes = max >= KT_NO_LIMIT_PAGES ? 0 : max << KT_PAGE_SHIFT;
	e->oom_kills = 0;
	if (bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_OOM_KILL)) {
		int oom = bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL);
		__s64 kills = BPF_CORE_READ(memcg, memory_events[oom].counter);
		e->oom_kills = kills > 0 ? (__u64)kills : 0;
	}
	if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), path) == sizeof(e->path))
		e->hdr.flags |= KT_F_TRUNCATED;
	kt_submit(e, sizeof(*e));
	return 0;
}
