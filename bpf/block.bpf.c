// SPDX-License-Identifier: GPL-2.0
/*
 * block.bpf.c - block IO bytes, counts and a log2 latency histogram per cgroup.
 * block_rq_issue (request handed to the driver) -> block_rq_complete: device latency.
 *
 * Attribution: the bio's blkcg when it is a non-root v2 cgroup (io controller on v2:
 * the kernel then tracks who dirtied the pages, so even background writeback by a
 * flusher kworker lands in the right cgroup); otherwise the cgroup of the task issuing
 * the request - the writer for synchronous IO and fsync, the kworker's (root) cgroup
 * for background writeback. This fleet's blkio is v1, so the second rule applies here
 * (docs/bpf.md).
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_block_value);

struct kt_rq_start {
	__u64 issue_ns;
	__u64 cgroup_id;
};

/* In-flight requests by address. LRU: a request whose completion we missed ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct kt_rq_start);
} kt_block_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, KT_MAX_CGROUPS);
	__type(key, __u64); /* kt_cgroup_id */
	__type(value, struct kt_block_value);
} kt_block SEC(".maps");

#define KT_REQ_OP_MASK 0xff /* include/linux/blk_types.h: (1 << REQ_OP_BITS) - 1 */

static __always_inline __u64 kt_request_cgroup_id(struct request *rq)
{
	struct bio *bio = BPF_CORE_READ(rq, bio);
	if (bio && bpf_core_field_exists(bio->bi_blkg)) {
		struct cgroup *cg = BPF_CORE_READ(bio, bi_blkg, blkcg, css.cgroup);
		/* v2 only (hierarchy 0), and not the root: a root blkcg means "io controller not
		 * enabled below", where the issuing task knows better. */
		if (cg && BPF_CORE_READ(cg, root, hierarchy_id) == 0 && BPF_CORE_READ(cg, level) > 0)
			return BPF_CORE_READ(cg, kn, id);
	}
	return bpf_get_current_cgroup_id();
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(kt_block_issue, struct request *rq)
{
	__u64 cgid = kt_request_cgroup_id(rq);
	if (!kt_cgroup_wanted(cgid))
		return 0;
	__u64 key = (__u64)rq;
	struct kt_rq_start st = {.issue_ns = bpf_ktime_get_ns(), .cgroup_id = cgid};
	if (bpf_map_update_elem(&kt_block_start, &key, &st, BPF_ANY) != 0)
		kt_count_drop(KT_SLOT_BLOCK_ISSUE);
	return 0;
}

static __always_inline __u32 kt_log2_bucket(__u64 us)
{
	__u32 b = 0;
	/* floor(log2(us)), 0 for us < 2; bounded loop. */
	for (int i = 0; i < KT_LAT_BUCKETS - 1; i++) {
		if (us < 2)
			break;
		us >>= 1;
		b++;
	}
	return b;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(kt_block_done, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct kt_rq_start *st = bpf_map_lookup_elem(&kt_block_start, &key);
	if (!st)
		return 0; /* issued before load, or filtered out */
	__u32 op = BPF_CORE_READ(rq, cmd_flags) & KT_REQ_OP_MASK;
	/* A request can complete in parts; it is finished when this part covers the rest. */
	bool finished = nr_bytes >= BPF_CORE_READ(rq, __data_len);
	__u64 cgid = st->cgroup_id;
	__u64 issue_ns = st->issue_ns;
	if (finished)
		bpf_map_delete_elem(&kt_block_start, &key);
	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0; /* flush, discard, ...: no data bytes */

	struct kt_block_value *v = bpf_map_lookup_elem(&kt_block, &cgid);
	if (!v) {
		struct kt_block_value init = {};
		bpf_map_update_elem(&kt_block, &cgid, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&kt_block, &cgid);
		if (!v) {
			kt_count_drop(KT_SLOT_BLOCK_DONE); /* no LRU node free, or evicted at once */
			return 0;
		}
	}
	if (op == REQ_OP_READ)
		v->read_bytes += nr_bytes;
	else
		v->write_bytes += nr_bytes;
	if (!finished)
		return 0;
	if (op == REQ_OP_READ)
		v->read_ios += 1;
	else
		v->write_ios += 1;
	__u32 b = kt_log2_bucket((bpf_ktime_get_ns() - issue_ns) / 1000);
	if (b < KT_LAT_BUCKETS)
		v->latency_hist[b] += 1;
	return 0;
}
