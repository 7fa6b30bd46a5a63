// scheduler.h (private) — Scheduler: the queue, batch formation, executor and timer threads,
// stop, and the counters, independent of how a batch is run (RunBatch).
//
// Threads: `instances` executors (each leases its stream with Device::current_stream() when it
// starts) and one timer thread that completes requests whose deadline passes while queued.
//
// Locks (outer first): join_mu_ -> mu_. mu_ is a leaf with respect to the rest of tandem: it is
// never held while running a batch, calling into the device, or delivering a result.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "serve/histogram.h"
#include "serve/request.h"
#include "tandem/mutex.h"
#include "tandem/serve/batch_queue.h"

namespace tandem::serve::detail {

using RequestPtr = std::shared_ptr<Request>;

// RunBatch: runs one batch (requests of one sample shape, in queue order) on `stream` and leaves
// each request's output in it; throws to fail the whole batch. Called by executor threads.
using RunBatch = std::function<void(Stream& stream, const std::vector<RequestPtr>& batch)>;
// MakeRunBatch: called once by each executor thread when it starts (after its stream lease), on
// that thread; the RunBatch it returns is that executor's alone (it may own per-executor state,
// e.g. staging memory). May throw: a startup error.
using MakeRunBatch = std::function<RunBatch()>;

class Scheduler {
 public:
  // Validates options (Error(kConfig)), starts the threads, waits until every executor holds a
  // stream; rethrows an executor's startup error (after stopping the others).
  Scheduler(MakeRunBatch make_run, std::shared_ptr<Device> device, BatchQueueOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // submit(r, options): r is kNew with its input fields set. Completes it at once when it cannot
  // be run (rejected / cancelled), else queues it (blocking under kBlock when full).
  void submit(const RequestPtr& r, const SubmitOptions& options) TANDEM_EXCLUDES(mu_);
  void stop(StopMode mode) TANDEM_EXCLUDES(mu_, join_mu_);

  [[nodiscard]] BatchQueueMetrics metrics() const TANDEM_EXCLUDES(mu_);
  [[nodiscard]] const BatchQueueOptions& options() const { return options_; }
  [[nodiscard]] const std::shared_ptr<Device>& device() const { return device_; }

 private:
  struct KeyQueue {
    std::vector<std::deque<RequestPtr>> levels;  // one FIFO per priority level
  };
  // Deadlines of queued requests: a min-heap (std::push_heap with `later`) of weak references;
  // entries of requests that left the queue are dropped when they reach the top, or all at once
  // by compact_deadlines() when they outnumber the queued requests (so a high request rate with
  // long timeouts does not pin memory).
  struct DeadlineEntry {
    Clock::time_point when;
    std::weak_ptr<Request> request;
  };
  static bool later(const DeadlineEntry& a, const DeadlineEntry& b) { return a.when > b.when; }
  struct Finish {  // a terminal transition already won, to count and deliver outside mu_
    Finish(RequestPtr r, RequestState s, std::exception_ptr e, bool c = false)
        : request(std::move(r)), state(s), error(std::move(e)), counted(c) {}
    RequestPtr request;
    RequestState state;
    std::exception_ptr error;
    bool counted;  // the outcome was already counted (a batch's completions, in bulk)
  };

  void executor_main(int instance) TANDEM_EXCLUDES(mu_);
  void timer_main() TANDEM_EXCLUDES(mu_);
  // next_batch(): a batch to run (may be empty: look again), expired requests into `done`; sets
  // `exit` when the executor should leave. Waits on work_cv_ as needed.
  std::vector<RequestPtr> next_batch(std::vector<Finish>& done, bool& exit) TANDEM_REQUIRES(mu_);
  // take(): pops up to `target` rows of key `q`, in priority and FIFO order.
  std::vector<RequestPtr> take(KeyQueue& q, std::int64_t target, Clock::time_point now,
                               std::vector<Finish>& done) TANDEM_REQUIRES(mu_);
  void cancel_queued(std::vector<Finish>& done) TANDEM_REQUIRES(mu_);
  void enqueue(const RequestPtr& r) TANDEM_REQUIRES(mu_);
  void compact_deadlines() TANDEM_REQUIRES(mu_);
  // finish(): counts the outcome, then delivers. Precondition: the caller won the transition.
  void finish(Finish&& f) noexcept;
  void finish_all(std::vector<Finish>& done) noexcept;
  void complete_now(const RequestPtr& r, RequestState to, std::exception_ptr error) noexcept;
  [[nodiscard]] bool on_own_thread() const;

  const MakeRunBatch make_run_;
  const std::shared_ptr<Device> device_;
  const BatchQueueOptions options_;
  const std::int64_t dispatch_rows_;  // a batch this large goes at once (largest preferred size)

  mutable Mutex join_mu_;
  mutable Mutex mu_ TANDEM_ACQUIRED_AFTER(join_mu_);
  CondVar work_cv_;   // executors: work queued, a delay ran out, stopping
  CondVar space_cv_;  // blocked submitters: room in the queue, stopping
  CondVar timer_cv_;  // the timer thread: an earlier deadline, stopping
  CondVar ready_cv_;  // the constructor: an executor started (or failed to)

  std::map<std::vector<std::size_t>, KeyQueue> queues_ TANDEM_GUARDED_BY(mu_);
  std::size_t queued_ TANDEM_GUARDED_BY(mu_) = 0;  // requests in state kQueued
  std::vector<DeadlineEntry> deadlines_ TANDEM_GUARDED_BY(mu_);  // heap order: later()
  bool timer_wake_ TANDEM_GUARDED_BY(mu_) = false;  // an earlier deadline than the timer's
  std::uint64_t next_seq_ TANDEM_GUARDED_BY(mu_) = 1;
  bool stopping_ TANDEM_GUARDED_BY(mu_) = false;
  int running_executors_ TANDEM_GUARDED_BY(mu_) = 0;  // started, not yet left
  int started_ TANDEM_GUARDED_BY(mu_) = 0;            // executors past their stream lease
  std::exception_ptr startup_error_ TANDEM_GUARDED_BY(mu_);

  std::vector<std::thread> threads_ TANDEM_GUARDED_BY(join_mu_);
  bool joined_ TANDEM_GUARDED_BY(join_mu_) = false;
  // Thread ids of the executors and the timer; written before any of them can run a callback
  // (in the constructor, under mu_), read by on_own_thread() under mu_.
  std::vector<std::thread::id> own_ids_ TANDEM_GUARDED_BY(mu_);

  // Counters. Writers: submit() (submitted), finish() (one outcome per request), executors
  // (batches). relaxed: statistics; the outcome is counted before deliver(), and the caller
  // learns of it through the future/callback, which orders the increment before its reads.
  struct Counters {
    std::atomic<std::uint64_t> submitted{0}, completed{0}, rejected{0}, timed_out{0}, failed{0},
        cancelled{0}, batches{0}, batch_rows{0}, batch_requests{0};
  };
  Counters counters_;
  LatencyHistogram queue_time_;
  LatencyHistogram compute_time_;
};

}  // namespace tandem::serve::detail
