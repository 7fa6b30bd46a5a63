#include "backends/cuda/cuda_event.h"

#include "tandem/error.h"

namespace tandem::backends::cuda {

// ---- EventPool ---------------------------------------------------------------------------------

EventPool::~EventPool() {
  MutexLock lock(mu_);
  for (cudaEvent_t e : plain_) (void)cudaEventDestroy(e);
  for (cudaEvent_t e : timed_) (void)cudaEventDestroy(e);
}

cudaEvent_t EventPool::acquire(bool timing) {
  {
    MutexLock lock(mu_);
    auto& free = timing ? timed_ : plain_;
    if (!free.empty()) {
      cudaEvent_t e = free.back();
      free.pop_back();
      return e;
    }
  }
  int current = -1;
  TANDEM_CUDA_CHECK(cudaGetDevice(&current), label_);
  if (current != device_) TANDEM_CUDA_CHECK(cudaSetDevice(device_), label_);
  cudaEvent_t e = nullptr;
  TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
                    label_);
  return e;
}

void EventPool::release(cudaEvent_t event, bool timing) noexcept {
  try {
    MutexLock lock(mu_);
    (timing ? timed_ : plain_).push_back(event);
  } catch (...) {
    (void)cudaEventDestroy(event);
  }
}

// ---- CudaEvent ---------------------------------------------------------------------------------

namespace {
CudaStream& cuda_stream(detail::StreamImpl& s) {
  auto* c = dynamic_cast<CudaStream*>(&s);
  if (!c) throw Error(ErrorKind::kInvalidArgument, "a cuda event used with a stream of another backend");
  return *c;
}
}  // namespace

CudaEvent::CudaEvent(std::shared_ptr<EventPool> pool, bool timing)
    : pool_(std::move(pool)), timing_(timing), event_(pool_->acquire(timing)) {}

CudaEvent::~CudaEvent() { pool_->release(event_, timing_); }

void CudaEvent::record(detail::StreamImpl& stream) {
  CudaStream& cs = cuda_stream(stream);
  TANDEM_CUDA_CHECK(cudaEventRecord(event_, cs.get()), cs.label());
  MutexLock lock(mu_);
  source_ = cs.host_errors();
  recorded_ = true;
}

std::shared_ptr<HostErrors> CudaEvent::source() const {
  MutexLock lock(mu_);
  return source_;
}

void CudaEvent::wait_host() {
  TANDEM_CUDA_CHECK_KIND(cudaEventSynchronize(event_), pool_->label() + " event wait",
                         ErrorKind::kKernel);
  if (auto src = source(); src && src->faulted.load(std::memory_order_acquire)) {
    if (auto e = src->peek()) std::rethrow_exception(e);
  }
}

void CudaEvent::wait_stream(detail::StreamImpl& stream) {
  CudaStream& cs = cuda_stream(stream);
  cs.disarm_signal();
  TANDEM_CUDA_CHECK(cudaStreamWaitEvent(cs.get(), event_, 0), cs.label());
  if (auto src = source(); src && src->faulted.load(std::memory_order_acquire)) {
    if (auto e = src->peek()) cs.host_errors()->set(e);
  }
}

bool CudaEvent::query() const {
  return cudaEventQuery(event_) != cudaErrorNotReady;  // errors surface at wait()
}

double CudaEvent::elapsed_ms(const detail::EventImpl& end_impl) const {
  const auto* end = dynamic_cast<const CudaEvent*>(&end_impl);
  if (!timing_ || !end || !end->timing_) {
    throw Error(ErrorKind::kInvalidArgument,
                "Event::elapsed_ms needs two events created with Timing::kEnabled");
  }
  {
    MutexLock lock(mu_);
    if (!recorded_) throw Error(ErrorKind::kInvalidArgument, "Event::elapsed_ms: the start event was never recorded");
  }
  {
    MutexLock lock(end->mu_);
    if (!end->recorded_) throw Error(ErrorKind::kInvalidArgument, "Event::elapsed_ms: the end event was never recorded");
  }
  float ms = 0.0f;
  const cudaError_t st = cudaEventElapsedTime(&ms, event_, end->event_);
  if (st == cudaErrorNotReady) {
    throw Error(ErrorKind::kInvalidArgument, "Event::elapsed_ms: an event has not completed; wait() first");
  }
  check(st, "cudaEventElapsedTime(&ms, start, end)", pool_->label());
  return ms;
}

}  // namespace tandem::backends::cuda
