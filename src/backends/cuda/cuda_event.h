// cuda_event.h (private) — CudaEvent (the Event of the cuda backend) and EventPool.
//
// Events come from a per-device pool of cudaEvent_t: creating an Event takes one from the pool
// (cudaEventCreateWithFlags only when the pool is empty), destroying it gives it back. Timing is
// off (cudaEventDisableTiming, the cheaper kind) unless the Event asks for Timing::kEnabled;
// the two kinds are pooled apart. Reusing a pooled cudaEvent_t is safe even while a stream still
// waits on its last record: cudaStreamWaitEvent binds to the record current at the call.
//
// Errors: an event remembers the host-error slot of the stream it was recorded on; wait()
// rethrows that stream's pending host error (without clearing it), wait(stream) makes the waiting
// stream faulted with it when it is already set at the call (a later fault of the recording
// stream is not propagated: cuda has no cheap device-side hook for it). Device-side errors come
// from cudaEventSynchronize. Thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_stream.h"
#include "runtime/backend.h"
#include "tandem/mutex.h"

namespace tandem::backends::cuda {

class EventPool {
 public:
  EventPool(int device, std::string label) : device_(device), label_(std::move(label)) {}
  ~EventPool();
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  // acquire(timing): an event of that kind, from the pool or new. Throws Error(kBackend).
  [[nodiscard]] cudaEvent_t acquire(bool timing) TANDEM_EXCLUDES(mu_);
  void release(cudaEvent_t event, bool timing) noexcept TANDEM_EXCLUDES(mu_);
  [[nodiscard]] const std::string& label() const { return label_; }

 private:
  const int device_;
  const std::string label_;
  Mutex mu_;
  std::vector<cudaEvent_t> plain_ TANDEM_GUARDED_BY(mu_);
  std::vector<cudaEvent_t> timed_ TANDEM_GUARDED_BY(mu_);
};

class CudaEvent : public detail::EventImpl {
 public:
  CudaEvent(std::shared_ptr<EventPool> pool, bool timing);
  ~CudaEvent() override;
  void record(detail::StreamImpl& stream) override TANDEM_EXCLUDES(mu_);
  void wait_host() override TANDEM_EXCLUDES(mu_);
  void wait_stream(detail::StreamImpl& stream) override TANDEM_EXCLUDES(mu_);
  [[nodiscard]] bool query() const override;
  [[nodiscard]] double elapsed_ms(const detail::EventImpl& end) const override;

 private:
  [[nodiscard]] std::shared_ptr<HostErrors> source() const TANDEM_EXCLUDES(mu_);

  const std::shared_ptr<EventPool> pool_;
  const bool timing_;
  const cudaEvent_t event_;
  mutable Mutex mu_;
  std::shared_ptr<HostErrors> source_ TANDEM_GUARDED_BY(mu_);  // the recording stream's errors
  bool recorded_ TANDEM_GUARDED_BY(mu_) = false;
};

}  // namespace tandem::backends::cuda
