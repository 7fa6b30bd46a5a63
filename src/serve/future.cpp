// future.cpp — the sleeping and waking behind serve::Future (tandem/serve/future.h).
#include "tandem/serve/future.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace tandem::serve::detail {

#if defined(__linux__)
// The word is a naturally aligned 32-bit atomic, lock-free: the futex operates on its storage.
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

void wait_word(const std::atomic<std::uint32_t>& word, std::uint32_t old) noexcept {
  // The kernel re-reads the word under its futex lock and returns at once (EAGAIN) when it no
  // longer holds `old`: a wake between our check and this call is not lost. EINTR and EAGAIN
  // are spurious returns; the caller loops.
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, old,
                nullptr, nullptr, 0);
}

void wake_word(const std::atomic<std::uint32_t>& word) noexcept {
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
                INT32_MAX, nullptr, nullptr, 0);
}
#else
void wait_word(const std::atomic<std::uint32_t>& word, std::uint32_t old) noexcept {
  word.wait(old, std::memory_order_acquire);
}
void wake_word(const std::atomic<std::uint32_t>& word) noexcept {
  const_cast<std::atomic<std::uint32_t>&>(word).notify_all();
}
#endif

}  // namespace tandem::serve::detail
