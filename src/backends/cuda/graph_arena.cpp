#include "backends/cuda/graph_arena.h"

#include <iterator>

namespace tandem::backends::cuda {

namespace {

// The capture this thread runs (Note [Graph-owned memory]); only this thread reads or writes it.
thread_local CaptureMemory* t_capture = nullptr;

std::size_t aligned(std::size_t bytes) {
  const std::size_t b = bytes == 0 ? 1 : bytes;  // distinct addresses for every block
  return (b + CaptureMemory::kAlignment - 1) / CaptureMemory::kAlignment * CaptureMemory::kAlignment;
}

}  // namespace

CaptureMemory::CaptureMemory(const CudaStream& stream, void* arena, std::size_t arena_bytes)
    : stream_(stream), arena_(static_cast<char*>(arena)), arena_bytes_(arena ? arena_bytes : 0) {}

void* CaptureMemory::allocate(std::size_t bytes) {
  const std::size_t size = aligned(bytes);
  needed_ += size;
  if (overflowed_ || arena_bytes_ - top_ < size) {
    overflowed_ = true;
    return nullptr;
  }
  void* p = arena_ + top_;
  top_ += size;
  live_.push_back({p, bytes, true});
  return p;
}

void CaptureMemory::note_fallback(void* p, std::size_t bytes) { live_.push_back({p, bytes, false}); }

CaptureMemory::Owner CaptureMemory::release(void* p) {
  for (auto it = live_.rbegin(); it != live_.rend(); ++it) {  // usually the last one
    if (it->p == p) {
      const bool in_arena = it->in_arena;
      live_.erase(std::next(it).base());
      return in_arena ? Owner::kArena : Owner::kFallback;
    }
  }
  return Owner::kNotOurs;
}

std::size_t CaptureMemory::live_bytes() const {
  std::size_t total = 0;
  for (const Block& b : live_) total += b.bytes;
  return total;
}

bool CaptureMemory::live_in_arena() const {
  for (const Block& b : live_) {
    if (b.in_arena) return true;
  }
  return false;
}

CaptureMemory* current_capture() noexcept { return t_capture; }

CaptureScope::CaptureScope(CaptureMemory& memory) noexcept : previous_(t_capture) {
  t_capture = &memory;
}

CaptureScope::~CaptureScope() { t_capture = previous_; }

}  // namespace tandem::backends::cuda
