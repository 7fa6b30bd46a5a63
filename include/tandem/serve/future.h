// future.h — serve::Future<T>: the result of BatchQueue::enqueue(), a one-shot future whose
// completion costs the completing thread no system call unless the owner is asleep in wait().
//
// Note [Why not std::future]
// libstdc++'s std::promise::set_value goes through std::call_once -> pthread_once, whose slow
// path ends in an unconditional futex_wake system call: one system call per request on the
// executor thread (the queue's serial path), whether or not anyone waits, plus the promise's two
// allocations (shared state, result) freed on another thread. serve::Future keeps its state in
// the request itself (one allocation, freed by the Future's owner once it lets go) and completes
// it with one atomic exchange; only a waiter that announced itself asleep is woken (one
// futex_wake). The owner spins briefly, then sleeps on a futex (no sched_yield rounds: with
// more threads than cores, libstdc++'s std::atomic::wait yielded four times per wait).
//
// States of the word (`detail::FutureState::word`):
// | value     | meaning                                  | who moves it on                    |
// |-----------|------------------------------------------|------------------------------------|
// | kPending  | not completed, nobody asleep             | completer -> kReady; waiter ->     |
// |           |                                          | kSleeping (CAS, before it sleeps)  |
// | kSleeping | not completed, the owner sleeps or is    | completer -> kReady, then wakes    |
// |           | about to (futex wait on the word)        | the owner                          |
// | kReady    | value or error set (terminal)            | -                                  |
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

#include "tandem/error.h"

namespace tandem::serve {

class BatchQueue;

namespace detail {

// wait_word(word, old): sleeps while `word` holds `old` (a futex wait on Linux: no spinning, no
// sched_yield, unlike libstdc++'s std::atomic::wait); may return spuriously: callers re-check.
// wake_word(word): wakes every thread sleeping in wait_word() on `word` (one system call).
void wait_word(const std::atomic<std::uint32_t>& word, std::uint32_t old) noexcept;
// wait_word_until(word, old, deadline): the same, returning by `deadline` at the latest.
void wait_word_until(const std::atomic<std::uint32_t>& word, std::uint32_t old,
                     std::chrono::steady_clock::time_point deadline) noexcept;
void wake_word(const std::atomic<std::uint32_t>& word) noexcept;

// FutureState<T>: what a Future shares with the request that completes it (which holds it as a
// member: the Future's shared_ptr aliases the request's allocation).
template <class T>
struct FutureState {
  static constexpr std::uint32_t kPending = 0, kSleeping = 1, kReady = 2;
  // word: writers are the completer (complete(): one exchange to kReady, acq_rel: releases
  // value/error to the owner's acquire load, and reads kSleeping in the same RMW, so a waiter's
  // CAS to kSleeping is either seen here or fails against kReady: no lost wake-up) and the
  // owner's wait() (CAS kPending -> kSleeping, acquire on failure to see the value).
  std::atomic<std::uint32_t> word{kPending};
  // Written by the completer before its exchange; read by the owner after it loads kReady.
  T value{};
  std::exception_ptr error;

  // complete(): publishes value/error (set by the caller just before); wakes the owner when it
  // sleeps. Called exactly once, by the thread that won the request's terminal transition.
  void complete() noexcept {
    if (word.exchange(kReady, std::memory_order_acq_rel) == kSleeping) wake_word(word);
  }
  [[nodiscard]] bool ready() const noexcept {
    return word.load(std::memory_order_acquire) == kReady;
  }
  // wait() / wait_until(deadline): by the owner. Return whether the result is in.
  void wait() noexcept {
    if (announce_sleep()) return;
    // kSleeping now (set by us or by an earlier wait of this owner): sleep until it changes,
    // which only complete() does (to kReady).
    while (word.load(std::memory_order_acquire) == kSleeping) wait_word(word, kSleeping);
  }
  bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept {
    if (announce_sleep()) return true;
    while (word.load(std::memory_order_acquire) == kSleeping) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      wait_word_until(word, kSleeping, deadline);
    }
    return true;
  }

 private:
  // announce_sleep(): spins briefly (a result that is about to arrive costs neither side a
  // system call), then moves kPending -> kSleeping. True when the result is in.
  bool announce_sleep() noexcept {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    }
    std::uint32_t w = kPending;
    return !word.compare_exchange_strong(w, kSleeping, std::memory_order_acquire,
                                         std::memory_order_acquire) &&
           w == kReady;
  }
};

}  // namespace detail

// Future<T>: move-only, one owner. Not thread-safe: one thread at a time may call its methods
// (as std::future). Destroying a Future that is not ready is allowed: the request still runs,
// and its result is dropped when it completes.
template <class T>
class Future {
 public:
  Future() = default;  // invalid
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;

  // valid(): holds a result to come (false after get(), or when default-constructed/moved from).
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  // ready(): the result is in (never blocks). Precondition: valid().
  [[nodiscard]] bool ready() const noexcept { return state_->ready(); }
  // wait(): blocks until the result is in (spins briefly, then sleeps on a futex). Precondition:
  // valid(). Must not be called from one of the queue's own threads (a callback): it would wait
  // for itself.
  void wait() const noexcept { state_->wait(); }
  // wait_for(timeout): as wait(), for at most `timeout`. True when the result is in.
  // Precondition: valid().
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    return state_->wait_until(std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  // get(): waits, then returns the output or rethrows the request's error (as std::future::get:
  // Error(kTimeout), Error(kQueueFull), Error(kCancelled), a model error, ...). Leaves the Future
  // invalid. Throws Error(kInvalidArgument) when !valid().
  [[nodiscard]] T get() {
    if (!state_) throw Error(ErrorKind::kInvalidArgument, "serve::Future::get: the future is not valid (get() was called already, or it was moved from)");
    auto state = std::move(state_);
    state->wait();
    if (state->error) std::rethrow_exception(state->error);
    return std::move(state->value);
  }

 private:
  friend class BatchQueue;
  explicit Future(std::shared_ptr<detail::FutureState<T>> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::FutureState<T>> state_;
};

}  // namespace tandem::serve
