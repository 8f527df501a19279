/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * common.bpf.h - what every ktrail BPF object shares: the ring buffer, the drop
 * counters, the cgroup allowlist, the load-time settings and small helpers.
 *
 * The loader (native/) creates ONE kt_events, ONE kt_drops and ONE kt_cgroup_allow and
 * calls bpf_map__reuse_fd() on each object's copies before load, so all concerns
 * write into the same ring buffer and the same counters. The definitions below must
 * therefore be identical in every object (they are: they all come from here).
 */
#ifndef KTRAIL_COMMON_BPF_H
#define KTRAIL_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"

#define KT_RINGBUF_DEFAULT_BYTES (8 * 1024 * 1024)
/* Entries of the per-cgroup maps (kt_cpu, kt_net, kt_block, kt_cgroup_allow). The aggregate
 * maps hold cgroups that were active since their entry was last deleted: the collector
 * deletes an entry once it has read it after the cgroup's rmdir, and the maps are LRU so
 * that a missed delete can never lock new cgroups out (docs/bpf.md, "Map lifetime"). */
#define KT_MAX_CGROUPS 16384

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KT_RINGBUF_DEFAULT_BYTES); /* the loader may resize before load */
} kt_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KT_SLOT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kt_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} kt_cgroup_allow SEC(".maps");

/* ---- load-time settings (.rodata), patched by name by the loader ---- */
/* Non-zero: only cgroups present in kt_cgroup_allow are reported. */
const volatile __u32 kt_cfg_filter_enabled = 0;
/* Events caused by this tgid are ignored (the collector itself), 0 = none. */
const volatile __u32 kt_cfg_ignore_tgid = 0;

/* Wake the reader when this many bytes wait in the ring (0: libbpf's default, which may
 * wake it for every record). Each wakeup is an irq_work self-IPI - a VM exit under
 * virtualization, several microseconds - so batching them is most of what a record costs.
 * Only the record that brings the waiting bytes to the threshold wakes the reader: the ones
 * after it, until the reader has drained, would each send another IPI to no use. The loader
 * caps it at half the ring (native/ and the bench's bare reader do), so that a small ring
 * still wakes the reader before it fills up. Readers must also drain on a poll timeout (both
 * do, every <= 10 ms), which bounds the extra latency and covers a wakeup two CPUs' records
 * crossed the threshold together without sending. */
const volatile __u32 kt_cfg_wakeup_bytes = 64 * 1024;

/* Adds one to this program's drop counter. */
static __always_inline void kt_count_drop(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&kt_drops, &slot);
	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

/* True when events of this cgroup should be reported. */
static __always_inline bool kt_cgroup_wanted(__u64 cgroup_id)
{
	if (!kt_cfg_filter_enabled)
		return true;
	return bpf_map_lookup_elem(&kt_cgroup_allow, &cgroup_id) != NULL;
}

/* True when the current task belongs to the collector and must not be reported. */
static __always_inline bool kt_ignored_tgid(__u32 tgid)
{
	return kt_cfg_ignore_tgid != 0 && tgid == kt_cfg_ignore_tgid;
}

/* Fills the common header with a boot-clock time the caller already has; cgroup_id, pid
 * and tgid are given by the caller since they are not always the current task's (TCP in
 * softirq, OOM victims, forks). */
static __always_inline void kt_fill_header_at(struct kt_header *h, __u16 type, __u32 size, __u64 ts_ns,
					      __u64 cgroup_id, __u32 pid, __u32 tgid)
{
	h->type = type;
	h->flags = 0;
	h->size = size;
	h->ts_ns = ts_ns;
	h->cgroup_id = cgroup_id;
	h->pid = pid;
	h->tgid = tgid;
}

/* Fills the common header, stamped now. */
static __always_inline void kt_fill_header(struct kt_header *h, __u16 type, __u32 size,
					   __u64 cgroup_id, __u32 pid, __u32 tgid)
{
	kt_fill_header_at(h, type, size, bpf_ktime_get_boot_ns(), cgroup_id, pid, tgid);
}

/* Zeroes `words` u64s at p (a constant): unrolled into plain stores, no loop to run.
 * volatile keeps clang from turning it back into a memset, which BPF cannot call. */
static __always_inline void kt_zero(void *p, __u32 words)
{
	volatile __u64 *w = p;
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < words; i++)
		w[i] = 0;
}

/* Bytes a reserved record of `size` takes in the ring: an 8-byte header, padded to 8. */
#define KT_RING_BYTES(size) ((((size) + 8) + 7) & ~7ULL)

/* Submits a record reserved with `size` bytes, batching reader wakeups (kt_cfg_wakeup_bytes). */
static __always_inline void kt_submit(void *record, __u64 size)
{
	__u64 flags = 0;
	if (kt_cfg_wakeup_bytes) {
		/* Waiting bytes, this record included: did this record cross the threshold? */
		__u64 avail = bpf_ringbuf_query(&kt_events, BPF_RB_AVAIL_DATA);
		flags = avail >= kt_cfg_wakeup_bytes && avail < kt_cfg_wakeup_bytes + KT_RING_BYTES(size)
				? BPF_RB_FORCE_WAKEUP
				: BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(record, flags);
}

/* v2 cgroup id of any task (not only current): task->cgroups->dfl_cgrp->kn->id. Plain loads
 * through BTF pointers (tp_btf arguments): the verifier turns them into fault-safe loads,
 * where each BPF_CORE_READ hop or bpf_get_current_cgroup_id() would be a helper call. */
static __always_inline __u64 kt_task_cgroup_id(struct task_struct *task)
{
	return task->cgroups->dfl_cgrp->kn->id;
}

/* Copies a task's comm (16 bytes, NUL-terminated) as two words, zeroing every byte after
 * the first NUL as strscpy_pad() would: nothing of an older name leaks into the record. */
static __always_inline void kt_copy_comm(char *dst, const char *comm)
{
	const __u64 ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	__u64 w0 = *(const __u64 *)comm;
	__u64 w1 = *(const __u64 *)(comm + 8);
	/* Lowest set bit of z: the high bit of the first zero byte (little-endian). */
	__u64 z = (w0 - ones) & ~w0 & highs;
	if (z) {
		w0 &= ((z & -z) >> 7) - 1;
		w1 = 0;
	} else {
		z = (w1 - ones) & ~w1 & highs;
		if (z)
			w1 &= ((z & -z) >> 7) - 1;
	}
	*(__u64 *)dst = w0;
	*(__u64 *)(dst + 8) = w1;
}

/* Puts an ABI struct into this object's BTF: records built in ring-buffer memory are
 * otherwise invisible there, and the layout test reads every object's BTF. Costs one
 * 8-byte constant in .rodata (not a kt_cfg_* setting: the loader ignores it). */
#define KT_BTF_ANCHOR(name) struct name *const volatile kt_abi_##name = 0

#endif /* KTRAIL_COMMON_BPF_H */
