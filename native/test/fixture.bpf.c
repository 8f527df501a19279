// SPDX-License-Identifier: GPL-2.0
// Test fixture for the native addon: follows the shared object conventions of docs/events.md
// (kt_events ring buffer, kt_drops per-CPU counters, kt_cgroup_allow, kt_cfg_* settings,
// an aggregate map keyed by cgroup id) with the smallest possible programs. Its record types
// (1000+) are test-only and never appear in bpf/include/events.h.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define KT_FIXTURE_GETPID 1000
#define KT_FIXTURE_EXEC 1001
#define KT_FIXTURE_BURST 1002
#define KT_FIXTURE_RING 1003

enum { SLOT_GETPID = 0, SLOT_EXEC = 1, SLOT_BURST = 2, SLOT_RING = 3, SLOT_COUNT = 8 };

// Same layout as the common header of events.h, plus one u64 that carries a setting back.
struct fixture_record {
  __u16 type;
  __u16 flags;
  __u32 size;
  __u64 ts_ns;
  __u64 cgroup_id;
  __u32 pid;
  __u32 tgid;
  __u64 tag;
};

// fixture_ring's long record: the header, then eight words derived from the sequence number.
struct fixture_ring_record {
  struct fixture_record head;
  __u64 words[8];
};

struct fixture_agg {
  __u64 calls;
  __u64 last_tgid;
};

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} kt_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SLOT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} kt_drops SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u64);
  __type(value, __u8);
} kt_cgroup_allow SEC(".maps");

// Per-CPU aggregate keyed by cgroup id, like kt_cpu/kt_net/kt_block.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 1024);
  __type(key, __u64);
  __type(value, struct fixture_agg);
} kt_fixture_agg SEC(".maps");

const volatile __u32 kt_cfg_filter_enabled = 0; // same name as bpf/include/common.bpf.h
const volatile __u32 kt_cfg_target_tgid = 0; // 0 = every process
const volatile __u64 kt_cfg_tag = 0;
// Not 0: every record claims this size (less than the header: a malformed record).
const volatile __u32 kt_cfg_claimed_size = 0;
// 0: wake the reader on every record (libbpf's default). N > 0: wake it only once N bytes are
// waiting; the reader also drains on its poll timeout. Every wakeup is an irq_work (a self-IPI,
// a VM exit under virtualization), so at high rates batching wakeups is what makes them cheap.
const volatile __u32 kt_cfg_wakeup_bytes = 0;
// fixture_ring: every Nth record (seq % N == N - 1) is reserved, then discarded (0 = none).
const volatile __u32 kt_cfg_discard_every = 0;

// fixture_ring's next sequence number.
__u64 kt_ring_seq = 0;

static __always_inline int allowed(__u64 cgid) {
  if (!kt_cfg_filter_enabled) return 1;
  return bpf_map_lookup_elem(&kt_cgroup_allow, &cgid) != 0;
}

static __always_inline void count_drop(__u32 slot) {
  __u64 *n = bpf_map_lookup_elem(&kt_drops, &slot);
  if (n) *n += 1;
}

static __always_inline __u64 submit_flags(void) {
  if (!kt_cfg_wakeup_bytes) return 0;
  return bpf_ringbuf_query(&kt_events, BPF_RB_AVAIL_DATA) >= kt_cfg_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                                : BPF_RB_NO_WAKEUP;
}

static __always_inline int emit(__u16 type, __u32 slot) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tgid = id >> 32;
  if (kt_cfg_target_tgid && tgid != kt_cfg_target_tgid) return 0;
  __u64 cgid = bpf_get_current_cgroup_id();
  if (!allowed(cgid)) return 0;

  struct fixture_record *r = bpf_ringbuf_reserve(&kt_events, sizeof(*r), 0);
  if (!r) {
    count_drop(slot);
    return 0;
  }
  r->type = type;
  r->flags = 0;
  r->size = kt_cfg_claimed_size ? kt_cfg_claimed_size : sizeof(*r);
  r->ts_ns = bpf_ktime_get_boot_ns();
  r->cgroup_id = cgid;
  r->pid = (__u32)id;
  r->tgid = tgid;
  r->tag = kt_cfg_tag;
  bpf_ringbuf_submit(r, submit_flags());
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int fixture_getpid(void *ctx) {
  __u64 cgid = bpf_get_current_cgroup_id();
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;
  if (!kt_cfg_target_tgid || tgid == kt_cfg_target_tgid) {
    struct fixture_agg zero = {}, *agg = bpf_map_lookup_elem(&kt_fixture_agg, &cgid);
    if (!agg) {
      bpf_map_update_elem(&kt_fixture_agg, &cgid, &zero, BPF_NOEXIST);
      agg = bpf_map_lookup_elem(&kt_fixture_agg, &cgid);
    }
    if (agg) {
      agg->calls += 1;
      agg->last_tgid = tgid;
    }
  }
  return emit(KT_FIXTURE_GETPID, SLOT_GETPID);
}

SEC("tracepoint/sched/sched_process_exec")
int fixture_exec(void *ctx) {
  return emit(KT_FIXTURE_EXEC, SLOT_EXEC);
}

// Synthetic high-rate source for the benchmark: never attached; a generator runs it with
// BPF_PROG_TEST_RUN (repeat = N), so records are produced in the kernel at rates no syscall
// loop reaches on a shared 2-core VM. It measures the ring buffer -> reader path only.
SEC("tc")
int fixture_burst(struct __sk_buff *skb) {
  struct fixture_record *r = bpf_ringbuf_reserve(&kt_events, sizeof(*r), 0);
  if (!r) {
    count_drop(SLOT_BURST);
    return 0;
  }
  r->type = KT_FIXTURE_BURST;
  r->flags = 0;
  r->size = sizeof(*r);
  r->ts_ns = bpf_ktime_get_boot_ns();
  r->cgroup_id = 0;
  r->pid = 0;
  r->tgid = 0;
  r->tag = kt_cfg_tag;
  bpf_ringbuf_submit(r, submit_flags());
  return 0;
}

// The ring reader's test source, run like fixture_burst: numbered records (seq in cgroup_id),
// every third one long (104 bytes, its words seq * 8 + i) so that records of two sizes wrap
// around the end of a small ring at changing offsets; some reserved and discarded, which
// leaves a DISCARD record in the ring for the reader to skip.
static __always_inline void fill(struct fixture_record *h, __u16 type, __u32 size, __u64 seq) {
  h->type = type;
  h->flags = 0;
  h->size = size;
  h->ts_ns = 0;
  h->cgroup_id = seq;
  h->pid = 0;
  h->tgid = 0;
  h->tag = kt_cfg_tag;
}

SEC("tc")
int fixture_ring(struct __sk_buff *skb) {
  __u64 seq = __sync_fetch_and_add(&kt_ring_seq, 1);
  int discard = kt_cfg_discard_every && seq % kt_cfg_discard_every == kt_cfg_discard_every - 1;
  if (seq % 3 == 0) {
    struct fixture_ring_record *r = bpf_ringbuf_reserve(&kt_events, sizeof(*r), 0);
    if (!r) {
      count_drop(SLOT_RING);
      return 0;
    }
    fill(&r->head, KT_FIXTURE_RING, sizeof(*r), seq);
    for (int i = 0; i < 8; i++) r->words[i] = seq * 8 + i;
    if (discard)
      bpf_ringbuf_discard(r, 0);
    else
      bpf_ringbuf_submit(r, 0);
    return 0;
  }
  struct fixture_record *r = bpf_ringbuf_reserve(&kt_events, sizeof(*r), 0);
  if (!r) {
    count_drop(SLOT_RING);
    return 0;
  }
  fill(r, KT_FIXTURE_RING, sizeof(*r), seq);
  if (discard)
    bpf_ringbuf_discard(r, 0);
  else
    bpf_ringbuf_submit(r, 0);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
