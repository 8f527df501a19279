// ktrail_codec: the Kafka record-batch codecs ktrail needs from native code, in an addon of
// its own (no libbpf), so the processor can load it as well as the collector:
//   crc32c(buf) -> uint32          CRC-32C (Castagnoli) of a whole buffer, synchronous:
//                                  SSE4.2 crc32 instructions when the CPU has them, else
//                                  slice-by-8 tables (same results; tested against vectors)
//   zstdCompress(buf, level) -> Promise<Buffer>    one zstd frame (content size recorded)
//   zstdDecompress(buf) -> Promise<Buffer>         any sequence of zstd frames, with or
//                                                   without content size (Java producers)
// Compression runs on the libuv thread pool (Napi::AsyncWorker), as node:zlib does, so the
// JS thread never waits on it. The addon also carries the one memory call the processor needs
// (memory.cc: pageOut). See docs/native.md.
#include <napi.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

void InitMemory(Napi::Env env, Napi::Object exports);  // memory.cc

namespace {

// ---- CRC-32C ----------------------------------------------------------------------------

uint32_t g_table[8][256];

void InitTables() {
  const uint32_t poly = 0x82F63B78u;  // Castagnoli, reflected
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
    g_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) g_table[t][i] = (g_table[t - 1][i] >> 8) ^ g_table[0][g_table[t - 1][i] & 0xff];
}

uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    w ^= crc;
    crc = g_table[7][w & 0xff] ^ g_table[6][(w >> 8) & 0xff] ^ g_table[5][(w >> 16) & 0xff] ^
          g_table[4][(w >> 24) & 0xff] ^ g_table[3][(w >> 32) & 0xff] ^ g_table[2][(w >> 40) & 0xff] ^
          g_table[1][(w >> 48) & 0xff] ^ g_table[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ g_table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
const bool g_hardware = __builtin_cpu_supports("sse4.2");
#else
const bool g_hardware = false;
uint32_t Crc32cHardware(uint32_t crc, const uint8_t* p, size_t n) { return Crc32cSoftware(crc, p, n); }
#endif

Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw Napi::TypeError::New(env, "crc32c(buffer): a Buffer or Uint8Array is required");
  auto arr = info[0].As<Napi::Uint8Array>();
  const uint8_t* p = arr.Data();
  size_t n = arr.ByteLength();
  // Optional second argument: force the table implementation (tests compare both paths).
  bool software = info.Length() > 1 && info[1].ToBoolean().Value();
  uint32_t crc = (g_hardware && !software) ? Crc32cHardware(0, p, n) : Crc32cSoftware(0, p, n);
  return Napi::Number::New(env, crc);
}

// ---- zstd -------------------------------------------------------------------------------

// Compression contexts and output areas are kept for the life of the process and shared by
// the pool threads: a fresh context per batch allocated and initialised ~1 MiB of tables
// every time, and that churn through malloc fragmented the heap. One per pool thread (what
// a thread_local gave) held four of them, ~2 MiB each at ktrail's 1 MB batches, where the
// collector compresses one batch at a time: a scratch is taken for one batch and given
// back once its result is copied out, so there are as many as compressions run at once.
struct CompressScratch {
  ZSTD_CCtx* cctx = nullptr;
  std::vector<uint8_t> out;
  ~CompressScratch() { ZSTD_freeCCtx(cctx); }
};

class ScratchPool {
 public:
  std::unique_ptr<CompressScratch> Take() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) return std::make_unique<CompressScratch>();
    std::unique_ptr<CompressScratch> s = std::move(free_.back());
    free_.pop_back();
    return s;
  }
  void Give(std::unique_ptr<CompressScratch> s) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() < kMaxFree) free_.push_back(std::move(s));
  }

 private:
  static constexpr size_t kMaxFree = 4;  // the default libuv pool size
  std::mutex mutex_;
  std::vector<std::unique_ptr<CompressScratch>> free_;
};
ScratchPool g_scratches;

// Compression reads the caller's Buffer in place, held by a reference until the worker is
// done (its callers, kafkajs' encoders, never write to a buffer after handing it over);
// decompression copies its input. The output is copied once into an exact-size Buffer,
// straight from the scratch, which the worker holds until then.
class ZstdWorker : public Napi::AsyncWorker {
 public:
  ZstdWorker(Napi::Env env, Napi::Uint8Array arr, bool compress, int level)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        compress_(compress),
        level_(level) {
    if (compress) {
      inputRef_ = Napi::Persistent(arr.As<Napi::Object>());
      data_ = arr.Data();
      size_ = arr.ByteLength();
    } else {
      input_.assign(arr.Data(), arr.Data() + arr.ByteLength());
      data_ = input_.data();
      size_ = input_.size();
    }
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (compress_) {
      scratch_ = g_scratches.Take();
      CompressScratch& t = *scratch_;
      if (t.cctx == nullptr && (t.cctx = ZSTD_createCCtx()) == nullptr) return SetError("zstd compress: out of memory");
      size_t bound = ZSTD_compressBound(size_);
      if (t.out.size() < bound) t.out.resize(bound);
      size_t n = ZSTD_compressCCtx(t.cctx, t.out.data(), t.out.size(), data_, size_, level_);
      if (ZSTD_isError(n)) return SetError(std::string("zstd compress: ") + ZSTD_getErrorName(n));
      result_ = t.out.data();
      resultSize_ = n;
      return;
    }
    // Streaming decompression: frames without a content size (streaming producers) and
    // several concatenated frames both decode; the output grows as needed.
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    if (dctx == nullptr) return SetError("zstd decompress: out of memory");
    // The frame's declared size is only a hint: a few bytes can declare 2 GiB. Trust it up to
    // what the input could plausibly expand to; past that the buffer grows as bytes arrive.
    unsigned long long hint = ZSTD_getFrameContentSize(input_.data(), input_.size());
    const size_t plausible = input_.size() * 64 + 65536;
    size_t capacity = (hint != ZSTD_CONTENTSIZE_UNKNOWN && hint != ZSTD_CONTENTSIZE_ERROR && hint <= plausible)
                          ? static_cast<size_t>(hint)
                          : input_.size() * 4 + 1024;
    output_.resize(capacity);
    ZSTD_inBuffer in{data_, size_, 0};
    ZSTD_outBuffer out{output_.data(), output_.size(), 0};
    size_t last = 0;
    for (;;) {
      if (out.pos == out.size) {
        if (output_.size() >= kMaxDecompressed) {
          ZSTD_freeDCtx(dctx);
          return SetError("zstd decompress: output larger than 256 MiB");
        }
        output_.resize(std::min(output_.size() * 2, kMaxDecompressed));
        out.dst = output_.data();
        out.size = output_.size();
      }
      last = ZSTD_decompressStream(dctx, &out, &in);
      if (ZSTD_isError(last)) {
        std::string msg = std::string("zstd decompress: ") + ZSTD_getErrorName(last);
        ZSTD_freeDCtx(dctx);
        return SetError(msg);
      }
      // 0: a frame is complete and flushed; done when no input is left after it.
      if (in.pos == in.size && (last == 0 || out.pos < out.size)) break;
    }
    ZSTD_freeDCtx(dctx);
    if (last != 0) return SetError("zstd decompress: input ends inside a frame");
    output_.resize(out.pos);
    result_ = output_.data();
    resultSize_ = output_.size();
  }

  // A copy into a Node-allocated Buffer: V8 then accounts for its memory (an external
  // buffer over the vector would be invisible to the GC's heuristics, and keep the
  // compressBound()-sized capacity alive).
  void OnOK() override { deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(Env(), result_, resultSize_)); }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  // On the JS thread, after OnOK or OnError: the scratch goes back for the next batch.
  ~ZstdWorker() override {
    if (scratch_) g_scratches.Give(std::move(scratch_));
  }

 private:
  // ktrail's record batches are about 1 MB; a batch that grows past this is a bomb.
  static constexpr size_t kMaxDecompressed = size_t{256} << 20;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference inputRef_;
  std::vector<uint8_t> input_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> output_;
  std::unique_ptr<CompressScratch> scratch_;
  const uint8_t* result_ = nullptr;
  size_t resultSize_ = 0;
  bool compress_;
  int level_;
};

Napi::Value Zstd(const Napi::CallbackInfo& info, bool compress) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw Napi::TypeError::New(env, "zstd: a Buffer or Uint8Array is required");
  auto arr = info[0].As<Napi::Uint8Array>();
  int level = 3;
  if (compress && info.Length() > 1 && info[1].IsNumber()) level = info[1].As<Napi::Number>().Int32Value();
  if (compress && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
    throw Napi::RangeError::New(env, "zstd: compression level out of range");
  auto* worker = new ZstdWorker(env, arr, compress, level);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitTables();
  exports.Set("crc32c", Napi::Function::New(env, Crc32c, "crc32c"));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, g_hardware));
  exports.Set("zstdCompress", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Zstd(i, true); }, "zstdCompress"));
  exports.Set("zstdDecompress", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Zstd(i, false); }, "zstdDecompress"));
  exports.Set("zstdVersion", Napi::String::New(env, ZSTD_versionString()));
  InitMemory(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ktrail_codec, Init)
