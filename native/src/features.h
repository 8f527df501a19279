// What this kernel can do, probed once at open so a missing feature is named, not guessed
// from a load failure.
#pragma once
#include <string>

namespace ktrail {

struct KernelFeatures {
  std::string kernel_release;
  bool btf = false;             // /sys/kernel/btf/vmlinux: CO-RE relocations resolve
  bool ringbuf = false;         // BPF_MAP_TYPE_RINGBUF
  bool tracepoint = false;      // BPF_PROG_TYPE_TRACEPOINT
  bool raw_tracepoint = false;  // BPF_PROG_TYPE_RAW_TRACEPOINT
  bool cgroup_skb = false;      // BPF_PROG_TYPE_CGROUP_SKB
  bool tracefs = false;         // tracepoint ids readable (tracefs or debugfs mounted)
  bool bpf_stats = false;       // kernel.bpf_stats_enabled = 1 (run_time_ns / run_cnt counted)
};

KernelFeatures ProbeKernelFeatures();

}  // namespace ktrail
