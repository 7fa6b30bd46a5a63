// host_stream.h (private) — HostStream: a stream executed by one worker thread, in order.
//
// The executor of the cpu backend, and of agx_model (which overrides the encoding hooks).
// Command buffers are lists of host functions; the worker runs them in submission order.
//
// Caller runs (Note [Caller runs]): a thread in synchronize() whose stream has buffers queued and
// none running takes them off the queue and runs them itself, in order, instead of sleeping
// until the worker has run them. Stream order holds because at most one thread (worker or
// helper) runs a buffer of a stream at a time (`running_`). This saves the two thread wake-ups
// (worker, then waiter) that dominate a small synchronous forward on one thread.
//
// Errors: the first exception a function throws makes the stream *faulted*: the rest of that
// command buffer and later ones are skipped (except `always` ones: frees, event markers) until
// synchronize() rethrows the error to the waiting thread and clears it. Never std::terminate.
//
// Thread-safety: begin/dispatch/end_encoding from the encoder's thread only (the runtime
// guarantees one encoder per stream at a time); everything else from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/backend.h"
#include "tandem/mutex.h"

namespace tandem::backends {

class HostStream : public detail::StreamImpl {
 public:
  // label: names the stream in errors ("cpu:0 stream 3"). caller_runs: whether synchronize()
  // may run queued buffers on the calling thread (Note [Caller runs]); agx_model keeps every
  // buffer on the worker, like the driver it models.
  explicit HostStream(std::string label, bool caller_runs = true);
  ~HostStream() override;

  void begin_encoding() override;
  void dispatch(std::function<void()> fn) override;
  void end_encoding() override;
  void submit(std::function<void()> fn, bool always) noexcept override;
  void synchronize() override TANDEM_EXCLUDES(mu_);
  [[nodiscard]] bool query() const override TANDEM_EXCLUDES(mu_);
  void stop(StopMode mode) override TANDEM_EXCLUDES(mu_);

  // error(): the pending error, if faulted (for event markers). Thread-safe.
  [[nodiscard]] std::exception_ptr error() const TANDEM_EXCLUDES(mu_);
  [[nodiscard]] const std::string& label() const { return label_; }

 protected:
  struct CommandBuffer {
    std::vector<std::function<void()>> fns;
    bool always = false;
  };
  // enqueue(cb): appends to the queue; false when the stream no longer accepts work.
  [[nodiscard]] bool enqueue(CommandBuffer cb) TANDEM_EXCLUDES(mu_);

  CommandBuffer recording_;  // encoder-thread only, between begin and end_encoding

 private:
  void run() TANDEM_EXCLUDES(mu_);
  // take_next(cb, faulted): pops the next buffer for the worker or a helper and marks it running;
  // false when the queue is empty or a buffer is already running.
  [[nodiscard]] bool take_next(CommandBuffer& cb, bool& faulted) TANDEM_REQUIRES(mu_);
  // execute(cb, faulted): runs cb's functions (skipped when faulted, unless `always`), then
  // records completion and the first error. Called without mu_.
  void execute(CommandBuffer& cb, bool faulted) TANDEM_EXCLUDES(mu_);

  const std::string label_;
  const bool caller_runs_;
  mutable Mutex mu_;
  CondVar work_cv_;  // queue_ gained work, or halt_
  CondVar done_cv_;  // completed_ advanced, or halted
  std::deque<CommandBuffer> queue_ TANDEM_GUARDED_BY(mu_);
  std::uint64_t submitted_ TANDEM_GUARDED_BY(mu_) = 0;
  std::uint64_t completed_ TANDEM_GUARDED_BY(mu_) = 0;
  std::exception_ptr error_ TANDEM_GUARDED_BY(mu_);
  bool accepting_ TANDEM_GUARDED_BY(mu_) = true;
  bool halt_ TANDEM_GUARDED_BY(mu_) = false;     // the worker leaves before its next buffer
  bool drained_ TANDEM_GUARDED_BY(mu_) = false;  // stopped by kDrain: nothing can run anymore
  bool quiesced_ TANDEM_GUARDED_BY(mu_) = false;  // stopped by kQuiesce: the process is exiting
  bool running_ TANDEM_GUARDED_BY(mu_) = false;  // a buffer is running (worker or helper)
  bool worker_gone_ TANDEM_GUARDED_BY(mu_) = false;  // run() has returned
  Mutex worker_mu_ TANDEM_ACQUIRED_AFTER(mu_);
  // Started in the constructor; joined by kDrain, detached by kQuiesce (never joined at exit).
  std::thread worker_ TANDEM_GUARDED_BY(worker_mu_);
};

}  // namespace tandem::backends
