// SPDX-License-Identifier: GPL-2.0
// A deliberately broken object: `fixture_bad_helper` calls a helper that tracepoint programs
// may not use, so the verifier rejects it; `fixture_still_fine` in the same object must still
// load and attach (the addon retries the object without the rejected program).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} kt_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 8);
  __type(key, __u32);
  __type(value, __u64);
} kt_drops SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} kt_fine_calls SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int fixture_bad_helper(void *ctx) {
  // bpf_sk_lookup_tcp belongs to networking program types: the verifier refuses it here.
  struct bpf_sock_tuple tuple = {};
  struct bpf_sock *sk = bpf_sk_lookup_tcp(ctx, &tuple, sizeof(tuple.ipv4), -1, 0);
  if (sk) bpf_sk_release(sk);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int fixture_still_fine(void *ctx) {
  __u32 k = 0;
  __u64 *n = bpf_map_lookup_elem(&kt_fine_calls, &k);
  if (n) __sync_fetch_and_add(n, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
