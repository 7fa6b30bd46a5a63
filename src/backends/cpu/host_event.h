// host_event.h (private) — HostEvent: the Event of host-executed backends (cpu, agx_model).
#pragma once

#include <chrono>
#include <exception>
#include <memory>

#include "runtime/backend.h"
#include "tandem/mutex.h"

namespace tandem::backends {

class HostEvent : public detail::EventImpl {
 public:
  explicit HostEvent(bool timing);
  void record(detail::StreamImpl& stream) override;
  void wait_host() override;
  void wait_stream(detail::StreamImpl& stream) override;
  [[nodiscard]] bool query() const override;
  [[nodiscard]] double elapsed_ms(const detail::EventImpl& end) const override;

 private:
  // Shared with the markers queued on streams, so the Event may be destroyed before they run.
  struct State {
    mutable Mutex mu;
    CondVar cv;
    std::uint64_t generation TANDEM_GUARDED_BY(mu) = 0;  // bumped by each record()
    bool complete TANDEM_GUARDED_BY(mu) = true;          // unrecorded events are complete
    std::exception_ptr error TANDEM_GUARDED_BY(mu);      // the recording stream's error, if any
    std::chrono::steady_clock::time_point time TANDEM_GUARDED_BY(mu);
  };
  const bool timing_;
  std::shared_ptr<State> state_;
};

}  // namespace tandem::backends
