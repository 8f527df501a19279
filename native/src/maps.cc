// Capture's map operations: readMap (every entry), takeMapEntries (read and delete chosen
// keys), mapInfo, and the run-time cgroup allowlist. docs/native.md has the contract.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "capture.h"
#include "common.h"

namespace ktrail {
namespace {

#ifndef ENOTSUPP
#define ENOTSUPP 524  // kernel-internal "operation not supported", as syscalls return it
#endif

// How one map's values are laid out and handed to JS ('sum' adds the CPUs' u64 lanes).
struct MapView {
  std::string name;
  int fd = -1;
  bpf_map_info info{};
  bool percpu = false;
  bool sum = true;
  int ncpu = 1;
  size_t stride = 0;       // bytes per CPU slot
  size_t value_bytes = 0;  // bytes the kernel writes for one lookup

  Napi::Buffer<uint8_t> Value(Napi::Env env, const uint8_t* value) const {
    if (!(percpu && sum)) return Napi::Buffer<uint8_t>::Copy(env, value, value_bytes);
    const uint32_t value_size = info.value_size;
    auto v = Napi::Buffer<uint8_t>::New(env, value_size);
    for (size_t lane = 0; lane < value_size / 8; lane++) {
      uint64_t total = 0;
      for (int c = 0; c < ncpu; c++) {
        uint64_t x;
        std::memcpy(&x, value + c * stride + lane * 8, 8);
        total += x;
      }
      std::memcpy(v.Data() + lane * 8, &total, 8);
    }
    return v;
  }

  // Appends [key, value] to `out` at index `n`, then n + 1.
  void Emit(Napi::Env env, Napi::Array& out, uint32_t& n, const uint8_t* key, const uint8_t* value) const {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, key, info.key_size));
    pair.Set(1u, Value(env, value));
    out.Set(n++, pair);
  }
};

bool ParseMode(const Napi::CallbackInfo& info, size_t index, const char* usage) {
  if (info.Length() <= index || info[index].IsUndefined()) return true;
  std::string mode = info[index].ToString().Utf8Value();
  if (mode != "sum" && mode != "raw") throw Napi::TypeError::New(info.Env(), usage);
  return mode == "sum";
}

// A key as the map's key_size bytes: a Buffer of exactly that size, or a number/bigint for u64 keys.
void KeyBytes(const Napi::Value& v, uint32_t key_size, uint8_t* out) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<uint8_t>>();
    if (b.Length() != key_size)
      throw Napi::RangeError::New(v.Env(), "key is " + std::to_string(b.Length()) + " bytes, the map's keys " +
                                               std::to_string(key_size));
    std::memcpy(out, b.Data(), key_size);
    return;
  }
  if (key_size != 8) throw Napi::TypeError::New(v.Env(), "keys of this map must be Buffers");
  uint64_t k = ToU64(v, "key");
  std::memcpy(out, &k, 8);
}

// Throws unless `fd` is a loaded map with keys; per-CPU 'sum' needs u64 lanes.
MapView MakeView(Napi::Env env, const std::string& name, int fd, const bpf_map_info& info, bool sum) {
  MapView v;
  v.name = name;
  v.sum = sum;
  v.fd = fd;
  v.info = info;
  if (fd < 0) throw Napi::Error::New(env, "no loaded map named " + name);
  if (info.key_size == 0) throw Napi::Error::New(env, "map " + name + " has no keys (ring buffer?)");
  v.percpu = IsPerCpu(info.type);
  v.ncpu = v.percpu ? libbpf_num_possible_cpus() : 1;
  v.stride = v.percpu ? ((info.value_size + 7) & ~7u) : info.value_size;
  if (v.percpu && sum && info.value_size % 8 != 0)
    throw Napi::Error::New(env, "map " + name + ": per-CPU values are not u64 lanes; use mode 'raw'");
  v.value_bytes = v.stride * v.ncpu;
  return v;
}

}  // namespace

int Capture::SharedMapFd(const std::string& name) const {
  auto it = shared_fds_.find(name);
  return it == shared_fds_.end() ? -1 : it->second;
}

int Capture::FindMap(const std::string& name, bpf_map_info* info) const {
  int fd = SharedMapFd(name);
  if (fd < 0) {
    for (const auto& os : objects_) {
      if (!os.loaded) continue;
      bpf_map* m = bpf_object__find_map_by_name(os.obj, name.c_str());
      if (m != nullptr) {
        fd = bpf_map__fd(m);
        break;
      }
    }
  }
  if (fd < 0) return -1;
  std::memset(info, 0, sizeof(*info));
  uint32_t len = sizeof(*info);
  if (bpf_obj_get_info_by_fd(fd, info, &len) != 0) return -1;
  return fd;
}

Napi::Value Capture::ReadMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "readMap(name: string, mode?: 'sum' | 'raw')";
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, usage);
  bool sum = ParseMode(info, 1, "readMap mode must be 'sum' or 'raw'");
  if (closed_) throw Napi::Error::New(env, "capture is closed");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bpf_map_info mi{};
  MapView view = MakeView(env, name, FindMap(name, &mi), mi, sum);
  const uint32_t key_size = view.info.key_size;
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;

  // Batched lookup: a few syscalls for thousands of cgroups, and no restart when an entry is
  // deleted mid-walk. Kernels or map types without it fall back to get_next_key below.
  uint32_t chunk = 256;
  std::vector<uint8_t> keys, values;
  std::vector<uint8_t> token_in(8 + key_size), token_out(8 + key_size);  // u32 for hash maps, a key for arrays
  bool first = true;
  bool batched = true;
  for (;;) {
    keys.resize(static_cast<size_t>(chunk) * key_size);
    values.resize(static_cast<size_t>(chunk) * view.value_bytes);
    uint32_t count = chunk;
    int err = bpf_map_lookup_batch(view.fd, first ? nullptr : token_in.data(), token_out.data(), keys.data(),
                                   values.data(), &count, nullptr);
    int e = err != 0 ? errno : 0;
    if (e == ENOSPC && chunk < (1u << 20)) {  // one hash bucket holds more than `chunk` entries
      chunk *= 2;
      continue;
    }
    if (e != 0 && e != ENOENT) {
      if (first) {
        batched = false;
        break;
      }
      throw Napi::Error::New(env, "reading map " + view.name + ": " + ErrnoText(e));
    }
    for (uint32_t i = 0; i < count; i++)
      view.Emit(env, out, n, keys.data() + i * key_size, values.data() + i * view.value_bytes);
    if (e == ENOENT) break;  // that was the last chunk
    token_in.swap(token_out);
    first = false;
  }
  if (batched) return out;

  std::vector<uint8_t> key(key_size), next(key_size), value(view.value_bytes);
  void* prev = nullptr;
  while (bpf_map_get_next_key(view.fd, prev, next.data()) == 0) {
    if (bpf_map_lookup_elem(view.fd, next.data(), value.data()) == 0)
      view.Emit(env, out, n, next.data(), value.data());
    key = next;
    prev = key.data();
  }
  return out;
}

// Reads and deletes each key in one step (BPF_MAP_LOOKUP_AND_DELETE_ELEM, hash maps since
// Linux 5.14), so nothing written before the delete is lost to a read that came first.
// Older kernels: lookup, then delete. Returns the entries that existed.
Napi::Value Capture::TakeMapEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "takeMapEntries(name: string, keys: Array<bigint | Buffer>, mode?: 'sum' | 'raw')";
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) throw Napi::TypeError::New(env, usage);
  bool sum = ParseMode(info, 2, "takeMapEntries mode must be 'sum' or 'raw'");
  if (closed_) throw Napi::Error::New(env, "capture is closed");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bpf_map_info mi{};
  MapView view = MakeView(env, name, FindMap(name, &mi), mi, sum);
  Napi::Array keys = info[1].As<Napi::Array>();
  // Every key converted before the first delete: a bad key deletes nothing.
  std::vector<uint8_t> key_bytes(static_cast<size_t>(keys.Length()) * view.info.key_size);
  for (uint32_t i = 0; i < keys.Length(); i++)
    KeyBytes(keys.Get(i), view.info.key_size, key_bytes.data() + static_cast<size_t>(i) * view.info.key_size);

  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  std::vector<uint8_t> value(view.value_bytes);
  for (uint32_t i = 0; i < keys.Length(); i++) {
    const uint8_t* key = key_bytes.data() + static_cast<size_t>(i) * view.info.key_size;
    if (!lookup_and_delete_unsupported_) {
      if (bpf_map_lookup_and_delete_elem(view.fd, key, value.data()) == 0) {
        view.Emit(env, out, n, key, value.data());
        continue;
      }
      int e = errno;
      if (e == ENOENT) continue;
      if (e != EINVAL && e != ENOTSUPP && e != EOPNOTSUPP)
        throw Napi::Error::New(env, "taking from map " + view.name + ": " + ErrnoText(e));
      lookup_and_delete_unsupported_ = true;
    }
    if (bpf_map_lookup_elem(view.fd, key, value.data()) != 0) {
      if (errno == ENOENT) continue;
      throw Napi::Error::New(env, "reading map " + view.name + ": " + ErrnoText(errno));
    }
    if (bpf_map_delete_elem(view.fd, key) != 0 && errno != ENOENT)
      throw Napi::Error::New(env, "deleting from map " + view.name + ": " + ErrnoText(errno));
    view.Emit(env, out, n, key, value.data());
  }
  return out;
}

Napi::Value Capture::MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "mapInfo(name: string)");
  if (closed_) throw Napi::Error::New(env, "capture is closed");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bpf_map_info mi{};
  if (FindMap(name, &mi) < 0) throw Napi::Error::New(env, "no loaded map named " + name);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", name);
  o.Set("id", Napi::Number::New(env, mi.id));
  o.Set("type", Napi::Number::New(env, mi.type));
  const char* type_name = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(mi.type));
  o.Set("typeName", type_name == nullptr ? "unknown" : type_name);
  o.Set("keySize", Napi::Number::New(env, mi.key_size));
  o.Set("valueSize", Napi::Number::New(env, mi.value_size));
  o.Set("maxEntries", Napi::Number::New(env, mi.max_entries));
  o.Set("flags", Napi::Number::New(env, mi.map_flags));
  return o;
}

Napi::Value Capture::AllowCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "allowCgroup(id: bigint)");
  uint64_t id = ToU64(info[0], "cgroup id");
  if (closed_) throw Napi::Error::New(env, "capture is closed");
  int fd = SharedMapFd(kAllowMap);
  if (fd < 0) throw Napi::Error::New(env, "no object declares kt_cgroup_allow");
  uint8_t one[64] = {1};
  if (bpf_map_update_elem(fd, &id, one, BPF_ANY) != 0)
    throw Napi::Error::New(env, "kt_cgroup_allow update: " + ErrnoText(errno));
  return env.Undefined();
}

Napi::Value Capture::DisallowCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "disallowCgroup(id: bigint)");
  uint64_t id = ToU64(info[0], "cgroup id");
  if (closed_) throw Napi::Error::New(env, "capture is closed");
  int fd = SharedMapFd(kAllowMap);
  if (fd < 0) throw Napi::Error::New(env, "no object declares kt_cgroup_allow");
  if (bpf_map_delete_elem(fd, &id) != 0 && errno != ENOENT)
    throw Napi::Error::New(env, "kt_cgroup_allow delete: " + ErrnoText(errno));
  return env.Undefined();
}

}  // namespace ktrail
