// graph_arena.h (private) — graph-owned memory: the allocations of the CUDA-graph capture that
// the calling thread runs (CaptureMemory), so that a captured graph holds no memory nodes.
//
// Note [Graph-owned memory]
// A graph that run_graph captures (tandem/graph.h) holds kernels (and the host nodes of
// Encoder::dispatch), never allocation or free nodes:
// - While a thread captures on a CudaStream, the allocations that body makes *on that stream*
//   (CudaDevice::allocate) come from the graph's arena: one cudaMalloc'd block owned by the
//   graph, bump-allocated in kAlignment (256-byte) steps. Their frees inside the capture are
//   no-ops. The addresses are baked into the graph's kernels; every replay finds its
//   temporaries at the same place. Replays of one graph run in order on its one stream, so they
//   never overlap and share the arena safely.
// - Size: not known before the first capture, which runs with no arena: its allocations fall
//   back to the stream-ordered pool (graph allocation nodes) while CaptureMemory counts the bytes
//   an arena needs (needed()). If any fell back, that graph is discarded (never instantiated),
//   an arena of the counted size is cudaMalloc'd outside the capture, and body is captured again:
//   body runs twice on first use of a key that allocates. A second capture that overflows too
//   (body allocated more than the first time: the contract forbids it) is an error.
// - Threads: the capture state is thread-local (current_capture()), set and read only by the
//   capturing thread. Allocations and frees on other threads, or on other streams, never read
//   it: they go to the pool as before.
// - Leaks: a body that returns with blocks of its capture still allocated breaks the contract:
//   run_graph throws Error(kInvalidArgument) naming the stream and the bytes and caches nothing
//   (a body that throws with blocks escaped: its exception propagates). The escaped blocks become the device's orphans (CudaDevice::adopt_orphans): their
//   later frees are no-ops (never a double free), and an arena they lie in is kept until the
//   device is destroyed, so a stray use of an arena block touches memory that nothing else owns
//   (a block that fell back to the pool belonged to the discarded graph: it must not be used).
// - Lifetime: the arena is freed with its graph (CudaStream::Graph), after the graph's exec is
//   destroyed and the stream synchronized: graphs are dropped at Device::close (stop(kDrain)) or
//   stream destruction, both after a cudaStreamSynchronize, and ~Graph synchronizes again.
// - Accounting: arena blocks count in Device::memory_stats' current_bytes while allocated
//   (inside the capture only). The arenas themselves are outside the memory pool: PoolStats and
//   describe_pool() do not include them; MemoryStats::graph_bytes sums the arenas of the
//   cached graphs (an orphaned arena leaves it), CudaStream::graph_info(key).arena_bytes gives
//   one graph's.
#pragma once

#include <cstddef>
#include <vector>

namespace tandem::backends::cuda {

class CudaStream;

// CaptureMemory: the allocations of one capture, on the capturing thread's stack. Not
// thread-safe: only the capturing thread uses it (through current_capture()).
class CaptureMemory {
 public:
  static constexpr std::size_t kAlignment = 256;

  // arena: `arena_bytes` of device memory (nullptr and 0 for a first capture).
  CaptureMemory(const CudaStream& stream, void* arena, std::size_t arena_bytes);
  CaptureMemory(const CaptureMemory&) = delete;
  CaptureMemory& operator=(const CaptureMemory&) = delete;

  [[nodiscard]] const CudaStream& stream() const { return stream_; }

  // allocate(bytes): the next kAlignment-aligned block of the arena, or nullptr when it does not
  // fit (overflowed() from then on); the caller then allocates from the pool and calls
  // note_fallback. Either way the block counts in needed().
  [[nodiscard]] void* allocate(std::size_t bytes);
  void note_fallback(void* p, std::size_t bytes);

  // release(p): forgets block p of this capture. kArena: an arena block (its free is a no-op);
  // kFallback: a pool block (the caller frees it to the pool); kNotOurs: not of this capture.
  enum class Owner { kArena, kFallback, kNotOurs };
  [[nodiscard]] Owner release(void* p);

  // The bytes an arena needs to serve every allocation of this capture from the arena.
  [[nodiscard]] std::size_t needed() const { return needed_; }
  [[nodiscard]] bool overflowed() const { return overflowed_; }

  struct Block {
    void* p;
    std::size_t bytes;
    bool in_arena;
  };
  // live(): the blocks allocated and not yet released, in allocation order.
  [[nodiscard]] const std::vector<Block>& live() const { return live_; }
  [[nodiscard]] std::size_t live_bytes() const;
  [[nodiscard]] bool live_in_arena() const;

 private:
  const CudaStream& stream_;
  char* const arena_;
  const std::size_t arena_bytes_;
  std::size_t top_ = 0;     // the arena's bump offset
  std::size_t needed_ = 0;  // sum of the aligned sizes of every allocation
  bool overflowed_ = false;
  std::vector<Block> live_;
};

// current_capture(): the CaptureMemory of the capture this thread runs, or nullptr.
[[nodiscard]] CaptureMemory* current_capture() noexcept;

// CaptureScope: makes `memory` this thread's current capture while it lives (restoring the
// previous one, so captures nest on one thread).
class [[nodiscard]] CaptureScope {
 public:
  explicit CaptureScope(CaptureMemory& memory) noexcept;
  ~CaptureScope();
  CaptureScope(const CaptureScope&) = delete;
  CaptureScope& operator=(const CaptureScope&) = delete;

 private:
  CaptureMemory* previous_;
};

}  // namespace tandem::backends::cuda
