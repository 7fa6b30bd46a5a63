#include "backends/cuda/completion_signal.h"

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_launch.h"

namespace tandem::backends::cuda {

CompletionSignal::~CompletionSignal() {
  // The stream was synchronized before its destruction (no signal kernel still runs).
  if (host_word_) (void)cudaFreeHost(host_word_);
  if (counter_) (void)cudaFree(counter_);
}

void CompletionSignal::prepare() {
  std::call_once(prepared_, [this] {
    void* word = nullptr;
    TANDEM_CUDA_CHECK(
        cudaHostAlloc(&word, sizeof(unsigned), cudaHostAllocMapped | cudaHostAllocPortable),
        label_ + " (graph completion signal)");
    host_word_ = static_cast<unsigned*>(word);
    *host_word_ = 0;
    void* alias = nullptr;
    TANDEM_CUDA_CHECK(cudaHostGetDevicePointer(&alias, word, 0),
                      label_ + " (graph completion signal)");
    host_alias_ = static_cast<unsigned*>(alias);
    void* counter = nullptr;
    TANDEM_CUDA_CHECK(cudaMalloc(&counter, sizeof(unsigned)),
                      label_ + " (graph completion signal)");
    counter_ = static_cast<unsigned*>(counter);
    TANDEM_CUDA_CHECK(cudaMemset(counter_, 0, sizeof(unsigned)),
                      label_ + " (graph completion signal)");
  });
}

void CompletionSignal::record(cudaStream_t stream) const {
  TANDEM_CUDA_CHECK(launch::signal(stream, counter_, host_alias_), label_);
}

void CompletionSignal::launch(cudaGraphExec_t exec, cudaStream_t stream, bool signalling) {
  MutexLock lock(launch_mu_);
  TANDEM_CUDA_CHECK(cudaGraphLaunch(exec, stream), label_);
  ++launched_;
  armed_.store(signalling ? kArmed | launched_ : 0, std::memory_order_relaxed);
}

namespace {

// at_or_past(word, target): the count in `word` reached `target` (mod 2^32).
bool at_or_past(unsigned* word, std::uint32_t target) noexcept {
  const unsigned now = std::atomic_ref<unsigned>(*word).load(std::memory_order_acquire);
  return static_cast<std::int32_t>(now - target) >= 0;
}

}  // namespace

bool CompletionSignal::reached() const noexcept {
  const std::uint64_t armed = armed_.load(std::memory_order_relaxed);
  return (armed & kArmed) != 0 && at_or_past(host_word_, static_cast<std::uint32_t>(armed));
}

bool CompletionSignal::wait() const noexcept {
  const std::uint64_t armed = armed_.load(std::memory_order_relaxed);
  if ((armed & kArmed) == 0) return false;
  const auto target = static_cast<std::uint32_t>(armed);
  const auto reached = [&] { return at_or_past(host_word_, target); };
  if (reached()) return true;
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (reached()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

}  // namespace tandem::backends::cuda
