// The open sequence of a Capture: open every object, create the shared maps, write the
// kt_cfg_* settings, load (dropping programs the verifier refuses) and attach. Each failure
// is recorded with its step and errno, for the caller to explain (docs/native.md).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "capture.h"
#include "common.h"
#include "libbpf_log.h"

namespace ktrail {
namespace {

const char* const kSharedMaps[] = {kEventsMap, kDropsMap, kAllowMap};
constexpr const char* kWakeupBytesCfg = "kt_cfg_wakeup_bytes";

// Writes `value` into a `size`-byte little-endian integer; false if it does not fit.
bool WriteInt(uint8_t* dst, uint32_t size, uint64_t value) {
  if (size != 1 && size != 2 && size != 4 && size != 8) return false;
  if (size < 8) {
    uint64_t high = value >> (size * 8);
    uint64_t sign_ext = (~0ull) >> (size * 8);  // negative values sign-extended from `size` bytes
    bool negative_fits = high == sign_ext && ((value >> (size * 8 - 1)) & 1);
    if (high != 0 && !negative_fits) return false;
  }
  for (uint32_t i = 0; i < size; i++) dst[i] = static_cast<uint8_t>(value >> (8 * i));
  return true;
}

// The verifier's message about one program, from what libbpf printed during a failed load.
std::string ProgramLoadLog(const std::string& log, const std::string& prog) {
  const std::string begin = "prog '" + prog + "': -- BEGIN PROG LOAD LOG --\n";
  size_t b = log.find(begin);
  if (b != std::string::npos) {
    size_t start = b + begin.size();
    size_t end = log.find("-- END PROG LOAD LOG --", start);
    return Tail(log.substr(start, end == std::string::npos ? std::string::npos : end - start));
  }
  // No verifier log (e.g. a CO-RE or map problem): the lines that name the program.
  std::string lines;
  const std::string tag = "prog '" + prog + "'";
  size_t pos = 0;
  while ((pos = log.find(tag, pos)) != std::string::npos) {
    size_t line_start = log.rfind('\n', pos);
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    size_t line_end = log.find('\n', pos);
    lines += log.substr(line_start, line_end - line_start) + "\n";
    pos = line_end == std::string::npos ? log.size() : line_end;
  }
  return Tail(lines);
}

}  // namespace

void Capture::Open() {
  // 1. Open every object: a bad file only fails itself.
  for (const auto& path : settings_.objects) {
    ObjectState os;
    os.path = path;
    if (OpenObject(os)) {
      bpf_program* p;
      bpf_object__for_each_program(p, os.obj) {
        std::string name = bpf_program__name(p);
        if (settings_.has_program_allowlist && settings_.programs.count(name) == 0) continue;
        ProgramState ps;
        ps.name = name;
        ps.object = path;
        ps.section = bpf_program__section_name(p);
        const char* type = libbpf_bpf_prog_type_str(bpf_program__type(p));
        ps.type = type != nullptr ? type : "unknown";
        programs_.push_back(ps);
      }
    }
    objects_.push_back(std::move(os));
  }
  if (settings_.has_program_allowlist) {
    for (const auto& want : settings_.programs) {
      bool found = false;
      for (const auto& ps : programs_) found = found || ps.name == want;
      if (!found) {
        ProgramState ps;
        ps.name = want;
        ps.error = "no program with this name in any opened object";
        programs_.push_back(ps);
      }
    }
  }
  for (const auto& kv : settings_.cfg) unused_cfg_.insert(kv.first);

  // 2. One ring buffer, one drops array, one allowlist for all objects.
  CreateSharedMaps();

  // 3. Load and attach each object on its own.
  for (auto& os : objects_) {
    if (os.obj == nullptr) continue;
    LoadObject(os);
    if (os.loaded) AttachPrograms(os);
  }

  auto events = shared_fds_.find(kEventsMap);
  if (events != shared_fds_.end()) {
    LibbpfLogCapture cap;
    rb_ = ring_buffer__new(events->second, &Capture::OnSample, this, nullptr);
    if (rb_ == nullptr) {
      int err = errno;
      for (auto& os : objects_) {
        if (!os.error.empty()) continue;
        os.error = "ring buffer: " + ErrnoText(err) + " " + Tail(cap.Take(), 3);
        os.failed = {"ring_buffer", err};
      }
    }
  }
}

bool Capture::OpenObject(ObjectState& os) {
  LibbpfLogCapture cap;
  os.obj = bpf_object__open_file((os.open_path.empty() ? os.path : os.open_path).c_str(), nullptr);
  if (os.obj == nullptr) {
    int err = errno;
    std::string log = cap.Take();
    os.error = "open failed: " + ErrnoText(err) + (log.empty() ? "" : "\n" + Tail(log));
    os.failed = {"open", err};
    return false;
  }
  return true;
}

void Capture::CreateSharedMaps() {
  for (const char* name : kSharedMaps) {
    for (auto& os : objects_) {
      if (os.obj == nullptr) continue;
      bpf_map* m = bpf_object__find_map_by_name(os.obj, name);
      if (m == nullptr) continue;
      uint32_t max_entries = bpf_map__max_entries(m);
      if (std::strcmp(name, kEventsMap) == 0) max_entries = static_cast<uint32_t>(settings_.ring_buffer_bytes);
      LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = bpf_map__map_flags(m));
      int fd = bpf_map_create(bpf_map__type(m), name, bpf_map__key_size(m), bpf_map__value_size(m), max_entries,
                              &opts);
      if (fd < 0) {
        int err = errno;
        std::string text = std::string("creating shared map ") + name + ": " + ErrnoText(err);
        for (auto& o : objects_) {
          if (!o.error.empty()) continue;
          o.error = text;
          o.failed = {"maps", err};
        }
      } else {
        shared_fds_[name] = fd;
      }
      break;  // the first object that declares the map defines it
    }
  }
  auto allow = shared_fds_.find(kAllowMap);
  if (allow != shared_fds_.end()) {
    uint8_t one[64] = {1};
    for (uint64_t id : settings_.filter_cgroup_ids) bpf_map_update_elem(allow->second, &id, one, BPF_ANY);
  }
}

void Capture::PrepareObject(ObjectState& os) {
  // Program selection: the allowlist, minus what the verifier already refused.
  bpf_program* p;
  bpf_object__for_each_program(p, os.obj) {
    std::string name = bpf_program__name(p);
    bool wanted = !settings_.has_program_allowlist || settings_.programs.count(name) > 0;
    if (!wanted || os.rejected.count(name) > 0) bpf_program__set_autoload(p, false);
  }
  for (const auto& kv : shared_fds_) {
    bpf_map* m = bpf_object__find_map_by_name(os.obj, kv.first.c_str());
    if (m != nullptr && bpf_map__reuse_fd(m, kv.second) != 0 && os.error.empty()) {
      os.failed = {"maps", errno};
      os.error = "reusing shared map " + kv.first + ": " + ErrnoText(os.failed.err);
    }
  }
  // kt_cfg_* settings live in .rodata: find each variable's offset in the DATASEC's BTF.
  const struct btf* btf = bpf_object__btf(os.obj);
  bpf_map* rodata = nullptr;
  bpf_map* m;
  bpf_object__for_each_map(m, os.obj) {
    const char* name = bpf_map__name(m);
    size_t len = std::strlen(name);
    if (bpf_map__is_internal(m) && len >= 7 && std::strcmp(name + len - 7, ".rodata") == 0) rodata = m;
  }
  if (btf == nullptr || rodata == nullptr) return;
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return;
  const struct btf_type* sec = btf__type_by_id(btf, sec_id);
  size_t data_size = 0;
  const void* initial = bpf_map__initial_value(rodata, &data_size);
  if (initial == nullptr) return;
  std::vector<uint8_t> bytes(static_cast<const uint8_t*>(initial), static_cast<const uint8_t*>(initial) + data_size);
  uint8_t* data = bytes.data();
  bool changed = false;
  const struct btf_var_secinfo* wakeup = nullptr;
  const struct btf_var_secinfo* vsi = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const struct btf_type* var = btf__type_by_id(btf, vsi->type);
    const char* var_name = btf__name_by_offset(btf, var->name_off);
    if (std::strcmp(var_name, kWakeupBytesCfg) == 0) wakeup = vsi;
    auto it = settings_.cfg.find(var_name);
    if (it == settings_.cfg.end()) continue;
    if (vsi->offset + vsi->size > data_size || !WriteInt(data + vsi->offset, vsi->size, it->second)) {
      if (os.error.empty()) {
        os.error = "cfg " + it->first + " = " + std::to_string(it->second) + " does not fit its " +
                   std::to_string(vsi->size) + "-byte variable";
        os.failed = {"prepare", EINVAL};
      }
      continue;
    }
    unused_cfg_.erase(it->first);
    changed = true;
  }
  // Programs wake the reader once kt_cfg_wakeup_bytes wait in the ring: more than half the
  // ring would let it fill before anyone wakes. Capped here, where the ring's size is known,
  // so that programs need not ask the ring for its size on every record.
  if (wakeup != nullptr && wakeup->size == 4 && wakeup->offset + 4 <= data_size) {
    uint32_t value = 0;
    std::memcpy(&value, data + wakeup->offset, 4);
    const uint64_t cap = settings_.ring_buffer_bytes / 2;
    if (value > cap) {
      WriteInt(data + wakeup->offset, 4, cap);
      changed = true;
    }
  }
  if (changed && bpf_map__set_initial_value(rodata, data, data_size) != 0 && os.error.empty()) {
    os.failed = {"prepare", errno};
    os.error = "setting .rodata: " + ErrnoText(os.failed.err);
  }
}

// The object's compat build, built without kfuncs (bpf/Makefile), for a kernel that refused the
// object: libbpf fails the entire object when a kfunc it calls is missing, and an older verifier
// may refuse what a kfunc returns. Tried before dropping any program. True when there is one to
// try, not tried before.
bool Capture::UseCompatBuild(ObjectState& os, const std::string& why) {
  if (!os.open_path.empty()) return false;
  size_t slash = os.path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : os.path.substr(0, slash);
  std::string compat = dir + "/compat/" + os.path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (access(compat.c_str(), R_OK) != 0) return false;
  os.open_path = compat;
  os.fallback = why;
  os.rejected.clear();
  return true;
}

void Capture::LoadObject(ObjectState& os) {
  // A program the verifier refuses is reported and the object is reloaded without it, so one
  // kernel incompatibility costs one program, not the whole concern.
  for (int attempt = 0; attempt < 64; attempt++) {
    if (os.obj == nullptr && !OpenObject(os)) return;
    PrepareObject(os);
    if (!os.error.empty()) break;
    size_t selected = 0;
    bpf_program* p;
    bpf_object__for_each_program(p, os.obj) selected += bpf_program__autoload(p) ? 1 : 0;
    if (selected == 0) {
      bpf_object__close(os.obj);
      os.obj = nullptr;
      return;  // nothing wanted here (allowlist or every program refused): not an error of its own
    }
    LibbpfLogCapture cap;
    int err = bpf_object__load(os.obj);
    std::string log = cap.Take();
    if (err == 0) {
      os.loaded = true;
      bpf_object__for_each_program(p, os.obj) {
        for (auto& ps : programs_)
          if (ps.object == os.path && ps.name == bpf_program__name(p) && bpf_program__autoload(p)) ps.prog = p;
      }
      return;
    }
    if (UseCompatBuild(os, "load failed: " + ErrnoText(err) + "\n" + Tail(log, 3))) {
      bpf_object__close(os.obj);
      os.obj = nullptr;
      continue;
    }
    size_t newly_rejected = 0;
    bpf_object__for_each_program(p, os.obj) {
      std::string name = bpf_program__name(p);
      if (!bpf_program__autoload(p)) continue;
      if (log.find("prog '" + name + "': BPF program load failed") == std::string::npos &&
          log.find("prog '" + name + "': failed to load") == std::string::npos)
        continue;
      os.rejected.insert(name);
      newly_rejected++;
      for (auto& ps : programs_) {
        if (ps.object != os.path || ps.name != name) continue;
        ps.error = "load failed: " + ErrnoText(err) + "\n" + ProgramLoadLog(log, name);
        ps.failed = {"load", -err};
      }
    }
    bpf_object__close(os.obj);
    os.obj = nullptr;
    if (newly_rejected == 0) {
      os.error = "load failed: " + ErrnoText(err) + "\n" + Tail(log);
      // CO-RE relocations against a type vmlinux lacks make libbpf list the kernel's module
      // BTFs (BPF_BTF_GET_NEXT_ID), which only CAP_SYS_ADMIN may do.
      bool module_btf = log.find("failed to iterate BTF objects") != std::string::npos;
      os.failed = {module_btf ? "module_btf" : "load", -err};
      break;
    }
  }
  for (auto& ps : programs_) {
    if (ps.object != os.path || !ps.error.empty()) continue;
    ps.error = os.error.empty() ? "object not loaded" : os.error;
    ps.failed = os.failed;
  }
  if (os.obj != nullptr) {
    bpf_object__close(os.obj);
    os.obj = nullptr;
  }
}

void Capture::AttachPrograms(ObjectState& os) {
  for (auto& ps : programs_) {
    if (ps.object != os.path || ps.prog == nullptr) continue;
    LibbpfLogCapture cap;
    bpf_link* link = nullptr;
    if (bpf_program__type(ps.prog) == BPF_PROG_TYPE_CGROUP_SKB) {
      if (cgroup_root_fd_ < 0) cgroup_root_fd_ = open(settings_.cgroup_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (cgroup_root_fd_ < 0) {
        ps.failed = {"attach", errno};
        ps.error = "attach failed: cannot open cgroup root " + settings_.cgroup_root + ": " + ErrnoText(ps.failed.err);
        continue;
      }
      link = bpf_program__attach_cgroup(ps.prog, cgroup_root_fd_);
    } else {
      link = bpf_program__attach(ps.prog);
    }
    if (link == nullptr) {
      int err = errno;
      std::string log = cap.Take();
      if (err == EOPNOTSUPP) {  // loaded, but its section names no attach point (tc, syscall...)
        ps.error = "loaded; section '" + ps.section + "' has no automatic attach point";
        continue;
      }
      ps.error = "attach failed: " + ErrnoText(err) + (log.empty() ? "" : "\n" + Tail(log, 5));
      ps.failed = {"attach", err};
      continue;
    }
    ps.link = link;
    ps.attached = true;
  }
}

}  // namespace ktrail
