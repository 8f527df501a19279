#include "features.h"

#include <bpf/libbpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>

namespace ktrail {

KernelFeatures ProbeKernelFeatures() {
  KernelFeatures f;
  struct utsname u {};
  if (uname(&u) == 0) f.kernel_release = u.release;
  f.btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  f.ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) == 1;
  f.tracepoint = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_TRACEPOINT, nullptr) == 1;
  f.raw_tracepoint = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_RAW_TRACEPOINT, nullptr) == 1;
  f.cgroup_skb = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SKB, nullptr) == 1;
  f.tracefs = access("/sys/kernel/tracing/events", R_OK) == 0 ||
              access("/sys/kernel/debug/tracing/events", R_OK) == 0;
  std::ifstream stats("/proc/sys/kernel/bpf_stats_enabled");
  int enabled = 0;
  if (stats >> enabled) f.bpf_stats = enabled != 0;
  return f;
}

}  // namespace ktrail
