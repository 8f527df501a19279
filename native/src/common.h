// Helpers shared by the addon's source files (capture.cc: open, poll, close; maps.cc: map reads).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace ktrail {

// Maps every object shares, so all concerns write into one ring buffer, count drops in one
// array and obey one cgroup allowlist (docs/events.md).
inline constexpr const char* kEventsMap = "kt_events";
inline constexpr const char* kDropsMap = "kt_drops";
inline constexpr const char* kAllowMap = "kt_cgroup_allow";

// "No such file or directory (errno 2)"; accepts errno or -errno.
std::string ErrnoText(int err);

// Per-CPU map types: a value is ncpu slots of round_up(value_size, 8) bytes.
bool IsPerCpu(uint32_t type);

// A JS number (safe integer), bigint (two's complement for negatives) or boolean as u64.
uint64_t ToU64(const Napi::Value& v, const char* what);

}  // namespace ktrail
