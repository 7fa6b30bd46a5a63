// completion_signal.h (private) — CompletionSignal: how a CudaStream's synchronize() waits for a
// graph replay without calling the driver.
//
// Note [Graph completion signal]
// A thread that replays a small graph and then calls cudaStreamSynchronize spends much of its
// time in the driver, and the driver serializes threads: bench/sync_probe on the H100
// (docs/benchmarks.md, "How a forward waits") ran one empty kernel + cudaStreamSynchronize at
// 105k/s on 1 thread and 430k/s on 8, but the same kernel storing a flag into mapped host memory,
// with the host spinning on it, at 125k/s and 652k/s. So:
//  - Every graph that run_graph captures (TANDEM_CUDA_GRAPH_SIGNAL=1, the default) ends with
//    the signal kernel (launch::signal): it increments this stream's device counter and stores
//    the count into this stream's host word (page-locked, mapped), after a system-scope fence.
//    It is launched without programmatic serialization, so it starts only after everything
//    before it on the stream completed.
//  - A graph whose other nodes are all kernels is *signalling*. After launching its replay,
//    run_graph *arms* the signal with the count that replay's signal kernel will store
//    (launched(): every replay, signalling or not, advances the count by one). A graph with a
//    copy, host or other node never arms: a host function, or a copy engine's write into host
//    memory, is not ordered before the kernel's store by anything the host could check.
//  - Anything else enqueued on the stream disarms (disarm()): end_encoding (kernels, copies),
//    host functions, event waits, stream-ordered allocations and frees.
//  - synchronize(): when armed, wait() spins on the host word until it reaches the armed count
//    (wrap-safe: counts are compared as a signed 32-bit difference), for at most kSpin. Then, or
//    when not armed, or when the word did not arrive in time (a long graph; or a kernel fault,
//    after which the signal kernel never runs), the stream falls back to cudaStreamSynchronize,
//    which also reports device errors. Host-function errors are checked on both paths.
//  - query() answers true when the armed word was reached: the signal kernel may still be
//    retiring then (cudaStreamQuery would say "not ready"), but none of the caller's work is.
//  - Not done at a signal wait: the memory pool's trimming to its release threshold, which CUDA
//    does at cudaStreamSynchronize (graph replays allocate from their arenas, not the pool).
//  - The count grows only in stream order, so a word at or past the target means every replay
//    up to the armed one completed. launch_mu_ makes "launch, count, arm" one step, so that two
//    threads replaying on one shared stream (stream 0) arm in launch order.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "tandem/mutex.h"

namespace tandem::backends::cuda {

class CompletionSignal {
 public:
  // How long wait() spins before the caller falls back to cudaStreamSynchronize: longer than a
  // batch-1 forward (~10 us), short enough that a long graph or a fault costs little CPU.
  static constexpr std::chrono::microseconds kSpin{100};

  explicit CompletionSignal(std::string label) : label_(std::move(label)) {}
  ~CompletionSignal();
  CompletionSignal(const CompletionSignal&) = delete;
  CompletionSignal& operator=(const CompletionSignal&) = delete;

  // prepare(): allocates the host word and the device counter, once (the stream's device must
  // be current; not during a capture). Throws Error on failure.
  void prepare();
  // record(stream): appends the signal kernel to the capture in progress on `stream`.
  // Precondition: prepare() ran.
  void record(cudaStream_t stream) const;
  // launch(exec, stream, signalling): cudaGraphLaunch(exec, stream), then counts the replay and
  // arms the signal (signalling) or disarms it. exec must end with the signal kernel (record()).
  void launch(cudaGraphExec_t exec, cudaStream_t stream, bool signalling)
      TANDEM_EXCLUDES(launch_mu_);
  // disarm(): something other than a signalling replay was enqueued. Any thread.
  void disarm() noexcept { armed_.store(0, std::memory_order_relaxed); }
  // wait(): true when the signal was armed and the host word reached the armed count within
  // kSpin; false: the caller must cudaStreamSynchronize.
  [[nodiscard]] bool wait() const noexcept;
  // reached(): the signal is armed and the host word already reached the armed count (no wait).
  [[nodiscard]] bool reached() const noexcept;

 private:
  static constexpr std::uint64_t kArmed = std::uint64_t{1} << 32;

  const std::string label_;
  std::once_flag prepared_;
  unsigned* host_word_ = nullptr;   // page-locked, mapped; written by the signal kernel only
  unsigned* host_alias_ = nullptr;  // its device pointer
  unsigned* counter_ = nullptr;     // device memory
  Mutex launch_mu_;
  std::uint32_t launched_ TANDEM_GUARDED_BY(launch_mu_) = 0;  // replays launched (mod 2^32)
  // armed_: kArmed | the count to wait for, or 0. Writers: launch() (under launch_mu_) and
  // disarm(); reader: wait(). Relaxed: the value is a hint about work this thread enqueued;
  // the data the caller then reads is ordered by the acquire load of the host word.
  std::atomic<std::uint64_t> armed_{0};
};

}  // namespace tandem::backends::cuda
