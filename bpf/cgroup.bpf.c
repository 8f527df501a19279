// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup.bpf.c - cgroup lifecycle (mkdir, rmdir, rename) straight from the kernel, so a
 * short-lived container's cgroup id -> path is known even if it is gone before user
 * space could look. Not subject to the cgroup allowlist: the collector needs every
 * path to resolve ids.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_cgroup_event);

/* 0: report the unified (v2) hierarchy only - the one bpf_get_current_cgroup_id() ids
 * refer to. Non-zero: also the v1 hierarchies of a hybrid host. */
const volatile __u32 kt_cfg_cgroup_all_hierarchies = 0;

static __always_inline int kt_cgroup_event(struct cgroup *cgrp, const char *path, __u16 type,
					   __u32 slot)
{
	__u32 hierarchy_id = BPF_CORE_READ(cgrp, root, hierarchy_id);
	/* The default (v2) root always has hierarchy id 0; v1 roots get ids from 1. */
	if (hierarchy_id != 0 && !kt_cfg_cgroup_all_hierarchies)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();

	struct kt_cgroup_event *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(slot);
		return 0;
	}
	kt_zero(e->path, sizeof(e->path) / 8);
	kt_fill_header(&e->hdr, type, sizeof(*e), BPF_CORE_READ(cgrp, kn, id), (__u32)id, id >> 32);
	e->level = BPF_CORE_READ(cgrp, level);
	e->hierarchy_id = hierarchy_id;
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	if (n == sizeof(e->path))
		e->hdr.flags |= KT_F_TRUNCATED;
	kt_submit(e, sizeof(*e));
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(kt_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	return kt_cgroup_event(cgrp, path, KT_EV_CGROUP_MKDIR, KT_SLOT_CGROUP_MKDIR);
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(kt_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	return kt_cgroup_event(cgrp, path, KT_EV_CGROUP_RMDIR, KT_SLOT_CGROUP_RMDIR);
}

SEC("tp_btf/cgroup_rename")
int BPF_PROG(kt_cgroup_rename, struct cgroup *cgrp, const char *path)
{
	return kt_cgroup_event(cgrp, path, KT_EV_CGROUP_RENAME, KT_SLOT_CGROUP_RENAME);
}
