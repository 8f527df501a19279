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

/* The socket's source port in host order. A full socket's is inet_sport: the close path
 * unhashes the socket and zeroes skc_num before the tracepoint runs. Time-wait and
 * request mini-sockets have no inet_sock part, but stay hashed: skc_num is right there. */
static __always_inline __u16 kt_sport(const struct sock *sk, const struct tcp_sock *tp)
{
	return tp ? bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport) : sk->__sk_common.skc_num;
}

/* Addresses and ports through plain loads of sock_common (no helper calls). */
static __always_inline void kt_read_addrs(struct kt_tcp_addr_fields *a, const struct sock *sk, __u16 sport)
{
	const struct sock_common *c = &sk->__sk_common;
	__u16 family = c->skc_family;
	a->family = family;
	a->sport = sport;
	a->dport = bpf_ntohs(c->skc_dport);
	a->pad = 0;
	__u64 *s = (__u64 *)a->saddr;
	__u64 *d = (__u64 *)a->daddr;
	if (family == KT_AF_INET6) {
		s[0] = *(const __u64 *)&c->skc_v6_rcv_saddr;
		s[1] = *((const __u64 *)&c->skc_v6_rcv_saddr + 1);
		d[0] = *(const __u64 *)&c->skc_v6_daddr;
		d[1] = *((const __u64 *)&c->skc_v6_daddr + 1);
	} else {
		s[0] = c->skc_rcv_saddr; /* IPv4 in the first 4 bytes, the rest zero */
		s[1] = 0;
		d[0] = c->skc_daddr;
		d[1] = 0;
	}
}

/* The socket's cookie: the kernel stores it in the socket once generated (the connect or
 * accept record's helper call did that), so later records read it with a load. */
static __always_inline __u64 kt_sock_cookie(const struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	return cookie ? cookie : bpf_get_socket_cookie((void *)sk);
}

/* The socket's owning cgroup (set when the socket was created, inherited by accepted
 * sockets from their listener). Right in softirq too, where current is unrelated. */
static __always_inline __u64 kt_sock_cgroup_id(const struct sock *sk)
{
	return sk->sk_cgrp_data.cgroup->kn->id;
}

/* kt_cgroup_wanted() for a socket, reading its cgroup only when filtering is on. */
static __always_inline bool kt_sock_wanted(const struct sock *sk)
{
	return !kt_cfg_filter_enabled || kt_cgroup_wanted(kt_sock_cgroup_id(sk));
}

/* connect/accept: the socket is established and hashed, so skc_num is its source port. */
static __always_inline int kt_emit_conn(const struct sock *sk, __u16 type, __u64 ts_ns, __u32 pid, __u32 tgid)
{
	struct kt_tcp_conn *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_TCP_STATE);
		return 0;
	}
	kt_fill_header_at(&e->hdr, type, sizeof(*e), ts_ns, kt_sock_cgroup_id(sk), pid, tgid);
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk, sk->__sk_common.skc_num);
	e->sock_cookie = kt_sock_cookie(sk);
	kt_submit(e, sizeof(*e));
	return 0;
}

static __always_inline int kt_emit_close(const struct sock *sk, struct kt_sock_state *st)
{
	const struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return 0; /* not a full TCP socket: cannot happen on this tracepoint */
	struct kt_tcp_close *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(KT_SLOT_TCP_STATE);
		return 0;
	}
	kt_fill_header(&e->hdr, KT_EV_TCP_CLOSE, sizeof(*e), kt_sock_cgroup_id(sk), st ? st->pid : 0,
		       st ? st->tgid : 0);
	__u64 now = e->hdr.ts_ns;
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk, kt_sport(sk, tp));
	e->sock_cookie = kt_sock_cookie(sk);
	/* Payload only: bytes_sent counts retransmitted bytes again; bytes_received counts
	 * a received FIN as one byte (SOCK_DONE is set when the peer's FIN arrived). */
	__u64 sent = tp->bytes_sent;
	__u64 retrans = tp->bytes_retrans;
	e->bytes_sent = sent > retrans ? sent - retrans : 0;
	__u64 received = tp->bytes_received;
	__u64 sk_flags = sk->__sk_common.skc_flags; /* sk_flags */
	if ((sk_flags & (1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) && received > 0)
		received -= 1;
	e->bytes_received = received;
	e->retransmits = tp->total_retrans;
	if (st) {
		e->hdr.flags = st->flags;
		e->resets = st->resets;
		e->duration_ns = now - st->start_ns;
	} else {
		e->resets = 0;
		e->duration_ns = 0;
	}
	kt_submit(e, sizeof(*e));
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kt_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* Cheap early exit: most transitions (FIN_WAIT2, CLOSE_WAIT, TIME_WAIT, CLOSING,
	 * LISTEN, SYN_RECV) have nothing to record, and need no map lookup. */
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE &&
	    newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK)
		return 0;
	if (!kt_sock_wanted(sk))
		return 0;
	__u64 key = (__u64)sk;

	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the owner is current. Remembered even for an
		 * ignored tgid, so that its close is recognised and suppressed too. */
		__u64 id = bpf_get_current_pid_tgid();
		struct kt_sock_state st = {.start_ns = bpf_ktime_get_boot_ns(), .pid = (__u32)id, .tgid = id >> 32};
		bpf_map_update_elem(&kt_tcp_socks, &key, &st, BPF_ANY);
		return 0;
	}

	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_SENT) {
			struct kt_sock_state *st = bpf_map_lookup_elem(&kt_tcp_socks, &key);
			if (!st || kt_ignored_tgid(st->tgid))
				return 0; /* connect() started before load, or by the ignored tgid */
			return kt_emit_conn(sk, KT_EV_TCP_CONNECT, bpf_ktime_get_boot_ns(), st->pid, st->tgid);
		}
		if (oldstate == TCP_SYN_RECV) {
			/* Accepted (handshake done, softirq): owner unknown until accept()/close. One
			 * clock read for the record and the socket's start. */
			struct kt_sock_state fresh = {.start_ns = bpf_ktime_get_boot_ns()};
			bpf_map_update_elem(&kt_tcp_socks, &key, &fresh, BPF_ANY);
			return kt_emit_conn(sk, KT_EV_TCP_ACCEPT, fresh.start_ns, 0, 0);
		}
		return 0;
	}

	struct kt_sock_state *st = bpf_map_lookup_elem(&kt_tcp_socks, &key);
	if (newstate != TCP_CLOSE) {
		/* FIN_WAIT1 / LAST_ACK: close()/shutdown() by the owner run in its context: learn
		 * the pid of accepted sockets here. */
		if (st && st->tgid == 0 &&
		    ((oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
		     (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK))) {
			__u64 id = bpf_get_current_pid_tgid();
			st->pid = (__u32)id;
			st->tgid = id >> 32;
		}
		return 0;
	}

	if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE)
		return 0; /* a listener going away, or a socket never used */
	if (st && kt_ignored_tgid(st->tgid)) {
		bpf_map_delete_elem(&kt_tcp_socks, &key);
		return 0;
	}
	kt_emit_close(sk, st);
	if (st)
		bpf_map_delete_elem(&kt_tcp_socks, &key);
	return 0;
}

static __always_inline int kt_reset(const struct sock *sk, __u32 direction, __u32 slot)
{
	if (!sk)
		return 0; /* RST for a packet that matched no socket: nothing to attribute */
	__u8 state = sk->__sk_common.skc_state;
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

	const struct tcp_sock *tp = full ? bpf_skc_to_tcp_sock((void *)sk) : NULL;
	struct kt_tcp_reset *e = bpf_ringbuf_reserve(&kt_events, sizeof(*e), 0);
	if (!e) {
		kt_count_drop(slot);
		return 0;
	}
	kt_fill_header(&e->hdr, KT_EV_TCP_RESET, sizeof(*e), cgid, st ? st->pid : 0, st ? st->tgid : 0);
	kt_read_addrs((struct kt_tcp_addr_fields *)&e->family, sk, kt_sport(sk, tp));
	e->sock_cookie = kt_sock_cookie(sk);
	e->direction = direction;
	e->pad2 = 0;
	kt_submit(e, sizeof(*e));
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
