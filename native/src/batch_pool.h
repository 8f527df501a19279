// Memory for the batches handed to JavaScript, recycled. A batch's Buffer is JavaScript's
// for one callback: then the addon detaches it and its memory comes back here once node
// releases it (next turn of the loop), instead of waiting for a garbage collection.
// Reused blocks are already mapped and warm: no page faults, no munmap, no external-memory
// pressure that makes V8 collect more often (docs/native.md, "Batch memory").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ktrail {

class BatchPool {
 public:
  BatchPool(size_t block_bytes, size_t max_free) : block_bytes_(block_bytes), max_free_(max_free) {}
  ~BatchPool();
  BatchPool(const BatchPool&) = delete;
  BatchPool& operator=(const BatchPool&) = delete;

  // At least `bytes` of memory: a pooled block when it fits one, else a fresh allocation
  // (a record larger than a block). *cap receives the size handed out; nullptr if none.
  uint8_t* Take(size_t bytes, size_t* cap);
  // Back from JavaScript (any thread): kept if it is a block and the pool has room.
  void Give(uint8_t* data, size_t cap);

 private:
  const size_t block_bytes_;
  const size_t max_free_;
  std::mutex mu_;
  std::vector<uint8_t*> free_;
};

// What a batch's finalizer needs to return its memory, even after the Capture is gone.
struct BatchRelease {
  std::shared_ptr<BatchPool> pool;
  size_t cap;
};

}  // namespace ktrail
