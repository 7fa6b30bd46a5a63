// block_cache.h (private) — BlockCache: a stream's recently freed pool blocks, handed to its next
// allocations of the same size without a driver call.
//
// Note [Stream block cache]
// An eager forward allocates its output and workspace from the stream-ordered pool and frees
// them again: cudaMallocFromPoolAsync and cudaFreeAsync per buffer, each a driver call on the
// critical path of a forward that synchronizes, and calls the driver serializes between threads.
// Measured on the H100 (docs/benchmarks.md, "Stream block cache"): plain cuBLASLt running the MLP
// at batch 1024 in TF32 lost 23-38% of its synchronized rate when its activations were allocated
// and freed so in every forward; tandem's eager batch-1 MLP stayed at ~54k forwards/s from 1 to 16
// threads, and runs 3x that at 8 threads with this cache. So each CudaStream keeps up to
// kMaxBlocks blocks freed on it:
//  - put(p, bytes) on deallocate: p joins the cache (the oldest block leaves it when full, and the
//    caller frees that one with cudaFreeAsync). take(bytes) on allocate: a cached block of exactly
//    `bytes` bytes, newest first, or null.
//  - Safe for the same reason as cudaFreeAsync: a block freed on stream S may be reused by work
//    enqueued on S afterwards. The cache hands a block only to an allocation on S, whose work is
//    enqueued after the free; a buffer's users on other streams must be ordered before its free
//    on S already (Buffer's contract).
//  - Off while S captures a graph (set_enabled(false)): then allocations and frees take the
//    paths they always did (the graph's arena, graph memory nodes), so no cached address is
//    baked into a graph.
//  - Cached blocks stay "used" in the pool's own counters (PoolStats) but not in tandem's
//    MemoryStats (the buffer was freed). Out of memory: the device drains every stream's cache
//    back into the pool and tries once more (CudaDevice::allocate; not the cache of a stream that
//    captures); drain() on stream destruction.
// Threading: any thread may put, take or drain (a buffer may die on any thread); one mutex.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <functional>
#include <vector>

#include "tandem/mutex.h"

namespace tandem::backends::cuda {

class BlockCache {
 public:
  static constexpr std::size_t kMaxBlocks = 8;

  // on: false (TANDEM_CUDA_BLOCK_CACHE=0) makes the cache always off.
  explicit BlockCache(bool on) : on_(on) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  struct Block {
    void* p = nullptr;
    std::size_t bytes = 0;
  };

  // take(bytes): a cached block of exactly `bytes` bytes (removed from the cache), or nullptr
  // (none, or the cache is off).
  [[nodiscard]] void* take(std::size_t bytes) TANDEM_EXCLUDES(mu_);
  // put(p, bytes): caches p and returns the block the caller must free now: the oldest block
  // when the cache was full, {} when nothing is to be freed, or {p, bytes} itself when the cache
  // is off.
  [[nodiscard]] Block put(void* p, std::size_t bytes) TANDEM_EXCLUDES(mu_);
  // drain(): every cached block, removed; the caller frees them.
  [[nodiscard]] std::vector<Block> drain() TANDEM_EXCLUDES(mu_);
  // release(free_blocks): unless the cache is off (its stream captures: a free enqueued there
  // would join the graph), removes every cached block and calls free_blocks(them) under the
  // cache's lock, so that set_enabled(false), and the capture after it, waits until those frees
  // are enqueued. Returns the bytes released.
  std::size_t release(const std::function<void(const std::vector<Block>&)>& free_blocks)
      TANDEM_EXCLUDES(mu_);
  // set_enabled(on): off (or constructed off), take() finds nothing and put() caches nothing
  // (blocks already cached stay until taken after it is on again, or drained). Waits for a
  // release() in progress.
  void set_enabled(bool on) TANDEM_EXCLUDES(mu_);
  // cached_bytes(): the bytes of the cached blocks (a snapshot).
  [[nodiscard]] std::size_t cached_bytes() const TANDEM_EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::array<Block, kMaxBlocks> blocks_ TANDEM_GUARDED_BY(mu_){};  // [0, n_): oldest first
  std::size_t n_ TANDEM_GUARDED_BY(mu_) = 0;
  const bool on_;
  std::atomic<bool> enabled_{true};  // off while the stream captures
  [[nodiscard]] bool active() const { return on_ && enabled_.load(std::memory_order_relaxed); }
};

}  // namespace tandem::backends::cuda
