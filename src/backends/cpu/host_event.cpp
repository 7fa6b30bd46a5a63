#include "backends/cpu/host_event.h"

#include "backends/cpu/host_stream.h"
#include "tandem/error.h"

namespace tandem::backends {

namespace {
HostStream& host(detail::StreamImpl& s) {
  auto* h = dynamic_cast<HostStream*>(&s);
  if (!h) throw Error(ErrorKind::kInvalidArgument, "a host event used with a non-host stream");
  return *h;
}
}  // namespace

HostEvent::HostEvent(bool timing) : timing_(timing), state_(std::make_shared<State>()) {}

void HostEvent::record(detail::StreamImpl& stream) {
  HostStream& hs = host(stream);
  std::uint64_t gen = 0;
  {
    MutexLock lock(state_->mu);
    gen = ++state_->generation;
    state_->complete = false;
    state_->error = nullptr;
  }
  auto state = state_;
  hs.submit(
      [state, gen, &hs] {
        auto err = hs.error();
        MutexLock lock(state->mu);
        if (state->generation != gen) return;  // re-recorded since: that marker completes it
        state->complete = true;
        state->error = err;
        state->time = std::chrono::steady_clock::now();
        state->cv.notify_all();
      },
      /*always=*/true);
}

void HostEvent::wait_host() {
  std::exception_ptr err;
  {
    MutexLock lock(state_->mu);
    state_->cv.wait(state_->mu, [&]() TANDEM_REQUIRES(state_->mu) { return state_->complete; });
    err = state_->error;
  }
  if (err) std::rethrow_exception(err);
}

void HostEvent::wait_stream(detail::StreamImpl& stream) {
  auto state = state_;
  host(stream).submit(
      [state] {
        std::exception_ptr err;
        {
          MutexLock lock(state->mu);
          state->cv.wait(state->mu, [&]() TANDEM_REQUIRES(state->mu) { return state->complete; });
          err = state->error;
        }
        if (err) std::rethrow_exception(err);  // the waiting stream becomes faulted too
      },
      /*always=*/false);
}

bool HostEvent::query() const {
  MutexLock lock(state_->mu);
  return state_->complete;
}

double HostEvent::elapsed_ms(const detail::EventImpl& end_impl) const {
  const auto* end = dynamic_cast<const HostEvent*>(&end_impl);
  if (!timing_ || !end || !end->timing_) {
    throw Error(ErrorKind::kInvalidArgument,
                "Event::elapsed_ms needs two events created with Timing::kEnabled");
  }
  std::chrono::steady_clock::time_point t0, t1;
  {
    MutexLock lock(state_->mu);
    if (!state_->complete || state_->generation == 0) {
      throw Error(ErrorKind::kInvalidArgument, "Event::elapsed_ms: the start event has not completed");
    }
    t0 = state_->time;
  }
  {
    MutexLock lock(end->state_->mu);
    if (!end->state_->complete || end->state_->generation == 0) {
      throw Error(ErrorKind::kInvalidArgument, "Event::elapsed_ms: the end event has not completed");
    }
    t1 = end->state_->time;
  }
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

}  // namespace tandem::backends
