// scheduler.cpp — the queue, batch formation (Note [Dynamic batching] in batch_queue.h), the
// executor and timer threads, stop(). See scheduler.h for the locks.
#include "serve/scheduler.h"

#include <algorithm>
#include <utility>
#include <string>
#include <typeinfo>

#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::serve::detail {

const char* to_string(RequestState s) noexcept {
  switch (s) {
    case RequestState::kNew: return "new";
    case RequestState::kBlocked: return "blocked";
    case RequestState::kQueued: return "queued";
    case RequestState::kRunning: return "running";
    case RequestState::kCompleted: return "completed";
    case RequestState::kFailed: return "failed";
    case RequestState::kTimedOut: return "timed out";
    case RequestState::kCancelled: return "cancelled";
    case RequestState::kRejected: return "rejected";
  }
  return "?";
}

namespace {

std::exception_ptr error(ErrorKind kind, const std::string& message) {
  return std::make_exception_ptr(Error(kind, message));
}

double us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// own_copy(e): a tandem::Error (exactly that type) copied into a new exception object, else e.
// Each request of a failed batch gets its own object, so no two callers' threads share (and race
// to free) one: libstdc++'s exception_ptr reference count is invisible to ThreadSanitizer, and a
// shared object would make every caller's tsan run report the free.
std::exception_ptr own_copy(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& x) {
    if (typeid(x) == typeid(Error)) return std::make_exception_ptr(Error(x.kind(), x.what()));
  } catch (...) {
  }
  return e;
}

std::exception_ptr timeout_error(const Request& r, Clock::time_point now) {
  return error(ErrorKind::kTimeout,
               "request timed out after " +
                   std::to_string(static_cast<long long>(us_between(r.submitted, now))) +
                   " us in the BatchQueue, before it ran (it was not run); raise its timeout, "
                   "lower the load, or add instances");
}

// CompletionOrder: the order in which an executor completes a batch (Note [Dynamic batching]):
// grouped by submitting thread, each thread's newest request first; groups in the order of their
// newest request, newest first. O(n): one pass from the newest request, with an open-addressing
// table from submitter to group (sorting (submitter, index) pairs had cost ~100 instructions per
// request at batch 200). One per executor; of() reuses its memory.
class CompletionOrder {
 public:
  // of(batch): the indices of `batch` in completion order; valid until the next call.
  const std::vector<std::uint32_t>& of(const std::vector<RequestPtr>& batch) {
    const auto n = static_cast<std::uint32_t>(batch.size());
    std::size_t size = 16;
    while (size < 2 * static_cast<std::size_t>(n)) size *= 2;
    table_.assign(size, Slot{0, kNone});
    groups_.clear();
    older_.assign(n, kNone);
    for (std::uint32_t i = n; i-- > 0;) {
      const std::uint64_t s = batch[i]->submitter;
      std::size_t h = static_cast<std::size_t>((s * 0x9E3779B97F4A7C15ull) >> 32) & (size - 1);
      while (table_[h].group != kNone && table_[h].submitter != s) h = (h + 1) & (size - 1);
      if (table_[h].group == kNone) {
        table_[h] = Slot{s, static_cast<std::uint32_t>(groups_.size())};
        groups_.push_back(Group{i, i});
      } else {
        Group& g = groups_[table_[h].group];
        older_[g.oldest] = i;
        g.oldest = i;
      }
    }
    order_.clear();
    for (const Group& g : groups_) {
      for (std::uint32_t i = g.newest; i != kNone; i = older_[i]) order_.push_back(i);
    }
    return order_;
  }

 private:
  static constexpr std::uint32_t kNone = 0xffffffffu;
  struct Slot {
    std::uint64_t submitter;
    std::uint32_t group;  // kNone: free
  };
  struct Group {
    std::uint32_t newest, oldest;  // indices; older_ links newest -> oldest
  };
  std::vector<Slot> table_;
  std::vector<Group> groups_;
  std::vector<std::uint32_t> older_;
  std::vector<std::uint32_t> order_;
};

std::int64_t largest_preferred_at_most(const BatchQueueOptions& o, std::int64_t rows) {
  std::int64_t best = 0;
  for (auto p : o.preferred_batch_sizes) {
    if (p <= rows) best = std::max(best, p);
  }
  return best;
}

}  // namespace

std::uint64_t this_thread_number() noexcept {
  static std::atomic<std::uint64_t> next{1};  // relaxed: only distinctness matters
  thread_local const std::uint64_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

void check_options(const BatchQueueOptions& o) {
  auto bad = [](const std::string& field, const std::string& value, const std::string& allowed) {
    throw Error(ErrorKind::kConfig, "BatchQueueOptions." + field + " = " + value +
                                        " is out of range; allowed: " + allowed);
  };
  if (o.max_batch_size < 1) bad("max_batch_size", std::to_string(o.max_batch_size), ">= 1");
  for (auto p : o.preferred_batch_sizes) {
    if (p < 1 || p > o.max_batch_size) {
      bad("preferred_batch_sizes", std::to_string(p),
          "each in [1, max_batch_size = " + std::to_string(o.max_batch_size) + "]");
    }
  }
  if (o.max_queue_delay.count() < 0) {
    bad("max_queue_delay", std::to_string(o.max_queue_delay.count()) + " us", ">= 0");
  }
  if (o.priority_levels < 1 || o.priority_levels > 64) {
    bad("priority_levels", std::to_string(o.priority_levels), "1..64");
  }
  if (o.default_timeout && o.default_timeout->count() <= 0) {
    bad("default_timeout", std::to_string(o.default_timeout->count()) + " us",
        "> 0, or nullopt for none");
  }
  if (o.max_queue_size < 1) bad("max_queue_size", "0", ">= 1");
  if (o.instances < 1 || o.instances > 63) {
    bad("instances", std::to_string(o.instances),
        "1..63 (each takes a worker stream of the device's pool)");
  }
}

// ---- construction and stop ---------------------------------------------------------------------

Scheduler::Scheduler(MakeRunBatch make_run, std::shared_ptr<Device> device,
                     BatchQueueOptions options, std::shared_ptr<QueueStats> stats)
    : make_run_(std::move(make_run)),
      device_(std::move(device)),
      options_((check_options(options), std::move(options))),
      dispatch_rows_(options_.preferred_batch_sizes.empty()
                         ? options_.max_batch_size
                         : *std::max_element(options_.preferred_batch_sizes.begin(),
                                             options_.preferred_batch_sizes.end())),
      stats_(stats ? std::move(stats) : std::make_shared<QueueStats>()) {
  if (!device_) throw Error(ErrorKind::kInvalidArgument, "BatchQueue: device is null");
  if (!make_run_) throw Error(ErrorKind::kInvalidArgument, "BatchQueue: forward function is empty");
  {
    MutexLock join(join_mu_);
    MutexLock lock(mu_);
    for (int i = 0; i < options_.instances; ++i) {
      threads_.emplace_back([this, i] { executor_main(i); });
      own_ids_.push_back(threads_.back().get_id());
    }
    threads_.emplace_back([this] { timer_main(); });
    own_ids_.push_back(threads_.back().get_id());
    running_executors_ = options_.instances;
    ready_cv_.wait(mu_, [&]() TANDEM_REQUIRES(mu_) {
      return started_ == options_.instances || startup_error_ != nullptr;
    });
  }
  std::exception_ptr err;
  {
    MutexLock lock(mu_);
    err = startup_error_;
  }
  if (err) {
    stop(StopMode::kCancel);
    std::rethrow_exception(err);
  }
}

Scheduler::~Scheduler() {
  try {
    stop(options_.stop_mode);
  } catch (...) {
    // stop() throws only on a queue thread; a destructor there is a documented misuse.
  }
}

void Scheduler::check_not_own_thread() const {
  MutexLock lock(mu_);
  const auto me = std::this_thread::get_id();
  if (std::find(own_ids_.begin(), own_ids_.end(), me) != own_ids_.end()) {
    throw Error(ErrorKind::kInvalidArgument,
                "BatchQueue::stop() called on one of the queue's own threads (from a completion "
                "callback?); it would wait for itself. Stop the queue from another thread");
  }
}

void Scheduler::stop(StopMode mode) {
  check_not_own_thread();
  begin_stop(mode);
  join();
}

void Scheduler::begin_stop(StopMode mode) {
  std::vector<Finish> done;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    if (!stop_mode_ || mode == StopMode::kCancel) stop_mode_ = mode;
    stopping_flag_.store(true, std::memory_order_seq_cst);  // before the drain: Note [Batch queue intake]
    drain_intake();
    // Cancel what no executor will run: on kCancel, or on a repeated stop after they all left.
    if (mode == StopMode::kCancel || running_executors_ == 0) cancel_queued(done);
    work_cv_.notify_all();
    space_cv_.notify_all();
    timer_cv_.notify_all();
  }
  finish_all(done);
}

void Scheduler::join() {
  MutexLock lock(join_mu_);
  if (joined_) return;
  for (auto& t : threads_) t.join();
  joined_ = true;
}

void Scheduler::cancel_queued(std::vector<Finish>& done) {
  for (auto& [key, q] : queues_) {
    for (auto& level : q.levels) {
      for (auto& r : level) {
        if (r->transition(RequestState::kQueued, RequestState::kCancelled)) {
          dequeued();
          done.push_back({r, RequestState::kCancelled,
                          error(ErrorKind::kCancelled,
                                "request cancelled: the BatchQueue was stopped (StopMode::kCancel) "
                                "before it ran")});
        }
      }
    }
  }
  queues_.clear();
  last_key_ = nullptr;
  last_q_ = nullptr;
}

// ---- submit ------------------------------------------------------------------------------------

void Scheduler::complete_now(const RequestPtr& r, RequestState to, std::exception_ptr err) noexcept {
  if (r->transition(r->state(), to)) finish({r, to, std::move(err)});
}

void Scheduler::submit(const RequestPtr& r, const SubmitOptions& so) {
  r->submitter = this_thread_number();
  counters_.submitted[r->submitter % kSubmittedShards].n.fetch_add(1, std::memory_order_relaxed);
  r->submitted = Clock::now();
  r->priority = so.priority;
  const auto timeout = so.timeout ? so.timeout : options_.default_timeout;
  if (timeout) r->deadline = r->submitted + *timeout;

  // Not runnable: rejected with kInvalidArgument.
  std::string why;
  if (so.priority < 0 || so.priority >= options_.priority_levels) {
    why = "priority " + std::to_string(so.priority) + " is outside [0, " +
          std::to_string(options_.priority_levels) + ") (BatchQueueOptions.priority_levels)";
  } else if (!r->host && !r->device_in.defined()) {
    why = "the input tensor is undefined";
  } else if (!r->host && r->device_in.dtype() != nn::DType::kFloat32) {
    why = "the input is " + std::string(nn::to_string(r->device_in.dtype())) +
          "; only float32 is batched";
  } else if (!r->host && &r->device_in.device() != device_.get()) {
    why = "the input tensor is on device " + r->device_in.device().name() +
          "; the queue runs on " + device_->name();
  } else if (r->shape.rank() == 0) {
    why = "the input has no batch dimension (rank 0); give it shape [rows, ...]";
  } else if (r->rows() < 1) {
    why = "input shape " + r->shape.to_string() + " has no rows";
  } else if (r->rows() > static_cast<std::size_t>(options_.max_batch_size)) {
    why = "input of " + std::to_string(r->rows()) + " rows exceeds max_batch_size = " +
          std::to_string(options_.max_batch_size) +
          " (oversized requests are rejected, not split); run it on the model directly or raise "
          "max_batch_size";
  } else if (timeout && timeout->count() <= 0) {
    why = "timeout " + std::to_string(timeout->count()) + " us is not positive";
  } else if (r->host && r->host_in.values.size() != r->shape.numel()) {
    why = "host input of shape " + r->shape.to_string() + " needs " +
          std::to_string(r->shape.numel()) + " values; it has " +
          std::to_string(r->host_in.values.size());
  }
  if (!why.empty()) {
    complete_now(r, RequestState::kRejected,
                 error(ErrorKind::kInvalidArgument, "BatchQueue::submit: " + why));
    return;
  }
  r->sample = nn::Shape(r->shape.dims().subspan(1));
  r->row_count = static_cast<std::int64_t>(r->rows());

  // Fast path, without mu_ (Note [Batch queue intake]): no deadline, not stopping, room.
  if (!r->deadline && !stopping_flag_.load(std::memory_order_seq_cst) && try_admit()) {
    r->intake_self = r;
    Request* head = intake_.load(std::memory_order_relaxed);
    do {
      r->intake_next = head;
    } while (!intake_.compare_exchange_weak(head, r.get(), std::memory_order_seq_cst,
                                            std::memory_order_relaxed));
    if (stopping_flag_.load(std::memory_order_seq_cst)) {
      settle_after_stop();
    } else if (idle_executors_.load(std::memory_order_seq_cst) > 0 &&
               !wake_pending_.load(std::memory_order_seq_cst) &&
               !wake_pending_.exchange(true, std::memory_order_seq_cst)) {
      // This submitter holds the wake token: the one wake-up until an executor drains again.
      MutexLock lock(mu_);
      work_cv_.notify_one();
    }
    return;
  }

  std::exception_ptr fail;
  RequestState fail_state = RequestState::kRejected;
  std::vector<Finish> done;
  {
    MutexLock lock(mu_);
    drain_intake_settled(done);  // earlier fast-path submissions (of this thread too) go first
    bool admitted = !stopping_ && try_admit();
    if (!admitted && !stopping_ && options_.overflow == Overflow::kBlock) {
      (void)r->transition(RequestState::kNew, RequestState::kBlocked);
      // Returns true with a place reserved, or when stopping (then nothing is reserved).
      auto room = [&]() TANDEM_REQUIRES(mu_) {
        if (stopping_) return true;
        admitted = try_admit();
        return admitted;
      };
      if (r->deadline) {
        (void)space_cv_.wait_until(mu_, *r->deadline, room);
      } else {
        space_cv_.wait(mu_, room);
      }
    }
    if (stopping_) {
      if (admitted) admitted_.fetch_sub(1, std::memory_order_seq_cst);
      fail_state = RequestState::kCancelled;
      fail = error(ErrorKind::kCancelled, "request cancelled: the BatchQueue is stopped");
    } else if (!admitted) {
      if (options_.overflow == Overflow::kReject) {
        fail = error(ErrorKind::kQueueFull,
                     "BatchQueue is full (" + std::to_string(admitted_.load()) +
                         " queued, max_queue_size = " +
                         std::to_string(options_.max_queue_size) +
                         "); retry later, raise max_queue_size, or use Overflow::kBlock");
      } else {  // blocked until the deadline
        fail_state = RequestState::kTimedOut;
        fail = error(ErrorKind::kTimeout,
                     "request timed out after " +
                         std::to_string(static_cast<long long>(us_between(r->submitted, Clock::now()))) +
                         " us waiting for room in the full BatchQueue (max_queue_size = " +
                         std::to_string(options_.max_queue_size) + ")");
      }
    } else {
      place(r, Clock::now());
      work_cv_.notify_one();
    }
  }
  finish_all(done);
  if (fail) complete_now(r, fail_state, std::move(fail));
}

bool Scheduler::try_admit() noexcept {
  // A CAS loop, not fetch_add-and-undo: the count never exceeds max_queue_size, not even for an
  // instant (metrics().queued reads it).
  std::size_t n = admitted_.load(std::memory_order_seq_cst);
  do {
    if (n >= options_.max_queue_size) return false;
  } while (!admitted_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst,
                                            std::memory_order_seq_cst));
  return true;
}

void Scheduler::dequeued() {
  --queued_;
  admitted_.fetch_sub(1, std::memory_order_seq_cst);
}

void Scheduler::drain_intake() {
  Request* top = intake_.exchange(nullptr, std::memory_order_seq_cst);
  if (!top) return;
  // The stack is LIFO: reverse it into push order.
  Request* fifo = nullptr;
  while (top) {
    Request* next = top->intake_next;
    top->intake_next = fifo;
    fifo = top;
    top = next;
  }
  while (fifo) {
    Request* next = fifo->intake_next;
    fifo->intake_next = nullptr;
    const Clock::time_point submitted = fifo->submitted;
    place(std::move(fifo->intake_self), submitted);  // moved: no reference count traffic
    fifo = next;
  }
}

void Scheduler::drain_intake_settled(std::vector<Finish>& done) {
  drain_intake();
  if (stopping_ && (running_executors_ == 0 || stop_mode_ == StopMode::kCancel)) {
    cancel_queued(done);  // no executor will run them, or the stop cancels
  }
}

void Scheduler::settle_after_stop() {
  std::vector<Finish> done;
  {
    MutexLock lock(mu_);
    drain_intake_settled(done);
    work_cv_.notify_all();  // executors still running (a kDrain stop) drain them
  }
  finish_all(done);
}

void Scheduler::place(RequestPtr r, Clock::time_point enqueued) {
  r->seq = next_seq_++;
  r->enqueued = enqueued;
  if (!last_key_ || !(*last_key_ == r->sample)) {  // else the same key as the last place()
    auto [it, inserted] = queues_.try_emplace(r->sample);
    last_key_ = &it->first;
    last_q_ = &it->second;
  }
  KeyQueue& q = *last_q_;
  if (q.levels.empty()) q.levels.resize(static_cast<std::size_t>(options_.priority_levels));
  q.rows += r->nrows();
  (void)r->transition(r->state(), RequestState::kQueued);
  ++queued_;
  if (r->deadline) {
    if (deadlines_.size() >= 2 * queued_ + 1024) compact_deadlines();
    const bool earliest = deadlines_.empty() || *r->deadline < deadlines_.front().when;
    deadlines_.push_back({*r->deadline, r});
    std::push_heap(deadlines_.begin(), deadlines_.end(), later);
    if (earliest) {
      timer_wake_ = true;
      timer_cv_.notify_one();
    }
  }
  auto& fifo = q.levels[static_cast<std::size_t>(r->priority)];
  fifo.push_back(std::move(r));  // last: r is moved from
}

void Scheduler::compact_deadlines() {
  std::erase_if(deadlines_, [](const DeadlineEntry& e) {
    const RequestPtr r = e.request.lock();
    return !r || r->state() != RequestState::kQueued;
  });
  std::make_heap(deadlines_.begin(), deadlines_.end(), later);
}

// ---- batch formation ---------------------------------------------------------------------------

std::vector<RequestPtr> Scheduler::take(KeyQueue& q, std::int64_t target, Clock::time_point now,
                                        std::vector<Finish>& done) {
  std::vector<RequestPtr> batch;
  batch.reserve(static_cast<std::size_t>(std::min<std::int64_t>(target, 4096)));
  // The requests taken leave admitted_ with one atomic subtraction when take() returns (not one
  // per request: submitters contend on that counter).
  struct ReleaseAdmitted {
    std::atomic<std::size_t>& admitted;
    std::size_t taken = 0;
    ~ReleaseAdmitted() {
      if (taken) admitted.fetch_sub(taken, std::memory_order_seq_cst);
    }
  } release{admitted_};
  std::int64_t rows = 0;
  for (auto& level : q.levels) {
    while (!level.empty()) {
      RequestPtr& r = level.front();
      if (r->state() != RequestState::kQueued) {  // already timed out or cancelled
        level.pop_front();
        continue;
      }
      if (rows + r->nrows() > target) return batch;
      if (r->deadline && *r->deadline <= now) {
        if (r->transition(RequestState::kQueued, RequestState::kTimedOut)) {
          dequeued();
          q.rows -= r->nrows();
          done.push_back({r, RequestState::kTimedOut,
                          timeout_error(*r, now)});
        }
        level.pop_front();
        continue;
      }
      if (r->transition(RequestState::kQueued, RequestState::kRunning)) {
        --queued_;
        ++release.taken;
        rows += r->nrows();
        q.rows -= r->nrows();
        batch.push_back(std::move(r));
      }
      level.pop_front();
      if (rows == target) return batch;
    }
  }
  return batch;
}

std::vector<RequestPtr> Scheduler::next_batch(std::vector<Finish>& done, bool& exit) {
  for (;;) {
    // Before draining: a push from now on finds the token free and wakes an executor itself
    // (Note [Batch queue intake]).
    wake_pending_.store(false, std::memory_order_seq_cst);
    drain_intake();
    if (stopping_ && queued_ == 0) {
      exit = true;
      return {};
    }
    // The head: the oldest queued request of the highest non-empty priority level.
    KeyQueue* head_q = nullptr;
    RequestPtr head;
    for (std::size_t level = 0; level < static_cast<std::size_t>(options_.priority_levels) && !head;
         ++level) {
      for (auto& [key, q] : queues_) {
        auto& d = q.levels[level];
        while (!d.empty() && d.front()->state() != RequestState::kQueued) d.pop_front();
        if (!d.empty() && (!head || d.front()->seq < head->seq)) {
          head = d.front();
          head_q = &q;
        }
      }
    }
    if (!head) {
      // Everything left is tombstones: drop empty keys so the map stays small.
      std::erase_if(queues_, [](const auto& kv) {
        for (const auto& d : kv.second.levels) {
          if (!d.empty()) return false;
        }
        return true;
      });
      last_key_ = nullptr;
      last_q_ = nullptr;
      idle_executors_.fetch_add(1, std::memory_order_seq_cst);
      work_cv_.wait(mu_, [&]() TANDEM_REQUIRES(mu_) {
        // Woken (or not yet asleep): give the token back before looking at the intake, also
        // when this executor goes back to sleep (Note [Batch queue intake]).
        wake_pending_.store(false, std::memory_order_seq_cst);
        return queued_ > 0 || stopping_ || !intake_empty();
      });
      idle_executors_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    // Rows available to this batch, in take() order, up to dispatch_rows_. Fewer queued rows
    // than that all fit: then they are the answer, without a walk over the FIFOs.
    const std::int64_t avail = [&]() TANDEM_REQUIRES(mu_) {
      if (head_q->rows < dispatch_rows_) return head_q->rows;
      // A head of dispatch_rows_ rows or more (more than the largest preferred size) is a full
      // batch on its own: nothing could join it in a preferred size.
      if (head->nrows() >= dispatch_rows_) return head->nrows();
      std::int64_t n = 0;
      for (auto& level : head_q->levels) {
        for (auto& r : level) {
          if (r->state() != RequestState::kQueued) continue;
          if (n + r->nrows() > dispatch_rows_) return n;  // take() stops here too
          n += r->nrows();
          if (n == dispatch_rows_) return n;
        }
      }
      return n;
    }();
    const auto now = Clock::now();
    const auto due = head->enqueued + options_.max_queue_delay;
    const bool full = avail >= dispatch_rows_;
    if (full || options_.max_queue_delay.count() == 0 || now >= due || stopping_) {
      std::int64_t target = avail;
      if (!full) {
        // The largest preferred size it can fill, when the head request fits in it: a target
        // below the head's rows would take nothing, and the executor would spin on it.
        const std::int64_t p = largest_preferred_at_most(options_, avail);
        if (p >= head->nrows()) target = p;
      }
      auto batch = take(*head_q, target, now, done);
      if (admitted_.load(std::memory_order_seq_cst) < options_.max_queue_size) {
        space_cv_.notify_all();
      }
      // Hand what is left to another executor (place() does not notify: one wake-up per batch
      // taken, not one per request placed).
      if (queued_ > 0) work_cv_.notify_one();
      return batch;  // may be empty when everything at the front had expired: look again
    }
    // Wait for a fuller batch until the head's delay runs out (new requests wake us earlier).
    const std::uint64_t seen = next_seq_;
    idle_executors_.fetch_add(1, std::memory_order_seq_cst);
    (void)work_cv_.wait_until(mu_, due, [&]() TANDEM_REQUIRES(mu_) {
      wake_pending_.store(false, std::memory_order_seq_cst);  // as in the wait above
      return stopping_ || next_seq_ != seen || head->state() != RequestState::kQueued ||
             !intake_empty();
    });
    idle_executors_.fetch_sub(1, std::memory_order_seq_cst);
    return {};
  }
}

// ---- threads -----------------------------------------------------------------------------------

void Scheduler::executor_main(int instance) {
  Stream* stream = nullptr;
  RunBatch run;
  std::vector<std::chrono::nanoseconds> waits;  // queue times of the batch in hand
  CompletionOrder completion;                   // its completion order
  try {
    stream = &device_->current_stream();  // leased for this thread's lifetime
    run = make_run_();
  } catch (...) {
    MutexLock lock(mu_);
    if (!startup_error_) startup_error_ = std::current_exception();
    --running_executors_;
    ready_cv_.notify_all();
    timer_cv_.notify_all();  // the timer leaves once no executor is left
    return;
  }
  {
    MutexLock lock(mu_);
    ++started_;
    ready_cv_.notify_all();
  }
  // take_time: from the end of the last batch (or the start) to the next batch in hand, rounds
  // that found no batch (a delay wait, a wake-up with nothing left) included.
  auto taking = Clock::now();
  for (;;) {
    std::vector<Finish> done;
    std::vector<RequestPtr> batch;
    bool exit = false;
    {
      MutexLock lock(mu_);
      batch = next_batch(done, exit);
      if (exit) {
        --running_executors_;
        timer_cv_.notify_all();  // the timer leaves once no executor is left
      }
    }
    finish_all(done);
    if (exit) return;
    if (batch.empty()) continue;

    const auto start = Clock::now();
    take_time_.record(start - taking);
    std::int64_t rows = 0;
    waits.clear();
    for (const auto& r : batch) {
      waits.push_back(start - r->submitted);
      rows += r->nrows();
    }
    queue_time_.record_all(waits);
    std::exception_ptr err;
    try {
      run(*stream, batch);
    } catch (...) {
      err = std::current_exception();
      try {
        stream->synchronize();  // leave the stream clean for the next batch
      } catch (...) {
      }
    }
    const auto computed = Clock::now();
    compute_time_.record(computed - start);
    counters_.batches.fetch_add(1, std::memory_order_relaxed);
    counters_.batch_rows.fetch_add(static_cast<std::uint64_t>(rows), std::memory_order_relaxed);
    counters_.batch_requests.fetch_add(batch.size(), std::memory_order_relaxed);
    const auto to = err ? RequestState::kFailed : RequestState::kCompleted;
    // Completion order (Note [Dynamic batching]): grouped by submitting thread, newest first, so
    // a client blocked on its oldest request is woken once, after the rest of its requests in
    // this batch are ready.
    const std::vector<std::uint32_t>& order = completion.of(batch);
    // Only this executor moves its requests out of kRunning, so every transition below wins:
    // a success is counted once for the whole batch (before any delivery, as finish() would).
    if (!err) counters_.completed.fetch_add(batch.size(), std::memory_order_relaxed);
    for (const std::uint32_t i : order) {
      RequestPtr& r = batch[i];
      if (r->transition(RequestState::kRunning, to)) {
        // Moved, not copied (no reference count traffic): batch[i] is not used again.
        finish({std::move(r), to, err ? own_copy(err) : nullptr, /*counted=*/!err});
      }
    }
    taking = Clock::now();
    complete_time_.record(taking - computed);
    (void)instance;
  }
}

void Scheduler::timer_main() {
  for (;;) {
    std::vector<Finish> done;
    {
      MutexLock lock(mu_);
      if (stopping_ && running_executors_ == 0) return;
      const auto now = Clock::now();
      while (!deadlines_.empty() && deadlines_.front().when <= now) {
        std::pop_heap(deadlines_.begin(), deadlines_.end(), later);
        RequestPtr r = deadlines_.back().request.lock();
        deadlines_.pop_back();
        if (r && r->transition(RequestState::kQueued, RequestState::kTimedOut)) {
          dequeued();
          // A queued request is in its key's FIFO, so the key is in queues_.
          if (auto it = queues_.find(r->sample); it != queues_.end()) it->second.rows -= r->nrows();
          done.push_back({r, RequestState::kTimedOut,
                          timeout_error(*r, now)});
        }
      }
      if (!done.empty()) {
        space_cv_.notify_all();
        work_cv_.notify_all();  // an executor may be waiting on a head that just expired
      } else {
        timer_wake_ = false;
        auto woken = [&]() TANDEM_REQUIRES(mu_) {
          return timer_wake_ || (stopping_ && running_executors_ == 0);
        };
        if (deadlines_.empty()) {
          timer_cv_.wait(mu_, woken);
        } else {
          (void)timer_cv_.wait_until(mu_, deadlines_.front().when, woken);
        }
      }
    }
    finish_all(done);
  }
}

// ---- completion --------------------------------------------------------------------------------

void Scheduler::finish(Finish&& f) noexcept {
  auto& c = counters_;
  switch (f.counted ? RequestState::kNew : f.state) {
    case RequestState::kCompleted: c.completed.fetch_add(1, std::memory_order_relaxed); break;
    case RequestState::kFailed: c.failed.fetch_add(1, std::memory_order_relaxed); break;
    case RequestState::kTimedOut: c.timed_out.fetch_add(1, std::memory_order_relaxed); break;
    case RequestState::kCancelled: c.cancelled.fetch_add(1, std::memory_order_relaxed); break;
    case RequestState::kRejected: c.rejected.fetch_add(1, std::memory_order_relaxed); break;
    default: break;  // counted already (kNew stands for that), or not terminal (never)
  }
  // The error is moved on, not copied: the exception object then belongs to the caller alone
  // (see own_copy()).
  f.request->deliver(f.state == RequestState::kCompleted ? nullptr : std::move(f.error));
  f.request->release_buffers();
}

void Scheduler::finish_all(std::vector<Finish>& done) noexcept {
  for (auto& f : done) finish(std::move(f));
  done.clear();
}

BatchQueueMetrics QueueStats::metrics() const {
  BatchQueueMetrics m;
  const auto& c = counters;
  m.submitted = 0;
  for (const auto& shard : c.submitted) m.submitted += shard.n.load(std::memory_order_relaxed);
  m.completed = c.completed.load(std::memory_order_relaxed);
  m.rejected = c.rejected.load(std::memory_order_relaxed);
  m.timed_out = c.timed_out.load(std::memory_order_relaxed);
  m.failed = c.failed.load(std::memory_order_relaxed);
  m.cancelled = c.cancelled.load(std::memory_order_relaxed);
  m.batches = c.batches.load(std::memory_order_relaxed);
  m.batch_rows = c.batch_rows.load(std::memory_order_relaxed);
  m.batch_requests = c.batch_requests.load(std::memory_order_relaxed);
  m.queue_time = queue_time.summary();
  m.compute_time = compute_time.summary();
  m.take_time = take_time.summary();
  m.complete_time = complete_time.summary();
  return m;
}

}  // namespace tandem::serve::detail
