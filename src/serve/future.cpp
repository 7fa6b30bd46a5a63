// future.cpp — the sleeping and waking behind serve::Future (tandem/serve/future.h).
#include "tandem/serve/future.h"

#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <time.h>
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

void wait_word_until(const std::atomic<std::uint32_t>& word, std::uint32_t old,
                     std::chrono::steady_clock::time_point deadline) noexcept {
  const auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec rel{};
  rel.tv_sec = static_cast<time_t>(ns / 1000000000);
  rel.tv_nsec = static_cast<long>(ns % 1000000000);
  // FUTEX_WAIT takes a relative timeout (CLOCK_MONOTONIC); ETIMEDOUT: the caller re-checks.
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, old,
                &rel, nullptr, 0);
}

void wake_word(const std::atomic<std::uint32_t>& word) noexcept {
  (void)syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
                INT32_MAX, nullptr, nullptr, 0);
}
#else
void wait_word(const std::atomic<std::uint32_t>& word, std::uint32_t old) noexcept {
  word.wait(old, std::memory_order_acquire);
}
void wait_word_until(const std::atomic<std::uint32_t>& word, std::uint32_t old,
                     std::chrono::steady_clock::time_point deadline) noexcept {
  // No timed wait on std::atomic: poll.
  while (word.load(std::memory_order_acquire) == old && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}
void wake_word(const std::atomic<std::uint32_t>& word) noexcept {
  const_cast<std::atomic<std::uint32_t>&>(word).notify_all();
}
#endif

}  // namespace tandem::serve::detail
