// ktrail native addon: loads CO-RE BPF objects with libbpf and streams their ring buffer to
// JavaScript in batches. See docs/native.md.
#include <bpf/libbpf.h>
#include <napi.h>

#include "capture.h"
#include "features.h"
#include "libbpf_log.h"

namespace {

Napi::Value ProbeFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ktrail::KernelFeatures f = ktrail::ProbeKernelFeatures();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernelRelease", f.kernel_release);
  o.Set("btf", f.btf);
  o.Set("ringbuf", f.ringbuf);
  o.Set("tracepoint", f.tracepoint);
  o.Set("rawTracepoint", f.raw_tracepoint);
  o.Set("cgroupSkb", f.cgroup_skb);
  o.Set("tracefs", f.tracefs);
  o.Set("bpfStats", f.bpf_stats);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ktrail::InstallLibbpfLogger();
  exports.Set("Capture", ktrail::Capture::Define(env));
  exports.Set("probeFeatures", Napi::Function::New(env, ProbeFeatures, "probeFeatures"));
  exports.Set("libbpfVersion", Napi::String::New(env, libbpf_version_string()));
  return exports;
}

}  // namespace

NODE_API_MODULE(ktrail_native, Init)
