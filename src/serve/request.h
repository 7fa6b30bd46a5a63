// request.h (private) — Request: one submitted request as the scheduler and the executors see it.
//
// The public state table is in tandem/serve/batch_queue.h; here are the rules that keep it:
//  - `state` changes only by compare-and-swap from the state the caller expects (transition()),
//    so each arrow of the table is taken at most once and each terminal state is entered once;
//    whoever wins the terminal CAS (and only they) counts the outcome and calls deliver().
//  - Fields set by submit() before the request is shared are read-only afterwards.
//  - `seq` and `enqueued` are written and read under Scheduler::mu_ only.
//  - Output fields and the inputs are touched by the executor that moved the request to
//    kRunning, and by deliver() after a terminal state: never at the same time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <vector>

#include "tandem/event.h"
#include "tandem/serve/batch_queue.h"

namespace tandem::serve::detail {

using Clock = std::chrono::steady_clock;

enum class RequestState : int {
  kNew,        // inside submit(), not yet visible to other threads
  kBlocked,    // submit() waits for room (Overflow::kBlock)
  kQueued,     // in the queue
  kRunning,    // in a batch
  kCompleted,  // terminal states from here on
  kFailed,
  kTimedOut,
  kCancelled,
  kRejected,
};

[[nodiscard]] const char* to_string(RequestState s) noexcept;
[[nodiscard]] inline bool is_terminal(RequestState s) noexcept {
  return s >= RequestState::kCompleted;
}

// Note [Request layout]
// An executor drains, places and takes each request under Scheduler::mu_, and the request was
// just written on its submitter's core: every cache line of it that the scheduler touches there
// is a miss, and executors held mu_ 0.3-0.4 us per request on the 16-core GPU host
// (docs/benchmarks.md, "Graph batching"). So the fields the scheduler uses under mu_ come first,
// packed into the object's first 64 bytes (at most two cache lines: the object is not
// over-aligned, since an alignas(64) type is allocated with posix_memalign, which took 8% of the
// process's CPU samples at 64 x 16 on the GPU host), with the rest of what it reads there
// (submission time, deadline, sample shape) right after; the tensors, which only the running
// executor and deliver() touch, come last. Measured (aligned): executors' take time -20-35%;
// throughput unchanged within the H100's noise.
class Request {
 public:
  virtual ~Request() = default;

  // ---- Hot under Scheduler::mu_ (the first 64 bytes, with the vtable pointer) ----
 private:
  std::atomic<RequestState> state_{RequestState::kNew};  // see state()

 public:
  int priority = 0;        // set by submit() before the request is shared; read-only afterwards
  std::int64_t row_count = 0;  // shape[0]: set by the scheduler's submit() (nrows())
  // The intake (Note [Batch queue intake] in scheduler.h): written by the submitting thread
  // before the release CAS that publishes the request, read and cleared by the thread that
  // drains the intake (under Scheduler::mu_) after its acquire exchange.
  Request* intake_next = nullptr;
  std::shared_ptr<Request> intake_self;  // the intake's reference, dropped when drained
  // Under Scheduler::mu_ only (no annotation: the mutex belongs to another object).
  std::uint64_t seq = 0;
  Clock::time_point enqueued{};

  // ---- Set by submit() before the request is shared; read-only afterwards ----
  Clock::time_point submitted{};
  std::optional<Clock::time_point> deadline;
  std::uint64_t submitter = 0;  // the submitting thread (a per-thread number): completion order
  bool host = false;            // host input (host_in), host output (host_out)
  nn::Shape sample;  // shape[1..]: requests merge only when these are equal (inline: no allocation)
  nn::Shape shape;   // input shape, shape[0] = rows (validated by the scheduler)
  nn::Tensor device_in;             // when !host
  std::unique_ptr<Event> in_ready;  // recorded on the submitter's stream when it was busy
  nn::HostTensor host_in;           // when host

  // ---- Written by the running executor, read by deliver() ----
  nn::Tensor device_out;
  nn::HostTensor host_out;

  [[nodiscard]] std::size_t rows() const { return shape.rank() == 0 ? 0 : shape[0]; }
  // nrows(): rows() as the scheduler's submit() recorded it on the hot line (0 before).
  [[nodiscard]] std::int64_t nrows() const { return row_count; }

  // state: writers are submit(), the executors, the timer thread and stop(), all through
  // transition(). acq_rel CAS: the winner of a transition sees everything the previous owner
  // wrote (the executor's outputs before kCompleted are seen by the thread that delivers).
  [[nodiscard]] RequestState state() const { return state_.load(std::memory_order_acquire); }
  [[nodiscard]] bool transition(RequestState from, RequestState to) {
    return state_.compare_exchange_strong(from, to, std::memory_order_acq_rel,
                                          std::memory_order_acquire);
  }

  // deliver(error): completes the future or calls the callback, with the output when `error` is
  // null. Called exactly once, by the winner of the terminal transition, never under a lock.
  virtual void deliver(std::exception_ptr error) noexcept = 0;

  // release_buffers(): drops inputs (and outputs not delivered); after deliver(). Touches only
  // what holds memory (assigning `= {}` built and copied a zeroed temporary per field: 4.7% of
  // the process's CPU samples at 2 clients x 128, cpu noop model, 2-core VM).
  void release_buffers() noexcept {
    if (device_in.defined()) device_in = nn::Tensor();
    in_ready.reset();
    std::vector<float>().swap(host_in.values);
    if (device_out.defined()) device_out = nn::Tensor();
    std::vector<float>().swap(host_out.values);
  }
};

}  // namespace tandem::serve::detail
