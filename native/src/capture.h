// Capture: the one object that owns the BPF objects of a collector, their links, the shared
// ring buffer, and the thread that drains it into batches for JavaScript.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "batch_pool.h"
#include "features.h"

struct bpf_map_info;
struct bpf_object;
struct bpf_program;
struct bpf_link;
struct ring_buffer;

namespace ktrail {

// Settings converted to plain C++ before any work starts (the sharp baton pattern).
struct CaptureSettings {
  std::vector<std::string> objects;
  uint64_t ring_buffer_bytes = 8u << 20;
  bool has_program_allowlist = false;
  std::set<std::string> programs;
  bool filter_cgroups = false;
  std::vector<uint64_t> filter_cgroup_ids;
  uint64_t batch_max_bytes = 256u << 10;
  uint64_t batch_max_ms = 50;
  uint64_t max_queued_batches = 64;
  uint64_t drain_interval_us = 500;  // 0: wake on every kernel notification
  std::string cgroup_root = "/sys/fs/cgroup/unified";
  std::map<std::string, uint64_t> cfg;  // kt_cfg_* name -> value (two's complement for negatives)
};

// The step at which an object or program stopped and its errno, so the caller can explain it
// (EPERM at "load" of a tracing program is a missing CAP_PERFMON). Steps: open, maps,
// prepare, load, module_btf (listing kernel module BTFs for a CO-RE relocation), attach,
// ring_buffer.
struct Failure {
  std::string step;
  int err = 0;  // positive errno; 0 when the step failed without one
};

struct ProgramState {
  std::string name;
  std::string object;
  std::string section;
  std::string type;  // libbpf's name of the program type: tracing, cgroup_skb, ...
  bool attached = false;
  std::string error;
  Failure failed;
  bpf_program* prog = nullptr;
  bpf_link* link = nullptr;
};

struct ObjectState {
  std::string path;
  // The file opened: path, or its compat build (<dir>/compat/<file>) when the kernel refused
  // path as a whole; `fallback` then says why.
  std::string open_path;
  std::string fallback;
  bpf_object* obj = nullptr;
  bool loaded = false;
  std::string error;
  Failure failed;
  std::set<std::string> rejected;  // programs the verifier refused; the object loads without them
};

// One batch handed to JavaScript: `records` records laid end to end, each padded to 8 bytes,
// in `cap` bytes of memory from `pool`.
struct Batch {
  uint8_t* data;
  size_t len;
  size_t cap;
  uint32_t records;
  std::shared_ptr<BatchPool> pool;
};

class Capture;
void CallJs(Napi::Env env, Napi::Function callback, Capture* context, Batch* batch);
using BatchTsfn = Napi::TypedThreadSafeFunction<Capture, Batch, CallJs>;

class Capture : public Napi::ObjectWrap<Capture> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Capture(const Napi::CallbackInfo& info);
  ~Capture() override;

 private:
  // JavaScript methods.
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value ReadMap(const Napi::CallbackInfo& info);
  Napi::Value TakeMapEntries(const Napi::CallbackInfo& info);
  Napi::Value MapInfo(const Napi::CallbackInfo& info);
  Napi::Value AllowCgroup(const Napi::CallbackInfo& info);
  Napi::Value DisallowCgroup(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // Open sequence.
  void Open();
  bool OpenObject(ObjectState& os);
  void CreateSharedMaps();
  void PrepareObject(ObjectState& os);
  void LoadObject(ObjectState& os);
  bool UseCompatBuild(ObjectState& os, const std::string& why);
  void AttachPrograms(ObjectState& os);
  int SharedMapFd(const std::string& name) const;
  // The fd of a shared map or of a loaded object's map, and its kernel info; -1 if none.
  int FindMap(const std::string& name, bpf_map_info* info) const;

  // Polling thread.
  void PollLoop();
  static int OnSample(void* ctx, void* data, size_t size);
  void Flush();

  void Shutdown();
  std::vector<uint64_t> ReadDrops() const;

  CaptureSettings settings_;
  KernelFeatures features_;
  std::vector<ObjectState> objects_;
  std::vector<ProgramState> programs_;
  std::map<std::string, int> shared_fds_;  // kt_events, kt_drops, kt_cgroup_allow
  std::set<std::string> unused_cfg_;
  std::vector<uint64_t> final_drops_;  // kt_drops totals at close
  int cgroup_root_fd_ = -1;
  bool lookup_and_delete_unsupported_ = false;  // kernel < 5.14: takeMapEntries looks up, then deletes

  ring_buffer* rb_ = nullptr;
  BatchTsfn tsfn_;
  bool tsfn_live_ = false;
  napi_env env_ = nullptr;
  bool cleanup_hook_live_ = false;
  static void OnEnvCleanup(void* self);
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool closed_ = false;

  // Batch memory, shared with the finalizers of Buffers JavaScript still holds.
  std::shared_ptr<BatchPool> pool_;
  // Batch under construction: touched only by the polling thread.
  uint8_t* batch_ = nullptr;
  size_t batch_len_ = 0;
  size_t batch_cap_ = 0;
  uint32_t batch_records_ = 0;
  int64_t batch_started_ns_ = 0;
  uint32_t samples_since_clock_ = 0;
  bool tsfn_closing_ = false;

  // Counters, written by the polling thread, read by counters().
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> lost_records_{0};
  std::atomic<uint64_t> lost_batches_{0};
  std::atomic<uint64_t> malformed_{0};
  std::atomic<uint64_t> poll_errors_{0};
  std::atomic<int> last_poll_error_{0};
};

}  // namespace ktrail
