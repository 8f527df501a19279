#include "capture.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/types.h>  // for events.h
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <memory>

#include "../../bpf/include/events.h"
#include "common.h"
#include "libbpf_log.h"

// Every record starts with struct kt_header (the one kernel/user contract).
static constexpr size_t kRecordHeaderBytes = sizeof(struct kt_header);
static_assert(kRecordHeaderBytes == 32, "bpf/include/events.h: struct kt_header is 32 bytes");

namespace ktrail {
namespace {

// The poll timeout while no batch is open: records the programs submitted without a wakeup
// (BPF_RB_NO_WAKEUP) wait at most this long, and close() waits at most this long for the
// thread. Each timeout wakes an idle collector, so it is not short; it is capped by
// batchMaxMs, so such a record waits no longer than one in an open batch.
constexpr int kIdlePollMs = 50;
constexpr int kPollErrorBackoffMs = 10;
constexpr size_t kPooledBatches = 8;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t PositiveInt(const Napi::Object& o, const char* key, uint64_t fallback, uint64_t min, uint64_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("settings.") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<uint64_t>(d)) || d < static_cast<double>(min) ||
      d > static_cast<double>(max))
    throw Napi::RangeError::New(o.Env(), std::string("settings.") + key + " must be an integer in [" +
                                             std::to_string(min) + ", " + std::to_string(max) + "]");
  return static_cast<uint64_t>(d);
}

std::vector<std::string> StringArray(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("settings.") + key + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Napi::TypeError::New(o.Env(), std::string("settings.") + key + " must be an array of strings");
    out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

CaptureSettings ParseSettings(const Napi::Object& o) {
  CaptureSettings s;
  s.objects = StringArray(o, "objects");
  if (s.objects.empty()) throw Napi::TypeError::New(o.Env(), "settings.objects must name at least one .bpf.o");
  s.ring_buffer_bytes = PositiveInt(o, "ringBufferBytes", s.ring_buffer_bytes, 4096, 1ull << 31);
  if ((s.ring_buffer_bytes & (s.ring_buffer_bytes - 1)) != 0)
    throw Napi::RangeError::New(o.Env(), "settings.ringBufferBytes must be a power of two (pages)");
  if (!o.Get("programs").IsUndefined()) {
    s.has_program_allowlist = true;
    for (auto& p : StringArray(o, "programs")) s.programs.insert(p);
  }
  Napi::Value filter = o.Get("filterCgroups");
  if (!filter.IsUndefined()) {
    if (!filter.IsArray()) throw Napi::TypeError::New(o.Env(), "settings.filterCgroups must be an array of bigint");
    s.filter_cgroups = true;
    Napi::Array a = filter.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) s.filter_cgroup_ids.push_back(ToU64(a.Get(i), "settings.filterCgroups[]"));
  }
  s.batch_max_bytes = PositiveInt(o, "batchMaxBytes", s.batch_max_bytes, 4096, 64u << 20);
  s.batch_max_ms = PositiveInt(o, "batchMaxMs", s.batch_max_ms, 1, 60000);
  s.max_queued_batches = PositiveInt(o, "maxQueuedBatches", s.max_queued_batches, 1, 1u << 20);
  s.drain_interval_us = PositiveInt(o, "drainIntervalUs", s.drain_interval_us, 0, 100000);
  Napi::Value root = o.Get("cgroupRoot");
  if (!root.IsUndefined()) {
    if (!root.IsString()) throw Napi::TypeError::New(o.Env(), "settings.cgroupRoot must be a string");
    s.cgroup_root = root.As<Napi::String>().Utf8Value();
  }
  Napi::Value cfg = o.Get("cfg");
  if (!cfg.IsUndefined()) {
    if (!cfg.IsObject()) throw Napi::TypeError::New(o.Env(), "settings.cfg must be an object");
    Napi::Object c = cfg.As<Napi::Object>();
    Napi::Array names = c.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      uint64_t value = ToU64(c.Get(name), ("settings.cfg." + name).c_str());
      if (name.rfind("kt_cfg_", 0) != 0) name = "kt_cfg_" + name;
      s.cfg[name] = value;
    }
  }
  // An allowlist only filters if the programs are told to look at it.
  if (s.filter_cgroups && s.cfg.find("kt_cfg_filter_enabled") == s.cfg.end()) s.cfg["kt_cfg_filter_enabled"] = 1;
  return s;
}

}  // namespace

Napi::Function Capture::Define(Napi::Env env) {
  return DefineClass(env, "Capture",
                     {
                         InstanceMethod<&Capture::Counters>("counters"),
                         InstanceMethod<&Capture::ReadMap>("readMap"),
                         InstanceMethod<&Capture::TakeMapEntries>("takeMapEntries"),
                         InstanceMethod<&Capture::MapInfo>("mapInfo"),
                         InstanceMethod<&Capture::AllowCgroup>("allowCgroup"),
                         InstanceMethod<&Capture::DisallowCgroup>("disallowCgroup"),
                         InstanceMethod<&Capture::Close>("close"),
                     });
}

Capture::Capture(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Capture>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "new Capture(settings: object, onBatch: (buf, records) => void)");
  settings_ = ParseSettings(info[0].As<Napi::Object>());
  features_ = ProbeKernelFeatures();
  env_ = env;

  Open();
  // Enough blocks for the one being filled, the one JavaScript is reading and a few queued.
  pool_ = std::make_shared<BatchPool>(settings_.batch_max_bytes, kPooledBatches);

  if (rb_ != nullptr) {
    tsfn_ = BatchTsfn::New(env, info[1].As<Napi::Function>(), "ktrail-capture", settings_.max_queued_batches, 1,
                           this);
    tsfn_live_ = true;
    // Registered after the tsfn, so it runs before node tears the tsfn down (reverse order).
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
    cleanup_hook_live_ = true;
    thread_ = std::thread(&Capture::PollLoop, this);
  }
}

Capture::~Capture() { Shutdown(); }

void Capture::OnEnvCleanup(void* self) {
  auto* c = static_cast<Capture*>(self);
  c->cleanup_hook_live_ = false;  // node removes a hook once it has run
  c->Shutdown();
}

void Capture::PollLoop() {
  while (!stop_.load(std::memory_order_relaxed) && !tsfn_closing_) {
    int timeout = std::min(kIdlePollMs, static_cast<int>(settings_.batch_max_ms));
    if (batch_records_ > 0) {
      // Rounded up: rounding down would poll with timeout 0, again and again, through the
      // last millisecond before the batch is due - a busy loop on every batch.
      int64_t left_ns = batch_started_ns_ + static_cast<int64_t>(settings_.batch_max_ms) * 1000000 - NowNs();
      int64_t left_ms = left_ns <= 0 ? 0 : (left_ns + 999999) / 1000000;
      if (left_ms < timeout) timeout = static_cast<int>(left_ms);
    }
    int n = ring_buffer__poll(rb_, timeout);
    // Programs may submit with BPF_RB_NO_WAKEUP to batch wakeups (each is an irq_work, a
    // VM exit under virtualization): records then wait for us without an epoll event.
    if (n == 0) n = ring_buffer__consume(rb_);
    if (n < 0 && n != -EINTR && n != -ECANCELED) {
      poll_errors_++;
      last_poll_error_ = n;
      std::this_thread::sleep_for(std::chrono::milliseconds(kPollErrorBackoffMs));
    }
    if (batch_records_ > 0 &&
        NowNs() - batch_started_ns_ >= static_cast<int64_t>(settings_.batch_max_ms) * 1000000)
      Flush();
    // Records are flowing: let them pile up for a moment instead of waking per record. The
    // kernel only wakes a reader that had caught up, so draining every drainIntervalUs turns
    // one wakeup (irq_work + context switch) per record into one per interval.
    if (n > 0 && settings_.drain_interval_us > 0)
      std::this_thread::sleep_for(std::chrono::microseconds(settings_.drain_interval_us));
  }
  if (!tsfn_closing_) Flush();  // the last partial batch still reaches JS
}

int Capture::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Capture*>(ctx);
  if (self->stop_.load(std::memory_order_relaxed)) return -ECANCELED;
  // Each record keeps its own header; its size field frames it inside the batch. A record
  // shorter than the header can't be decoded, and in a batch it would break the framing of
  // every record after it: it is counted here and left out.
  uint32_t rsize = 0;
  if (size >= kRecordHeaderBytes) std::memcpy(&rsize, static_cast<uint8_t*>(data) + 4, sizeof(rsize));
  if (size < kRecordHeaderBytes || rsize < kRecordHeaderBytes || rsize > size) {
    self->malformed_++;
    return 0;
  }
  size_t padded = (static_cast<size_t>(rsize) + 7) & ~static_cast<size_t>(7);
  if (self->batch_records_ > 0 && self->batch_len_ + padded > self->batch_cap_) self->Flush();
  if (self->batch_ == nullptr) {
    self->batch_ = self->pool_->Take(padded, &self->batch_cap_);
    if (self->batch_ == nullptr) {
      self->lost_records_++;
      return 0;
    }
    self->batch_started_ns_ = NowNs();
  }
  uint8_t* dst = self->batch_ + self->batch_len_;
  std::memcpy(dst, data, rsize);
  if (padded > rsize) std::memset(dst + rsize, 0, padded - rsize);
  self->batch_len_ += padded;
  self->batch_records_++;
  if (self->batch_len_ >= self->settings_.batch_max_bytes) {
    self->Flush();
  } else if (++self->samples_since_clock_ >= 1024) {
    // Under a steady stream poll() never returns: check the batch age here too.
    self->samples_since_clock_ = 0;
    if (NowNs() - self->batch_started_ns_ >= static_cast<int64_t>(self->settings_.batch_max_ms) * 1000000)
      self->Flush();
  }
  return 0;
}

void Capture::Flush() {
  if (batch_records_ == 0) return;
  const uint32_t records = batch_records_;
  const size_t len = batch_len_;
  auto* b = new Batch{batch_, len, batch_cap_, records, pool_};
  batch_ = nullptr;
  batch_len_ = 0;
  batch_records_ = 0;
  // Never wait for JavaScript: a full queue costs this batch, counted record by record.
  // Once queued, `b` belongs to the JS thread (it may already be freed): use the copies.
  napi_status st = tsfn_.NonBlockingCall(b);
  if (st == napi_ok) {
    records_ += records;
    bytes_ += len;
    batches_++;
    return;
  }
  lost_records_ += records;
  lost_batches_++;
  if (st == napi_closing) tsfn_closing_ = true;
  pool_->Give(b->data, b->cap);
  delete b;
}

void CallJs(Napi::Env env, Napi::Function callback, Capture* /*context*/, Batch* batch) {
  if (batch == nullptr) return;
  std::unique_ptr<Batch> owned(batch);
  if (env == nullptr || callback == nullptr) {  // the environment is going away
    batch->pool->Give(batch->data, batch->cap);
    return;
  }
  // Nothing may escape: this runs from libuv, and an exception here would terminate the
  // process. A worker being terminated makes every JS call fail; its batch is then dropped.
  try {
    // Zero copy: the Buffer wraps the batch memory; its finalizer gives it back to the pool.
    auto release = std::make_unique<BatchRelease>(BatchRelease{batch->pool, batch->cap});
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(
        env, batch->data, batch->len,
        [](Napi::BasicEnv, uint8_t* data, BatchRelease* r) {
          r->pool->Give(data, r->cap);
          delete r;
        },
        release.get());
    release.release();
    batch->data = nullptr;
    // The batch is JavaScript's for this call only (docs/native.md): detached afterwards, a
    // Buffer kept past it reads as empty, and node releases the memory on its next turn
    // instead of at a garbage collection.
    struct Detach {
      Napi::Buffer<uint8_t>& buf;
      ~Detach() {
        napi_value ab = nullptr;
        if (napi_get_typedarray_info(buf.Env(), buf, nullptr, nullptr, nullptr, &ab, nullptr) == napi_ok)
          napi_detach_arraybuffer(buf.Env(), ab);
      }
    } detach{buf};
    callback.Call({buf, Napi::Number::New(env, batch->records)});
  } catch (const Napi::Error& e) {
    batch->pool->Give(batch->data, batch->cap);  // null when the Buffer took it
    try {
      e.ThrowAsJavaScriptException();  // surfaces as an uncaught exception, like any callback
    } catch (...) {
      // JavaScript can no longer run here (environment shutting down)
    }
  } catch (...) {
    batch->pool->Give(batch->data, batch->cap);
  }
}

Napi::Value Capture::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("records", Napi::Number::New(env, static_cast<double>(records_.load())));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes_.load())));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_.load())));
  o.Set("lostRecords", Napi::Number::New(env, static_cast<double>(lost_records_.load())));
  o.Set("lostBatches", Napi::Number::New(env, static_cast<double>(lost_batches_.load())));
  o.Set("malformedRecords", Napi::Number::New(env, static_cast<double>(malformed_.load())));
  o.Set("pollErrors", Napi::Number::New(env, static_cast<double>(poll_errors_.load())));
  o.Set("closed", Napi::Boolean::New(env, closed_));

  // Kernel drops: kt_drops is a per-CPU array indexed by program slot; sum over CPUs.
  // After close, the totals read just before the map was closed.
  std::vector<uint64_t> drop_totals = closed_ ? final_drops_ : ReadDrops();
  Napi::Array drops = Napi::Array::New(env);
  for (uint32_t slot = 0; slot < drop_totals.size(); slot++)
    drops.Set(slot, Napi::Number::New(env, static_cast<double>(drop_totals[slot])));
  o.Set("kernelDrops", drops);

  Napi::Array progs = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& ps : programs_) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", ps.name);
    p.Set("object", ps.object);
    p.Set("section", ps.section);
    p.Set("type", ps.type);
    p.Set("loaded", Napi::Boolean::New(env, ps.prog != nullptr && !closed_));
    p.Set("attached", Napi::Boolean::New(env, ps.attached && !closed_));
    if (!ps.error.empty()) p.Set("error", ps.error);
    if (!ps.failed.step.empty()) {
      p.Set("failedStep", ps.failed.step);
      p.Set("errno", Napi::Number::New(env, ps.failed.err));
    }
    if (ps.prog != nullptr && !closed_) {
      // The kernel's own cost accounting (needs kernel.bpf_stats_enabled=1), as bpftool shows it.
      struct bpf_prog_info pi {};
      uint32_t len = sizeof(pi);
      if (bpf_obj_get_info_by_fd(bpf_program__fd(ps.prog), &pi, &len) == 0) {
        p.Set("id", Napi::Number::New(env, pi.id));
        p.Set("runTimeNs", Napi::Number::New(env, static_cast<double>(pi.run_time_ns)));
        p.Set("runCount", Napi::Number::New(env, static_cast<double>(pi.run_cnt)));
      }
    }
    progs.Set(i++, p);
  }
  o.Set("programs", progs);

  Napi::Array objs = Napi::Array::New(env);
  i = 0;
  for (const auto& os : objects_) {
    Napi::Object ob = Napi::Object::New(env);
    ob.Set("path", os.path);
    ob.Set("loaded", Napi::Boolean::New(env, os.loaded && !closed_));
    if (!os.error.empty()) ob.Set("error", os.error);
    if (!os.open_path.empty()) {
      ob.Set("compatPath", os.open_path);
      ob.Set("compatReason", os.fallback);
    }
    if (!os.failed.step.empty()) {
      ob.Set("failedStep", os.failed.step);
      ob.Set("errno", Napi::Number::New(env, os.failed.err));
    }
    objs.Set(i++, ob);
  }
  o.Set("objects", objs);

  Napi::Array unused = Napi::Array::New(env);
  i = 0;
  for (const auto& name : unused_cfg_) unused.Set(i++, name);
  o.Set("unusedCfg", unused);

  Napi::Object f = Napi::Object::New(env);
  f.Set("kernelRelease", features_.kernel_release);
  f.Set("btf", features_.btf);
  f.Set("ringbuf", features_.ringbuf);
  f.Set("tracepoint", features_.tracepoint);
  f.Set("rawTracepoint", features_.raw_tracepoint);
  f.Set("cgroupSkb", features_.cgroup_skb);
  f.Set("tracefs", features_.tracefs);
  f.Set("bpfStats", features_.bpf_stats);
  o.Set("features", f);
  o.Set("ringBufferBytes", Napi::Number::New(env, static_cast<double>(settings_.ring_buffer_bytes)));
  return o;
}

std::vector<uint64_t> Capture::ReadDrops() const {
  std::vector<uint64_t> totals;
  int fd = SharedMapFd(kDropsMap);
  if (fd < 0) return totals;
  struct bpf_map_info mi {};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0 || mi.value_size != 8) return totals;
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> values(ncpu);
  for (uint32_t slot = 0; slot < mi.max_entries; slot++) {
    uint64_t total = 0;
    if (bpf_map_lookup_elem(fd, &slot, values.data()) == 0)
      for (uint64_t v : values) total += v;
    totals.push_back(total);
  }
  return totals;
}

Napi::Value Capture::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  return info.Env().Undefined();
}

void Capture::Shutdown() {
  if (closed_) return;
  closed_ = true;
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (cleanup_hook_live_) {
    napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    cleanup_hook_live_ = false;
  }
  if (tsfn_live_) {
    // Batches already queued are still delivered; then the tsfn stops holding the loop open.
    if (!tsfn_closing_) tsfn_.Release();
    tsfn_live_ = false;
  }
  if (batch_ != nullptr) {
    pool_->Give(batch_, batch_cap_);
    batch_ = nullptr;
  }
  if (rb_ != nullptr) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
  for (auto& ps : programs_) {
    if (ps.link != nullptr) bpf_link__destroy(ps.link);
    ps.link = nullptr;
    ps.prog = nullptr;
  }
  for (auto& os : objects_) {
    if (os.obj != nullptr) bpf_object__close(os.obj);
    os.obj = nullptr;
  }
  final_drops_ = ReadDrops();
  for (auto& kv : shared_fds_) close(kv.second);
  shared_fds_.clear();
  if (cgroup_root_fd_ >= 0) close(cgroup_root_fd_);
  cgroup_root_fd_ = -1;
}

}  // namespace ktrail
