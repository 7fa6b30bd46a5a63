// request_pool.h (private) — PoolAllocator: per-thread caches of small blocks, for the
// allocations every request makes (the Request, a future's shared state and result), which are
// freed from any thread.
//
// Note [Request pool]
// A request is allocated on its submitting thread and usually freed on an executor. glibc's
// per-thread cache (tcache) takes a free only into the *freeing* thread's cache, and holds 7
// blocks of a size, so these cross-thread pairs end in malloc's arenas, under their locks (on
// the 16-core GPU host a third of the process's CPU samples were in malloc/free at 64 x 16;
// docs/benchmarks.md, "Graph batching"). Here each thread owns a Cache with, per size class
// (payloads of 128, 256, 512, 1024 bytes; larger or over-aligned requests go to operator new):
//  - a local free list, touched by the owner only (no atomic);
//  - a remote free list, a lock-free stack: any other thread pushes (CAS, release); the owner
//    takes the whole list at once (exchange with null, acquire: it sees every write to a block
//    before reusing it). One consumer that takes everything: no ABA.
// allocate(): pops the local list; when empty, takes the remote list (one exchange per refill);
// when that is empty too, operator new. deallocate(): a block's 16-byte header names its owner
// Cache: the owner pushes on its local list, any other thread on the owner's remote list.
// Lifetime: Caches are never freed. At thread exit a cache gives its local blocks back to
// operator delete and joins a list of orphans (under a mutex), which the next thread that
// allocates adopts, remote list included; frees to an orphan are ordinary remote frees. A thread
// that allocates after its cache was given up (in a later thread_local destructor) gets an
// unowned block: plain operator new / delete.
// Memory bound: a local list keeps at most kMaxCached blocks per class (beyond: operator
// delete), also when the owner takes a remote list (it trims it); a remote list holds only
// blocks its owner allocated. So a thread keeps at most kMaxCached blocks per class plus what it
// allocated and is not yet taken back.
// Sanitizers: under AddressSanitizer a cached block's payload is poisoned, so a use after free
// of a request is still reported.
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <new>

namespace tandem::serve::detail {

// kPoolAlign: the alignment of pool blocks' payloads; types aligned more go to operator new.
inline constexpr std::size_t kPoolAlign = 16;

// pool_allocate(bytes): a block of at least `bytes` bytes, aligned to kPoolAlign, from the
// calling thread's cache (Note [Request pool]); throws std::bad_alloc. Thread-safe.
[[nodiscard]] void* pool_allocate(std::size_t bytes);
// pool_deallocate(p, bytes): frees a block from pool_allocate(bytes) (the same `bytes`), on any
// thread. Thread-safe.
void pool_deallocate(void* p, std::size_t bytes) noexcept;

// PoolAllocator<T>: an allocator over pool_allocate() for std::allocate_shared and
// std::promise(std::allocator_arg, ...). Stateless: all instances are equal.
template <class T>
class PoolAllocator {
 public:
  using value_type = T;
  PoolAllocator() noexcept = default;
  // Implicit, as the allocator requirements' rebinding conversion (PoolAllocator<U> -> <T>) is.
  template <class U>
  explicit(false) PoolAllocator(const PoolAllocator<U>& /*unused*/) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    if constexpr (alignof(T) > kPoolAlign) {
      return std::allocator<T>{}.allocate(n);
    } else {
      return static_cast<T*>(pool_allocate(n * sizeof(T)));
    }
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) > kPoolAlign) {
      std::allocator<T>{}.deallocate(p, n);
    } else {
      pool_deallocate(p, n * sizeof(T));
    }
  }
  friend bool operator==(const PoolAllocator& /*a*/, const PoolAllocator& /*b*/) noexcept {
    return true;
  }
};

}  // namespace tandem::serve::detail
