// cuda_device.h (private) — CudaDevice: the BackendDevice of one GPU.
//
// Memory: a stream-ordered pool of its own (cudaMemPoolCreate), allocations with
// cudaMallocFromPoolAsync and frees with cudaFreeAsync on the buffer's stream. The pool keeps up
// to TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD bytes reserved across synchronizations (default: all).
// Out of memory is Error(kOutOfMemory) with the requested size, the pool's state and the
// device's free memory; nothing is left broken (the failed call has no effect), so the runtime
// keeps serving. Free statistics (MemoryStats::frees) count a free when it is enqueued: from then
// on the pool reuses the memory in stream order, and no host callback is paid per free.
// Allocations made on a stream while its owner captures a graph come from the graph's arena
// instead (Note [Graph-owned memory] in graph_arena.h); arenas are outside the pool. Otherwise a
// stream first reuses a block of the same size freed on it (Note [Stream block cache] in
// block_cache.h); out of memory drains every stream's cache into the pool and tries once more.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_event.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/graph_arena.h"
#include "backends/cuda/lt_cache.h"
#include "runtime/backend.h"
#include "tandem/mutex.h"

namespace tandem::backends::cuda {

// PoolStats: the memory pool's own counters (bytes).
struct PoolStats {
  std::uint64_t reserved_current = 0;  // memory the pool holds from the driver
  std::uint64_t reserved_high = 0;
  std::uint64_t used_current = 0;  // memory handed out to allocations
  std::uint64_t used_high = 0;
  std::uint64_t release_threshold = 0;
};

class CudaStream;

class CudaDevice : public detail::BackendDevice {
 public:
  CudaDevice(int index, const RuntimeConfig& config);
  ~CudaDevice() override;

  [[nodiscard]] std::unique_ptr<detail::StreamImpl> create_stream(int index) override;
  [[nodiscard]] std::unique_ptr<detail::EventImpl> create_event(bool timing) override;
  [[nodiscard]] void* allocate(std::size_t bytes, detail::StreamImpl& stream) override;
  void deallocate(void* p, std::size_t bytes, detail::StreamImpl& stream,
                  std::function<void()> on_freed) override;
  [[nodiscard]] const Kernels& kernels() const override { return kernels_; }
  // Page-locked, portable host memory (cudaHostAlloc / cudaFreeHost).
  [[nodiscard]] void* allocate_host(std::size_t bytes) override;
  void deallocate_host(void* p, std::size_t bytes) noexcept override;

  [[nodiscard]] int index() const { return index_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const RuntimeConfig& config() const { return config_; }
  [[nodiscard]] int multiprocessors() const { return multiprocessors_; }
  // make_current(): cudaSetDevice(index) when the calling thread's current device differs.
  void make_current() const;
  [[nodiscard]] PoolStats pool_stats() const;
  // describe_pool(): "pool reserved 1.0 GiB (peak ...), used ..., threshold ...; device free ...".
  [[nodiscard]] std::string describe_pool() const;
  [[nodiscard]] LtAlgoCache& lt_algos() { return lt_algos_; }
  [[nodiscard]] EventPool& events() { return *events_; }

  // adopt_orphans(blocks, arena): blocks that escaped a failed capture (Note [Graph-owned
  // memory]): their later deallocate() is a no-op (beyond the stats); `arena` (may be null), the
  // arena they lie in, is kept until this device is destroyed. Any thread.
  void adopt_orphans(const std::vector<CaptureMemory::Block>& blocks, void* arena)
      TANDEM_EXCLUDES(orphans_mu_);
  // count_graph_bytes(delta): a graph arena of `delta` bytes was allocated (> 0) or freed or
  // orphaned (< 0); graph_bytes() sums them (MemoryStats::graph_bytes). Any thread.
  void count_graph_bytes(std::int64_t delta) noexcept {
    graph_bytes_.fetch_add(delta, std::memory_order_relaxed);
  }
  [[nodiscard]] std::int64_t graph_bytes() const override {
    return graph_bytes_.load(std::memory_order_relaxed);
  }
  // add_block_cache(s) / remove_block_cache(s): s's block cache joins / leaves the ones
  // drain_block_caches() empties (CudaStream's constructor and destructor). Any thread.
  void add_block_cache(CudaStream& s) TANDEM_EXCLUDES(caches_mu_);
  void remove_block_cache(CudaStream& s) TANDEM_EXCLUDES(caches_mu_);
  // drain_block_caches(): frees every stream's cached blocks into the pool (cudaFreeAsync on
  // their streams), but those of a stream that captures; the bytes freed. Any thread, but not
  // while it captures.
  std::size_t drain_block_caches() TANDEM_EXCLUDES(caches_mu_);
  // cached_bytes(): the bytes the streams' caches hold (a snapshot). Any thread.
  [[nodiscard]] std::size_t cached_bytes() const TANDEM_EXCLUDES(caches_mu_);

 private:
  // take_orphan(p): whether p is an orphan block (and forgets it).
  [[nodiscard]] bool take_orphan(void* p) TANDEM_EXCLUDES(orphans_mu_);

  const int index_;
  const std::string name_;
  const RuntimeConfig config_;
  int multiprocessors_ = 0;
  cudaMemPool_t pool_ = nullptr;
  std::shared_ptr<EventPool> events_;
  CudaKernels kernels_;
  LtAlgoCache lt_algos_;

  Mutex orphans_mu_;
  std::vector<void*> orphans_ TANDEM_GUARDED_BY(orphans_mu_);
  std::vector<void*> orphan_arenas_ TANDEM_GUARDED_BY(orphans_mu_);
  // orphan_count_: orphans_.size(). Writers: adopt_orphans and take_orphan, under orphans_mu_
  // (release); deallocate() reads it (acquire) and takes the mutex only when it is not 0, so
  // frees pay one load while no capture ever leaked.
  std::atomic<std::size_t> orphan_count_{0};
  std::atomic<std::int64_t> graph_bytes_{0};  // count_graph_bytes
  mutable Mutex caches_mu_;
  std::vector<CudaStream*> cached_streams_ TANDEM_GUARDED_BY(caches_mu_);  // add_block_cache
};

}  // namespace tandem::backends::cuda
