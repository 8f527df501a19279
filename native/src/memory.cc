// pageOut(address: bigint, length: number): madvise(MADV_PAGEOUT) over [address, address+length).
// The processor uses it on the embedded engine's library once the store is open: ClickHouse's
// static initialisers and DDL leave ~180 MiB of code and read-only data resident, of which
// steady-state inserts and queries use about a third, and left mapped the rest counts in the
// pod's memory until the kernel is under pressure (docs/processor.md, memory budget). Clean file pages only: a page
// another process maps too is skipped by the kernel, and one needed again faults back in.
#include <napi.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21  // Linux 5.4; older kernels answer EINVAL
#endif

namespace {

Napi::Value PageOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBigInt() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "pageOut(address: bigint, length: number)");
  bool lossless = false;
  uint64_t address = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  double length = info[1].As<Napi::Number>().DoubleValue();
  if (!lossless || length <= 0 || length > 9007199254740991.0)
    throw Napi::RangeError::New(env, "pageOut: address or length out of range");
  if (madvise(reinterpret_cast<void*>(address), static_cast<size_t>(length), MADV_PAGEOUT) != 0) {
    int err = errno;
    Napi::Error e = Napi::Error::New(env, std::string("madvise(MADV_PAGEOUT): ") + std::strerror(err));
    e.Set("errno", Napi::Number::New(env, err));
    throw e;
  }
  return env.Undefined();
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("pageOut", Napi::Function::New(env, PageOut, "pageOut"));
}
