// SPDX-License-Identifier: GPL-2.0
/*
 * net.bpf.c - bytes and packets in and out per cgroup. cgroup_skb programs attached to
 * the v2 root (/sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on pure v2) see
 * every packet of every socket below it; bpf_skb_cgroup_id() is the socket's cgroup.
 * The loader attaches both with a BPF link (multi-attach: coexists with other users).
 * Counters live in kt_net, a per-CPU LRU hash (readers sum the CPUs; the collector deletes
 * an entry after its cgroup's rmdir). Never drops packets.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_net_value);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, KT_MAX_CGROUPS);
	__type(key, __u64); /* kt_cgroup_id */
	__type(value, struct kt_net_value);
} kt_net SEC(".maps");

static __always_inline void kt_net_count(struct __sk_buff *skb, bool ingress, __u32 slot)
{
	__u64 cgid = bpf_skb_cgroup_id(skb);
	if (!kt_cgroup_wanted(cgid))
		return;
	struct kt_net_value *v = bpf_map_lookup_elem(&kt_net, &cgid);
	if (!v) {
		struct kt_net_value init = {};
		bpf_map_update_elem(&kt_net, &cgid, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&kt_net, &cgid);
		if (!v) {
			kt_count_drop(slot); /* no LRU node free, or evicted at once */
			return;
		}
	}
	if (ingress) {
		v->rx_bytes += skb->len;
		v->rx_packets += 1;
	} else {
		v->tx_bytes += skb->len;
		v->tx_packets += 1;
	}
}

SEC("cgroup_skb/ingress")
int kt_net_ingress(struct __sk_buff *skb)
{
	kt_net_count(skb, true, KT_SLOT_NET_INGRESS);
	return 1; /* allow: we only count */
}

SEC("cgroup_skb/egress")
int kt_net_egress(struct __sk_buff *skb)
{
	kt_net_count(skb, false, KT_SLOT_NET_EGRESS);
	return 1;
}
