// ktrail native addon: loads CO-RE BPF objects with libbpf and streams their ring buffer to
// JavaScript in batches. See docs/native.md.
#include <napi.h>

#include "capture.h"
#include "libbpf_log.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ktrail::InstallLibbpfLogger();
  exports.Set("Capture", ktrail::Capture::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(ktrail_native, Init)
