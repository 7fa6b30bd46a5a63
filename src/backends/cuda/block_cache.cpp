// block_cache.cpp — BlockCache (Note [Stream block cache] in block_cache.h).
#include "backends/cuda/block_cache.h"

namespace tandem::backends::cuda {

void* BlockCache::take(std::size_t bytes) {
  if (!active()) return nullptr;
  MutexLock lock(mu_);
  for (std::size_t i = n_; i-- > 0;) {  // newest first: the likeliest still in L2
    if (blocks_[i].bytes != bytes) continue;
    void* p = blocks_[i].p;
    for (std::size_t j = i + 1; j < n_; ++j) blocks_[j - 1] = blocks_[j];
    blocks_[--n_] = {};
    return p;
  }
  return nullptr;
}

BlockCache::Block BlockCache::put(void* p, std::size_t bytes) {
  if (!active()) return {p, bytes};
  MutexLock lock(mu_);
  Block evicted;
  if (n_ == kMaxBlocks) {
    evicted = blocks_[0];
    for (std::size_t j = 1; j < n_; ++j) blocks_[j - 1] = blocks_[j];
    --n_;
  }
  blocks_[n_++] = {p, bytes};
  return evicted;
}

std::vector<BlockCache::Block> BlockCache::drain() {
  MutexLock lock(mu_);
  std::vector<Block> out(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(n_));
  blocks_.fill({});
  n_ = 0;
  return out;
}

std::size_t BlockCache::release(const std::function<void(const std::vector<Block>&)>& free_blocks) {
  MutexLock lock(mu_);
  if (!active() || n_ == 0) return 0;
  const std::vector<Block> out(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(n_));
  blocks_.fill({});
  n_ = 0;
  free_blocks(out);
  std::size_t bytes = 0;
  for (const auto& b : out) bytes += b.bytes;
  return bytes;
}

void BlockCache::set_enabled(bool on) {
  MutexLock lock(mu_);
  enabled_.store(on, std::memory_order_relaxed);
}

std::size_t BlockCache::cached_bytes() const {
  MutexLock lock(mu_);
  std::size_t sum = 0;
  for (std::size_t i = 0; i < n_; ++i) sum += blocks_[i].bytes;
  return sum;
}

}  // namespace tandem::backends::cuda
