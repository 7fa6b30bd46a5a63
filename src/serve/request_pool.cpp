// request_pool.cpp — the per-thread block caches of Note [Request pool] (request_pool.h).
#include "serve/request_pool.h"

#include <array>
#include <atomic>
#include <cstdint>

#include "tandem/mutex.h"

#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_POOL_ASAN 1
#endif
#endif
#ifdef TANDEM_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define TANDEM_POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TANDEM_POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TANDEM_POOL_POISON(p, n) ((void)(p), (void)(n))
#define TANDEM_POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace tandem::serve::detail {
namespace {

constexpr int kClasses = 4;               // payloads of 128 << k bytes
constexpr std::size_t kSmallest = 128;
constexpr std::uint32_t kMaxCached = 256;  // per class, in a local list

struct Cache;
// Header: before every pooled payload. `owner` is written by allocate() and read by
// deallocate() (on the thread the block was handed to, after whatever handed it over); `next`
// links free blocks.
struct alignas(kPoolAlign) Header {
  Cache* owner;
  Header* next;
};
static_assert(sizeof(Header) == kPoolAlign);

struct Cache {
  // The owner thread only.
  std::array<Header*, kClasses> local{};
  std::array<std::uint32_t, kClasses> cached{};
  Cache* next_orphan = nullptr;  // under Orphans::mu
  // Remote free lists: pushed by any thread (CAS, release), taken by the owner (exchange,
  // acquire). Their own cache line: other threads write them.
  alignas(64) std::array<std::atomic<Header*>, kClasses> remote{};
};

// Orphans: caches whose thread exited, for the next thread to adopt. Leaked on purpose: thread
// exit hooks use it at any point of process shutdown.
struct Orphans {
  Mutex mu;
  Cache* head TANDEM_GUARDED_BY(mu) = nullptr;
};
Orphans& orphans() {
  static auto* o = new Orphans;
  return *o;
}

enum class CacheState : unsigned char { kNone, kLive, kGone };
// Trivially destructible, so readable during the thread's whole exit.
thread_local Cache* t_cache = nullptr;
thread_local CacheState t_state = CacheState::kNone;

int class_of(std::size_t bytes) noexcept {
  for (int k = 0; k < kClasses; ++k) {
    if (bytes <= (kSmallest << k)) return k;
  }
  return -1;
}
std::size_t class_bytes(int k) noexcept { return kSmallest << k; }

void free_block(Header* h) noexcept { ::operator delete(static_cast<void*>(h)); }

// GiveUp: a thread's cache goes back to the orphans when the thread exits.
struct GiveUp {
  GiveUp() = default;
  GiveUp(const GiveUp&) = delete;
  GiveUp& operator=(const GiveUp&) = delete;
  ~GiveUp() {
    Cache* c = t_cache;
    t_cache = nullptr;
    t_state = CacheState::kGone;
    if (!c) return;
    for (int k = 0; k < kClasses; ++k) {
      for (Header* h = c->local[k]; h != nullptr;) {
        Header* next = h->next;
        free_block(h);
        h = next;
      }
      c->local[k] = nullptr;
      c->cached[k] = 0;
    }
    Orphans& o = orphans();
    MutexLock lock(o.mu);
    c->next_orphan = o.head;
    o.head = c;
  }
};

Cache* adopt() {
  Orphans& o = orphans();
  Cache* c = nullptr;
  {
    MutexLock lock(o.mu);
    c = o.head;
    if (c) o.head = c->next_orphan;
  }
  if (!c) c = new Cache();
  c->next_orphan = nullptr;
  thread_local GiveUp give_up;  // registers the exit hook on the thread's first allocation
  (void)give_up;
  t_cache = c;
  t_state = CacheState::kLive;
  return c;
}

// take_remote(c, k): the first block of c's remote list k, the rest (up to the cap) moved to the
// empty local list; null when the remote list is empty.
Header* take_remote(Cache& c, int k) noexcept {
  Header* first = c.remote[k].exchange(nullptr, std::memory_order_acquire);
  if (!first) return nullptr;
  Header* rest = first->next;
  std::uint32_t n = 0;
  Header** tail = &c.local[k];
  while (rest && n < kMaxCached) {
    *tail = rest;
    tail = &rest->next;
    rest = rest->next;
    ++n;
  }
  *tail = nullptr;
  c.cached[k] = n;
  while (rest) {  // beyond the cap
    Header* next = rest->next;
    free_block(rest);
    rest = next;
  }
  return first;
}

}  // namespace

void* pool_allocate(std::size_t bytes) {
  const int k = class_of(bytes);
  if (k < 0) return ::operator new(bytes);
  Cache* c = t_cache;
  if (!c && t_state == CacheState::kNone) c = adopt();
  Header* h = nullptr;
  if (c) {
    h = c->local[k];
    if (h) {
      c->local[k] = h->next;
      --c->cached[k];
    } else {
      h = take_remote(*c, k);
    }
  }
  if (!h) h = static_cast<Header*>(::operator new(sizeof(Header) + class_bytes(k)));
  h->owner = c;  // null: unowned (after this thread's cache was given up)
  h->next = nullptr;
  TANDEM_POOL_UNPOISON(h + 1, class_bytes(k));
  return h + 1;
}

void pool_deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  const int k = class_of(bytes);
  if (k < 0) {
    ::operator delete(p);
    return;
  }
  Header* h = static_cast<Header*>(p) - 1;
  Cache* owner = h->owner;
  if (!owner) {
    free_block(h);
    return;
  }
  if (owner == t_cache) {
    if (owner->cached[k] >= kMaxCached) {
      free_block(h);
      return;
    }
    TANDEM_POOL_POISON(p, class_bytes(k));
    h->next = owner->local[k];
    owner->local[k] = h;
    ++owner->cached[k];
    return;
  }
  TANDEM_POOL_POISON(p, class_bytes(k));  // before the push: the owner may reuse it at once
  Header* head = owner->remote[k].load(std::memory_order_relaxed);
  do {
    h->next = head;
  } while (!owner->remote[k].compare_exchange_weak(head, h, std::memory_order_release,
                                                   std::memory_order_relaxed));
}

}  // namespace tandem::serve::detail
