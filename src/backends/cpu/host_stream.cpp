#include "backends/cpu/host_stream.h"

#include <chrono>
#include <utility>

#include "runtime/device_state.h"
#include "tandem/error.h"

namespace tandem::backends {

HostStream::HostStream(std::string label, bool caller_runs)
    : label_(std::move(label)), caller_runs_(caller_runs) {
  MutexLock lock(worker_mu_);
  worker_ = std::thread([this] { run(); });
}

HostStream::~HostStream() { stop(StopMode::kDrain); }

void HostStream::begin_encoding() { recording_ = CommandBuffer{}; }

void HostStream::dispatch(std::function<void()> fn) { recording_.fns.push_back(std::move(fn)); }

void HostStream::end_encoding() {
  if (recording_.fns.empty()) return;
  if (!enqueue(std::exchange(recording_, CommandBuffer{}))) {
    throw Error(ErrorKind::kDeviceClosed,
                label_ + " is stopped (device closed or process exiting); the work was not run");
  }
}

void HostStream::submit(std::function<void()> fn, bool always) noexcept {
  CommandBuffer cb;
  cb.always = always;
  cb.fns.push_back(std::move(fn));
  std::function<void()> inline_fn;
  {
    MutexLock lock(mu_);
    // While the process exits (quiesced), frees and markers still go to the worker, which runs
    // them after the buffer in hand: dropping a free would lose its memory.
    if (accepting_ || (always && quiesced_ && !worker_gone_)) {
      queue_.push_back(std::move(cb));
      ++submitted_;
      work_cv_.notify_one();
      return;
    }
    if (always && (drained_ || worker_gone_)) inline_fn = std::move(cb.fns.front());
  }
  // Drained, or the worker has left: nothing else can run on this stream, so stream order is
  // trivially kept.
  if (inline_fn) {
    try {
      inline_fn();
    } catch (...) {
    }
  }
}

bool HostStream::enqueue(CommandBuffer cb) {
  MutexLock lock(mu_);
  if (!accepting_) return false;
  queue_.push_back(std::move(cb));
  ++submitted_;
  work_cv_.notify_one();
  return true;
}

// Note [Caller runs]
// A thread waiting for its stream would otherwise sleep while the worker wakes up, runs the
// buffer and wakes it again: on a small forward the two wake-ups cost more than the work. So
// synchronize() first runs queued buffers itself while no buffer is running. It only takes
// buffers submitted before the call (`target`), so a stream fed by another thread cannot keep it
// forever. The worker may be woken for a buffer a helper took; it finds the queue empty and
// sleeps again.
void HostStream::synchronize() {
  std::uint64_t target = 0;
  {
    MutexLock lock(mu_);
    target = submitted_;
  }
  while (caller_runs_) {
    CommandBuffer cb;
    bool faulted = false;
    {
      MutexLock lock(mu_);
      if (completed_ >= target || halt_ || !take_next(cb, faulted)) break;
    }
    execute(cb, faulted);
  }
  std::exception_ptr err;
  bool park = false;
  {
    MutexLock lock(mu_);
    done_cv_.wait(mu_, [&]() TANDEM_REQUIRES(mu_) { return completed_ >= target || halt_; });
    if (completed_ < target && !quiesced_) {
      throw Error(ErrorKind::kDeviceClosed,
                  label_ + " stopped before " + std::to_string(target - completed_) +
                      " command buffer(s) ran (device closed)");
    }
    park = completed_ < target;
    err = std::exchange(error_, nullptr);
  }
  // The process is exiting (Note [Device shutdown]): wait for the end instead of failing in the
  // middle of exit with an exception the caller cannot expect.
  if (park) detail::park_until_process_exit();
  if (err) std::rethrow_exception(err);
}

bool HostStream::query() const {
  MutexLock lock(mu_);
  return completed_ == submitted_;
}

std::exception_ptr HostStream::error() const {
  MutexLock lock(mu_);
  return error_;
}

void HostStream::stop(StopMode mode) {
  // Work dropped by kQuiesce, destroyed outside mu_: its captures may free buffers, whose frees
  // are submitted to this stream (or another) and take mu_.
  std::deque<CommandBuffer> dropped;
  {
    MutexLock lock(mu_);
    accepting_ = false;
    if (mode == StopMode::kDrain) {
      done_cv_.wait(mu_, [&]() TANDEM_REQUIRES(mu_) { return completed_ == submitted_ || halt_; });
      drained_ = !halt_;
    } else {
      // Quiesce: drop the queued work (it will never run) but keep the `always` buffers (frees,
      // event markers): they touch no user data and are cheap, and a dropped free would lose its
      // memory (LeakSanitizer reports it at exit).
      std::deque<CommandBuffer> kept;
      for (auto& cb : queue_) (cb.always ? kept : dropped).push_back(std::move(cb));
      queue_ = std::move(kept);
      quiesced_ = true;
    }
    halt_ = true;
    work_cv_.notify_all();
    done_cv_.notify_all();
  }
  if (mode == StopMode::kQuiesce) {
    dropped.clear();
    // Let the buffer in hand and the frees finish (bounded: a kernel may never return).
    MutexLock lock(mu_);
    (void)done_cv_.wait_until(
        mu_, std::chrono::steady_clock::now() + std::chrono::seconds(1),
        [&]() TANDEM_REQUIRES(mu_) { return worker_gone_ || (!running_ && queue_.empty()); });
  }
  MutexLock lock(worker_mu_);
  if (!worker_.joinable()) return;
  if (mode == StopMode::kQuiesce || worker_.get_id() == std::this_thread::get_id()) {
    worker_.detach();  // it returns by itself once the buffer in hand is done
  } else {
    worker_.join();
  }
}

bool HostStream::take_next(CommandBuffer& cb, bool& faulted) {
  if (queue_.empty() || running_) return false;
  cb = std::move(queue_.front());
  queue_.pop_front();
  running_ = true;
  faulted = error_ != nullptr;
  return true;
}

void HostStream::execute(CommandBuffer& cb, bool faulted) {
  std::exception_ptr err;
  if (!faulted || cb.always) {
    for (auto& fn : cb.fns) {
      try {
        fn();
      } catch (...) {
        err = std::current_exception();
        break;
      }
    }
  }
  cb.fns.clear();  // destroy captured state outside the lock
  MutexLock lock(mu_);
  if (err && !error_) error_ = err;
  ++completed_;
  running_ = false;
  done_cv_.notify_all();
  // A buffer queued while this one ran waits for the worker, which slept through it if a helper
  // ran this one.
  if (!queue_.empty()) work_cv_.notify_one();
}

void HostStream::run() {
  for (;;) {
    CommandBuffer cb;
    bool faulted = false;
    {
      MutexLock lock(mu_);
      work_cv_.wait(mu_, [&]() TANDEM_REQUIRES(mu_) {
        return (!queue_.empty() && !running_) || (halt_ && queue_.empty());
      });
      if (queue_.empty()) {  // halted: drained, or quiesced and the frees kept have run
        worker_gone_ = true;
        done_cv_.notify_all();
        return;
      }
      (void)take_next(cb, faulted);
    }
    execute(cb, faulted);
  }
}

}  // namespace tandem::backends
