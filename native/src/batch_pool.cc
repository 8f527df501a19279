#include "batch_pool.h"

#include <cstdlib>

namespace ktrail {

BatchPool::~BatchPool() {
  for (uint8_t* block : free_) std::free(block);
}

uint8_t* BatchPool::Take(size_t bytes, size_t* cap) {
  if (bytes <= block_bytes_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        uint8_t* block = free_.back();
        free_.pop_back();
        *cap = block_bytes_;
        return block;
      }
    }
    bytes = block_bytes_;
  }
  *cap = bytes;
  return static_cast<uint8_t*>(std::malloc(bytes));
}

void BatchPool::Give(uint8_t* data, size_t cap) {
  if (data == nullptr) return;
  if (cap == block_bytes_) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < max_free_) {
      free_.push_back(data);
      return;
    }
  }
  std::free(data);
}

}  // namespace ktrail
