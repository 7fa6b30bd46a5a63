#include "backends/cuda/cuda_device.h"

#include <algorithm>
#include <cstdio>

#include "backends/cuda/cuda_stream.h"
#include "tandem/error.h"

namespace tandem::backends::cuda {

namespace {
std::string bytes_str(std::uint64_t b) {
  char buf[64];
  if (b == UINT64_MAX) return "unlimited";
  if (b >= (std::uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  } else if (b >= (std::uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  }
  return buf;
}
}  // namespace

CudaDevice::CudaDevice(int index, const RuntimeConfig& config)
    : index_(index), name_("cuda:" + std::to_string(index)), config_(config) {
  make_current();
  TANDEM_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, index_),
                    name_);
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = index_;
  TANDEM_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props), name_);
  std::uint64_t threshold = config_.cuda_mempool_release_threshold;
  TANDEM_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold),
                    name_);
  events_ = std::make_shared<EventPool>(index_, name_);
}

CudaDevice::~CudaDevice() {
  // Streams (and their frees) are gone by now: DeviceState destroys the pool before this.
  if (pool_) (void)cudaMemPoolDestroy(pool_);
  MutexLock lock(orphans_mu_);
  for (void* arena : orphan_arenas_) (void)cudaFree(arena);
}

void CudaDevice::adopt_orphans(const std::vector<CaptureMemory::Block>& blocks, void* arena) {
  MutexLock lock(orphans_mu_);
  for (const auto& b : blocks) orphans_.push_back(b.p);
  if (arena) orphan_arenas_.push_back(arena);
  orphan_count_.store(orphans_.size(), std::memory_order_release);
}

bool CudaDevice::take_orphan(void* p) {
  MutexLock lock(orphans_mu_);
  const auto it = std::find(orphans_.begin(), orphans_.end(), p);
  if (it == orphans_.end()) return false;
  orphans_.erase(it);
  orphan_count_.store(orphans_.size(), std::memory_order_release);
  return true;
}

void CudaDevice::make_current() const {
  int current = -1;
  TANDEM_CUDA_CHECK(cudaGetDevice(&current), name_);
  if (current != index_) TANDEM_CUDA_CHECK(cudaSetDevice(index_), name_);
}

std::unique_ptr<detail::StreamImpl> CudaDevice::create_stream(int index) {
  return std::make_unique<CudaStream>(*this, index);
}

std::unique_ptr<detail::EventImpl> CudaDevice::create_event(bool timing) {
  return std::make_unique<CudaEvent>(events_, timing);
}

PoolStats CudaDevice::pool_stats() const {
  PoolStats s;
  auto get = [&](cudaMemPoolAttr attr, std::uint64_t* v) {
    TANDEM_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, attr, v), name_);
  };
  get(cudaMemPoolAttrReservedMemCurrent, &s.reserved_current);
  get(cudaMemPoolAttrReservedMemHigh, &s.reserved_high);
  get(cudaMemPoolAttrUsedMemCurrent, &s.used_current);
  get(cudaMemPoolAttrUsedMemHigh, &s.used_high);
  get(cudaMemPoolAttrReleaseThreshold, &s.release_threshold);
  return s;
}

std::string CudaDevice::describe_pool() const {
  std::string out;
  try {
    const PoolStats s = pool_stats();
    out = "pool reserves " + bytes_str(s.reserved_current) + " (peak " +
          bytes_str(s.reserved_high) + "), " + bytes_str(s.used_current) + " in use (peak " +
          bytes_str(s.used_high) + ") of which the streams' caches hold " +
          bytes_str(cached_bytes()) + ", release threshold " + bytes_str(s.release_threshold);
    std::size_t free_b = 0;
    std::size_t total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      out += "; device has " + bytes_str(free_b) + " free of " + bytes_str(total_b);
    }
  } catch (const Error& e) {
    out = std::string("pool state unavailable: ") + e.what();
  }
  return out;
}

void* CudaDevice::allocate(std::size_t bytes, detail::StreamImpl& stream) {
  auto& cs = static_cast<CudaStream&>(stream);
  // A capture of this thread on this stream: from its graph's arena (Note [Graph-owned memory]).
  CaptureMemory* capture = current_capture();
  if (capture != nullptr && &capture->stream() != &cs) capture = nullptr;
  if (capture != nullptr) {
    if (void* p = capture->allocate(bytes)) return p;
  }
  // A block of this size freed on this stream: no driver call (off while the stream captures).
  if (void* p = cs.block_cache().take(bytes)) return p;
  make_current();
  cs.disarm_signal();
  void* p = nullptr;
  cudaError_t st = cudaMallocFromPoolAsync(&p, bytes, pool_, cs.get());
  if (st == cudaErrorMemoryAllocation && capture == nullptr) {
    (void)cudaGetLastError();
    // The streams' caches hold pool memory no other stream can use: give it back, try again.
    if (drain_block_caches() > 0) st = cudaMallocFromPoolAsync(&p, bytes, pool_, cs.get());
  }
  if (st == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so the next call of this thread is clean
    throw Error(ErrorKind::kOutOfMemory,
                "allocating " + std::to_string(bytes) + " bytes (" + bytes_str(bytes) + ") on " +
                    cs.label() + " failed: " + describe_pool() +
                    ". Free buffers, lower the batch size, or lower "
                    "TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD if other processes need the memory");
  }
  check(st, "cudaMallocFromPoolAsync(&p, bytes, pool, stream)", cs.label());
  if (capture != nullptr) capture->note_fallback(p, bytes);  // the arena overflowed
  return p;
}

void CudaDevice::deallocate(void* p, std::size_t bytes, detail::StreamImpl& stream,
                            std::function<void()> on_freed) {
  auto& cs = static_cast<CudaStream&>(stream);
  // An arena block of this thread's capture on this stream: nothing to free until the graph goes.
  // A block of the capture that fell back to the pool is freed there (a graph free node).
  if (CaptureMemory* capture = current_capture();
      capture != nullptr && &capture->stream() == &cs &&
      capture->release(p) == CaptureMemory::Owner::kArena) {
    on_freed();
    return;
  }
  if (orphan_count_.load(std::memory_order_acquire) != 0 && take_orphan(p)) {
    on_freed();
    return;
  }
  // Kept for the stream's next allocation of this size; the block that leaves the cache (or p
  // itself, when the cache is off) goes back to the pool. Called from Buffer::release
  // (noexcept): a failure (a lost context) leaks the block.
  const BlockCache::Block out = cs.block_cache().put(p, bytes);
  if (out.p != nullptr) cs.free_blocks({out});
  on_freed();
}

void CudaDevice::add_block_cache(CudaStream& s) {
  MutexLock lock(caches_mu_);
  cached_streams_.push_back(&s);
}

void CudaDevice::remove_block_cache(CudaStream& s) {
  MutexLock lock(caches_mu_);
  std::erase(cached_streams_, &s);
}

std::size_t CudaDevice::drain_block_caches() {
  MutexLock lock(caches_mu_);  // held while freeing: no stream is destroyed meanwhile
  std::size_t freed = 0;
  for (CudaStream* s : cached_streams_) {
    freed += s->block_cache().release(
        [s](const std::vector<BlockCache::Block>& blocks) { s->free_blocks(blocks); });
  }
  return freed;
}

std::size_t CudaDevice::cached_bytes() const {
  MutexLock lock(caches_mu_);
  std::size_t sum = 0;
  for (CudaStream* s : cached_streams_) sum += s->block_cache().cached_bytes();
  return sum;
}

void* CudaDevice::allocate_host(std::size_t bytes) {
  make_current();
  void* p = nullptr;
  const cudaError_t st = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (st == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw Error(ErrorKind::kOutOfMemory,
                "allocating " + std::to_string(bytes) + " bytes (" + bytes_str(bytes) +
                    ") of page-locked host memory for " + name_ +
                    " failed (cudaHostAlloc); free host memory or use smaller batches");
  }
  check(st, "cudaHostAlloc(&p, bytes, cudaHostAllocPortable)", name_);
  return p;
}

void CudaDevice::deallocate_host(void* p, std::size_t) noexcept {
  // noexcept: a failure (a context already torn down at process exit) leaks the block.
  if (cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace tandem::backends::cuda
