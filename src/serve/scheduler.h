// scheduler.h (private) — Scheduler: the queue, batch formation, executor and timer threads,
// stop, and the counters, independent of how a batch is run (RunBatch).
//
// Threads: `instances` executors (each leases its stream with Device::current_stream() when it
// starts) and one timer thread that completes requests whose deadline passes while queued.
//
// Locks (outer first): join_mu_ -> mu_. mu_ is a leaf with respect to the rest of tandem: it is
// never held while running a batch, calling into the device, or delivering a result.
//
// Note [Batch queue intake]
// One mutex taken by every submit() capped the queue near 1M requests/s on a 16-core host (64
// submitters convoying on mu_ with the executors). So a request without a deadline is admitted
// without mu_: submit() reserves a place in `admitted_` (an atomic count of requests admitted and
// not yet taken, timed out or cancelled: the capacity check, exact for both paths) and pushes the
// request onto `intake_`, a lock-free LIFO stack. Whoever next holds mu_ for batch work
// (executors before choosing a batch, the timer, stop(), a slow-path submit) drains the stack into
// the priority FIFOs in push order (drain_intake()). Requests with a deadline, and any submit
// that finds the queue full, take the locked path, which drains the intake first (so one
// thread's requests keep their order). Wake-ups: an executor that is about to wait counts itself
// in `idle_executors_` (seq_cst) and re-checks `intake_` in its wait predicate; a submitter reads
// `idle_executors_` (seq_cst) after its push and, when an executor may be waiting, notifies
// under mu_. Either the submitter sees the count or the executor sees the push: no lost wake-up.
// Only one submitter notifies per round, the one that takes the wake token `wake_pending_`
// (false -> true, seq_cst); the others skip mu_ (64 submitters each locking mu_ to notify the
// same sleeping executor convoyed on it). Executors clear the token (seq_cst) under mu_ before
// every look at the intake: at the top of each round of next_batch(), before draining, and in
// their wait predicates, before testing intake_ (a woken executor that finds nothing and sleeps
// again must not keep the token: the model check found that lost wake-up). A submitter that
// finds the token taken pushed before the next clear, so the look after it sees the push; and
// the token's holder notifies under mu_, so some executor clears and looks after the token was
// taken: one that was waiting wakes (or times out) and evaluates its predicate, and one that
// was not (no executor waits inside a critical section) comes back to next_batch() after its
// batch. (An executor leaves only once stopping, which the submitter's re-read of the stop flag
// covers.)
// Executors are not woken per request either: place() does not notify; a locked submit
// notifies once after it places its request, and an executor that takes a batch and leaves
// requests queued notifies one other executor (a hand-off), so idle executors do not all wake
// to fight over one drained intake.
// Stop: stop() sets `stopping_flag_` (seq_cst) and then drains; a submitter re-reads the flag
// after its push and, when set, settles the intake itself (settle_after_stop()): queued for the
// executors still running, cancelled when none is left or the stop cancels. Either stop()'s
// drain sees the push or the submitter sees the flag: no request is stranded.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
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

// this_thread_number(): a number per thread, distinct among live threads, from 1 (for grouping a
// batch's completions by submitter, sharding counters, and picking a thread's shard).
std::uint64_t this_thread_number() noexcept;

// check_options(o): Error(kConfig) naming the first field of `o` out of range, and its range.
void check_options(const BatchQueueOptions& o);

// QueueStats: the counters and histograms of a whole BatchQueue, shared by its shards'
// Schedulers (Note [Batch queue shards] in batch_queue.h), so one snapshot covers them all.
// Writers: submit() (submitted), finish() (one outcome per request), executors (batches and the
// histograms). relaxed: statistics; the outcome is counted before deliver(), and the caller
// learns of it through the future/callback, which orders the increment before its reads.
// `submitted` is split into cache-line shards picked by the submitting thread's number (one
// counter that every submit() increments bounced its line between all submitters' cores, and
// with it the executors' counters next to it); metrics() adds them up. A thread that submitted
// reads its own increments back; others, as any relaxed counter.
struct QueueStats {
  struct alignas(64) SubmittedShard {
    std::atomic<std::uint64_t> n{0};
  };
  static constexpr std::size_t kSubmittedShards = 16;
  struct Counters {
    std::array<SubmittedShard, kSubmittedShards> submitted;
    alignas(64) std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> rejected{0}, timed_out{0}, failed{0}, cancelled{0}, batches{0},
        batch_rows{0}, batch_requests{0};
  };
  Counters counters;
  LatencyHistogram queue_time;
  LatencyHistogram compute_time;
  LatencyHistogram take_time;
  LatencyHistogram complete_time;

  // metrics(): a snapshot of everything but `queued` (which each shard knows: Scheduler::admitted).
  [[nodiscard]] BatchQueueMetrics metrics() const;
};

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
  // stream; rethrows an executor's startup error (after stopping the others). Counts into
  // `stats` (shared with the other shards of its queue; null: its own).
  Scheduler(MakeRunBatch make_run, std::shared_ptr<Device> device, BatchQueueOptions options,
            std::shared_ptr<QueueStats> stats = nullptr);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // submit(r, options): r is kNew with its input fields set. Completes it at once when it cannot
  // be run (rejected / cancelled), else queues it (blocking under kBlock when full).
  void submit(const RequestPtr& r, const SubmitOptions& options) TANDEM_EXCLUDES(mu_);
  // stop(mode): check_not_own_thread(), begin_stop(mode), then join().
  void stop(StopMode mode) TANDEM_EXCLUDES(mu_, join_mu_);
  // begin_stop(mode): stops taking requests and settles what is queued (cancelled on kCancel),
  // wakes every thread of the queue, and returns without waiting for them (BatchQueue stops
  // every shard this way before it joins any). Idempotent; a later kCancel cancels what a drain
  // has left queued.
  void begin_stop(StopMode mode) TANDEM_EXCLUDES(mu_);
  // join(): waits for the executors (their running batches) and the timer to leave; after
  // begin_stop() only (else it waits forever). Must not run on the queue's own threads.
  void join() TANDEM_EXCLUDES(mu_, join_mu_);

  // stats(): the QueueStats this Scheduler counts into (all shards' when shared).
  [[nodiscard]] const QueueStats& stats() const noexcept { return *stats_; }
  // admitted(): requests admitted here (in the intake or queued) and not yet taken, timed out
  // or cancelled: BatchQueueMetrics::queued of this shard (a gauge).
  [[nodiscard]] std::size_t admitted() const noexcept {
    return admitted_.load(std::memory_order_seq_cst);
  }
  // check_not_own_thread(): Error(kInvalidArgument) when the caller is one of this Scheduler's
  // executors or its timer (a callback), where stopping the queue would wait for itself.
  void check_not_own_thread() const TANDEM_EXCLUDES(mu_);
  [[nodiscard]] const std::shared_ptr<Device>& device() const { return device_; }

 private:
  struct KeyQueue {
    std::vector<std::deque<RequestPtr>> levels;  // one FIFO per priority level
    // Rows of its requests in state kQueued (tombstones excluded): maintained by place(),
    // take() and the timer, so that next_batch() need not walk the FIFOs to count the rows of
    // a batch that cannot be full.
    std::int64_t rows = 0;
  };
  // SampleLess: an order of sample shapes (rank, then dimensions) for the queues_ map.
  struct SampleLess {
    bool operator()(const nn::Shape& a, const nn::Shape& b) const noexcept {
      if (a.rank() != b.rank()) return a.rank() < b.rank();
      const auto da = a.dims(), db = b.dims();
      return std::lexicographical_compare(da.begin(), da.end(), db.begin(), db.end());
    }
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
  // place(r, enqueued): puts an admitted request (counted in admitted_) into its FIFO. Does not
  // notify an executor: the caller does (Note [Batch queue intake]).
  void place(RequestPtr r, Clock::time_point enqueued) TANDEM_REQUIRES(mu_);
  // drain_intake(): moves every pushed request into its FIFO, in push order.
  void drain_intake() TANDEM_REQUIRES(mu_);
  // drain_intake_settled(done): drain_intake(); then, when stopping and no executor will run
  // them (none left, or the stop cancels), cancels what is queued (into `done`).
  void drain_intake_settled(std::vector<Finish>& done) TANDEM_REQUIRES(mu_);
  // dequeued(): one request left the queued state (taken, timed out, cancelled).
  void dequeued() TANDEM_REQUIRES(mu_);
  // try_admit(): reserves a place in admitted_; false when the queue is full.
  [[nodiscard]] bool try_admit() noexcept;
  // settle_after_stop(): a submitter that pushed and then saw stopping_flag_ (Note [Batch queue
  // intake]).
  void settle_after_stop() TANDEM_EXCLUDES(mu_);
  [[nodiscard]] bool intake_empty() const noexcept {
    return intake_.load(std::memory_order_seq_cst) == nullptr;
  }
  void compact_deadlines() TANDEM_REQUIRES(mu_);
  // finish(): counts the outcome, then delivers. Precondition: the caller won the transition.
  void finish(Finish&& f) noexcept;
  void finish_all(std::vector<Finish>& done) noexcept;
  void complete_now(const RequestPtr& r, RequestState to, std::exception_ptr error) noexcept;

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

  std::map<nn::Shape, KeyQueue, SampleLess> queues_ TANDEM_GUARDED_BY(mu_);
  // The key and queue of the last place() (a run of same-shape requests skips the map lookup):
  // pointers into a node of queues_, reset wherever a key is erased (next_batch(),
  // cancel_queued()).
  const nn::Shape* last_key_ TANDEM_GUARDED_BY(mu_) = nullptr;
  KeyQueue* last_q_ TANDEM_GUARDED_BY(mu_) = nullptr;
  std::size_t queued_ TANDEM_GUARDED_BY(mu_) = 0;  // requests in state kQueued (in queues_)
  std::optional<StopMode> stop_mode_ TANDEM_GUARDED_BY(mu_);  // set by the first stop()

  // Note [Batch queue intake]. intake_: pushers are fast-path submitters (CAS, release on
  // success; seq_cst, paired with their later seq_cst read of stopping_flag_ and
  // idle_executors_); the drainer exchanges it to null under mu_ (seq_cst: acquire of the
  // pushers' writes to the requests).
  std::atomic<Request*> intake_{nullptr};
  // admitted_: requests admitted (in the intake or queued) and not yet taken, timed out or
  // cancelled. Writers: try_admit() (any submitter, a seq_cst CAS below the limit) and
  // dequeued() (under mu_). A capacity count: it never exceeds max_queue_size.
  std::atomic<std::size_t> admitted_{0};
  // idle_executors_: executors inside a work_cv_ wait (or about to enter one). Writers: the
  // executors under mu_, seq_cst; read (seq_cst) by fast-path submitters after their push.
  std::atomic<int> idle_executors_{0};
  // wake_pending_: the wake token (Note [Batch queue intake]). Set by the fast-path submitter
  // that notifies (load, then exchange, seq_cst), cleared by executors at the top of each round
  // of next_batch() under mu_ (seq_cst, before their seq_cst exchange of intake_). Its own cache
  // line: every submitter reads it.
  alignas(64) std::atomic<bool> wake_pending_{false};
  // stopping_flag_: stopping_ for readers without mu_. Written once by stop() under mu_
  // (seq_cst), before it drains the intake; read (seq_cst) by fast-path submitters.
  alignas(64) std::atomic<bool> stopping_flag_{false};
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
  // (in the constructor, under mu_), read by check_not_own_thread() under mu_.
  std::vector<std::thread::id> own_ids_ TANDEM_GUARDED_BY(mu_);

  // The queue's statistics (QueueStats), and names for its parts.
  const std::shared_ptr<QueueStats> stats_;
  static constexpr std::size_t kSubmittedShards = QueueStats::kSubmittedShards;
  QueueStats::Counters& counters_ = stats_->counters;
  LatencyHistogram& queue_time_ = stats_->queue_time;
  LatencyHistogram& compute_time_ = stats_->compute_time;
  LatencyHistogram& take_time_ = stats_->take_time;
  LatencyHistogram& complete_time_ = stats_->complete_time;
};

}  // namespace tandem::serve::detail
