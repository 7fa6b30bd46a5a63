// mutex.h — Mutex, MutexLock and CondVar: std::mutex and std::condition_variable annotated for
// clang's thread-safety analysis. Use these, never bare std::mutex, for shared state in tandem.
//
// Lock order across tandem (outer first; never take an earlier one while holding a later one):
//   Device registry  ->  StreamPool wait mutex  ->  EncodingLock (global, then per-stream)
//     ->  stream queue mutex / cuda graph launch mutex (CompletionSignal)  ->  event state mutex
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "tandem/thread_annotations.h"

namespace tandem {

class TANDEM_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() TANDEM_ACQUIRE() { mu_.lock(); }
  void unlock() TANDEM_RELEASE() { mu_.unlock(); }
  [[nodiscard]] bool try_lock() TANDEM_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // lock_spinning(): lock(), but first retries try_lock() for up to kSpin before sleeping. For
  // short critical sections under contention (the encoding lock around a launch: a few us),
  // where a sleeping waiter's wake-up (a system call on the unlocking thread, then a
  // reschedule) would cost more than the section itself.
  static constexpr std::chrono::microseconds kSpin{20};
  void lock_spinning() TANDEM_ACQUIRE();

 private:
  friend class CondVar;
  std::mutex mu_;
};

// cpu_relax(): one spin-wait hint to the CPU (x86 `pause`; nothing elsewhere), for loops that
// poll a word another thread or the GPU will change.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline void Mutex::lock_spinning() TANDEM_NO_THREAD_SAFETY_ANALYSIS {
  if (mu_.try_lock()) return;
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  do {
    for (int i = 0; i < 32; ++i) cpu_relax();
    if (mu_.try_lock()) return;
  } while (std::chrono::steady_clock::now() < deadline);
  mu_.lock();
}

// MutexLock: holds `mu` for its scope. Non-copyable.
class TANDEM_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) TANDEM_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() TANDEM_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// CondVar: a wait releases `mu` while blocked and holds it again on return. Spurious wake-ups
// happen: use the predicate forms.
class CondVar {
 public:
  template <class Pred>
  void wait(Mutex& mu, Pred pred) TANDEM_REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu.mu_, std::adopt_lock);
    cv_.wait(lk, pred);
    lk.release();
  }
  // wait_until(mu, deadline, pred): true when pred() held before the deadline.
  template <class Clock, class Dur, class Pred>
  [[nodiscard]] bool wait_until(Mutex& mu, std::chrono::time_point<Clock, Dur> deadline, Pred pred)
      TANDEM_REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu.mu_, std::adopt_lock);
    bool ok = cv_.wait_until(lk, deadline, pred);
    lk.release();
    return ok;
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace tandem
