// SPDX-License-Identifier: GPL-2.0
/*
 * tcp.bpf.c - TCP connections (IPv4 and IPv6): connect, accept, close with bytes,
 * duration, retransmits and resets. Built on sock:inet_sock_set_state (every state
 * change of every TCP socket) plus tcp:tcp_send_reset / tcp:tcp_receive_reset.
 *
 * State changes to ESTABLISHED and to CLOSE often run in softirq, where "current" is an
 * unrelated task: the cgroup comes from the socket (sk->sk_cgrp_data), and the pid from
 * kt_tcp_socks, filled when the state change runs in the owning process (connect(),
 * close()). Accepted sockets have pid 0 until their owner closes them.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_tcp_conn);
KT_BTF_ANCHOR(kt_tcp_close);
KT_BTF_ANCHOR(kt_tcp_reset);

#define KT_AF_INET 2
#define KT_AF_INET6 10

/* What we remember per live socket (keyed by its kernel address). Not ABI. */
struct kt_sock_state {
	__u64 start_ns;
	__u32 pid;
	__u32 tgid;
	__u32 resets;
	__u16 flags; /* KT_F_RESET_* */
	__u16 pad;
};

/* LRU: sockets that existed before load or whose close we missed age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct kt_sock_state);
} kt_tcp_socks SEC(".maps");

/* The four address/port fields shared by kt_tcp_conn, kt_tcp_close, kt_tcp_reset
 * (identical offsets in all three, checked by the layout test). */
struct kt_tcp_addr_fields {
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u8 saddr[KT_ADDR_LEN];
	__u8 daddr[KT_ADDR_LEN];
};

static __always_inline void kt_read_addrs(struct kt_tcp_addr_fields *a, const struct sock *sk)
{
	a->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* inet_sport, not skc_num: the close path unhashes the socket and zeroes skc_num
	 * before the tracepoint runs. */
	a->sport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	a->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	a->pad = 0;
	if (a->family == KT_AF_INET6) {
		BPF_CORE_READ_INTO(&a->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&a->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		__builtin_memset(a->saddr, 0, sizeof(a->saddr));
		__builtin_memset(a->daddr, 0, sizeof(a->daddr));
		BPF_CORE_READ_INTO((__u32 *)a->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)a->daddr, sk, __sk_common.skc_daddr);
	}
}

/* The socket's owning cgroup (set when the socket was created, inherited by accepted
 * sockets from their listener). */
static __always_inline __u64 kt_sock_cgroup_id(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

static __always_inline bool kt_is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline int kt_emit_conn(const struct sock *sk, __u16 type, __u64 cgid, __u32 pid,
					__u32 tgid)
{
	struct kt_tcp_conn *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_TCP_STATE);
		return 0;
	}
	kt_fill_header(&e->hdr, type, sizeof(*e), cgid, pid, tgid);
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk);
	e->sock_cookie = bpf_get_socket_cookie((void *)sk);
	kt_submit(e);
	return 0;
}

static __always_inline int kt_emit_close(const struct sock *sk, __u64 cgid, struct kt_sock_state *st)
{
	struct kt_tcp_close *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_TCP_STATE);
		return 0;
	}
	kt_fill_header(&e->hdr, KT_EV_TCP_CLOSE, sizeof(*e), cgid, st ? st->pid : 0, st ? st->tgid : 0);
	__u64 now = e->hdr.ts_ns;
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk);
	e->sock_cookie = bpf_get_socket_cookie((void *)sk);
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	/* Payload only: bytes_sent counts retransmitted bytes again; bytes_received counts
	 * a received FIN as one byte (SOCK_DONE is set when the peer's FIN arrived). */
	__u64 sent = BPF_CORE_READ(tp, bytes_sent);
	__u64 retrans = BPF_CORE_READ(tp, bytes_retrans);
	e->bytes_sent = sent > retrans ? sent - retrans : 0;
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u64 sk_flags = BPF_CORE_READ(sk, __sk_common.skc_flags); /* sk_flags */
	if ((sk_flags & (1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) && received > 0)
		received -= 1;
	e->bytes_received = received;
	e->retransmits = BPF_CORE_READ(tp, total_retrans);
	if (st) {
		e->hdr.flags = st->flags;
		e->resets = st->resets;
		e->duration_ns = now - st->start_ns;
	} else {
		e->resets = 0;
		e->duration_ns = 0;
	}
	kt_submit(e);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kt_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (!kt_is_tcp(sk))
		return 0;
	__u64 key = (__u64)sk;
	__u64 cgid = kt_sock_cgroup_id(sk);
	if (!kt_cgroup_wanted(cgid))
		return 0;

	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the owner is current. Remembered even for an
		 * ignored tgid, so that its close is recognised and suppressed too. */
		__u64 id = bpf_get_current_pid_tgid();
		struct kt_sock_state st = {.start_ns = bpf_ktime_get_boot_ns(), .pid = (__u32)id, .tgid = id >> 32};
		bpf_map_update_elem(&kt_tcp_socks, &key, &st, BPF_ANY);
		return 0;
	}

	struct kt_sock_state *st = bpf_map_lookup_elem(&kt_tcp_socks, &key);
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_SENT) {
			if (!st || kt_ignored_tgid(st->tgid))
				return 0; /* connect() started before load, or by the ignored tgid */
			return kt_emit_conn(sk, KT_EV_TCP_CONNECT, cgid, st->pid, st->tgid);
		}
		if (oldstate == TCP_SYN_RECV) {
			/* Accepted (handshake done, softirq): owner unknown until accept()/close. */
			struct kt_sock_state fresh = {.start_ns = bpf_ktime_get_boot_ns()};
			bpf_map_update_elem(&kt_tcp_socks, &key, &fresh, BPF_ANY);
			return kt_emit_conn(sk, KT_EV_TCP_ACCEPT, cgid, 0, 0);
		}
		return 0;
	}

	/* close()/shutdown() by the owner run in its context: learn the pid of accepted
	 * sockets here. */
	if (st && st->tgid == 0 &&
	    ((oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
	     (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK))) {
		__u64 id = bpf_get_current_pid_tgid();
		st->pid = (__u32)id;
		st->tgid = id >> 32;
	}

	if (newstate == TCP_CLOSE) {
		if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE)
			return 0; /* a listener going away, or a socket never used */
		if (st && kt_ignored_tgid(st->tgid)) {
			bpf_map_delete_elem(&kt_tcp_socks, &key);
			return 0;
		}
		kt_emit_close(sk, cgid, st);
		if (st)
			bpf_map_delete_elem(&kt_tcp_socks, &key);
	}
	return 0;
}

static __always_inline int kt_reset(const struct sock *sk, __u32 direction, __u32 slot)
{
	if (!sk)
		return 0; /* RST for a packet that matched no socket: nothing to attribute */
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* Time-wait and request mini-sockets only have sock_common: no cgroup, no state. */
	bool full = state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV;
	__u64 cgid = full ? kt_sock_cgroup_id(sk) : 0;
	if (!kt_cgroup_wanted(cgid))
		return 0;
	__u64 key = (__u64)sk;
	struct kt_sock_state *st = full ? bpf_map_lookup_elem(&kt_tcp_socks, &key) : NULL;
	if (st) {
		st->resets += 1;
		st->flags |= direction == 0 ? KT_F_RESET_SENT : KT_F_RESET_RECEIVED;
		if (kt_ignored_tgid(st->tgid))
			return 0;
	}

	struct kt_tcp_reset *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(slot);
		return 0;
	}
	kt_fill_header(&e->hdr, KT_EV_TCP_RESET, sizeof(*e), cgid, st ? st->pid : 0, st ? st->tgid : 0);
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk);
	e->sock_cookie = bpf_get_socket_cookie((void *)sk);
	e->direction = direction;
	e->pad2 = 0;
	kt_submit(e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(kt_tcp_send_reset, const struct sock *sk)
{
	return kt_reset(sk, 0, KT_SLOT_TCP_SEND_RESET);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(kt_tcp_receive_reset, struct sock *sk)
{
	return kt_reset(sk, 1, KT_SLOT_TCP_RECV_RESET);
}
