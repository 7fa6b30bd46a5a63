#include "backends/cuda/cuda_stream.h"

#include <utility>

#include "backends/cuda/cuda_device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::backends::cuda {

// ---- HostErrors --------------------------------------------------------------------------------

void HostErrors::set(std::exception_ptr e) {
  MutexLock lock(mu);
  if (!error) error = std::move(e);
  faulted.store(true, std::memory_order_release);
}

std::exception_ptr HostErrors::take() {
  MutexLock lock(mu);
  faulted.store(false, std::memory_order_release);
  return std::exchange(error, nullptr);
}

std::exception_ptr HostErrors::peek() {
  MutexLock lock(mu);
  return error;
}

// ---- CudaStream --------------------------------------------------------------------------------

namespace {

// One host function in flight: owned by the driver between cudaLaunchHostFunc and its run.
struct HostTask {
  std::function<void()> fn;
  std::shared_ptr<HostErrors> errors;
  bool always;
};

void CUDART_CB run_host_task(void* arg) {
  std::unique_ptr<HostTask> task(static_cast<HostTask*>(arg));
  if (!task->always && task->errors->faulted.load(std::memory_order_acquire)) return;
  try {
    task->fn();
  } catch (...) {
    task->errors->set(std::current_exception());
  }
}

}  // namespace

CudaStream::CudaStream(CudaDevice& device, int index)
    : device_(device),
      index_(index),
      label_(device.name() + " stream " + std::to_string(index)),
      errors_(std::make_shared<HostErrors>()) {
  device_.make_current();
  int least = 0;
  int greatest = 0;
  TANDEM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest), label_);
  TANDEM_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking,
                                                 index == 0 ? least : greatest),
                    label_);
}

CudaStream::~CudaStream() {
  // Destroyed with its device (Device::close drained it first). Errors cannot be reported here.
  if (lt_) (void)cublasLtDestroy(lt_);
  if (cublas_) (void)cublasDestroy(cublas_);
  if (stream_) (void)cudaStreamSynchronize(stream_);
  if (workspace_) (void)cudaFree(workspace_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void CudaStream::begin_encoding() {
  if (!accepting_.load(std::memory_order_acquire)) {
    throw Error(ErrorKind::kDeviceClosed,
                label_ + " is stopped (device closed or process exiting); the work was not run");
  }
  device_.make_current();
}

void CudaStream::launch_host(std::function<void()> fn, bool always) {
  auto task = std::make_unique<HostTask>(HostTask{std::move(fn), errors_, always});
  TANDEM_CUDA_CHECK(cudaLaunchHostFunc(stream_, run_host_task, task.get()), label_);
  (void)task.release();  // owned by the driver until run_host_task
}

void CudaStream::dispatch(std::function<void()> fn) { launch_host(std::move(fn), false); }

void CudaStream::submit(std::function<void()> fn, bool always) noexcept {
  if (accepting_.load(std::memory_order_acquire)) {
    try {
      launch_host(fn, always);
      return;
    } catch (...) {
      // The stream is unusable (sticky error): fall through to running it inline if it must run.
    }
  }
  if (!always) return;
  try {
    (void)cudaStreamSynchronize(stream_);  // keep stream order: everything before has run
    fn();
  } catch (...) {
  }
}

void CudaStream::synchronize() {
  TANDEM_CUDA_CHECK_KIND(cudaStreamSynchronize(stream_), label_, ErrorKind::kKernel);
  if (errors_->faulted.load(std::memory_order_acquire)) {
    if (auto e = errors_->take()) std::rethrow_exception(e);
  }
}

bool CudaStream::query() const {
  // cudaErrorNotReady: work pending. Any other error also ends the wait: synchronize reports it.
  return cudaStreamQuery(stream_) != cudaErrorNotReady;
}

void CudaStream::stop(StopMode mode) {
  accepting_.store(false, std::memory_order_release);
  if (mode == StopMode::kDrain) (void)cudaStreamSynchronize(stream_);
  // kQuiesce: the GPU finishes what it has; nothing is joined (Note [Device shutdown]).
}

bool CudaStream::capturing() const {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream_, &status) == cudaSuccess &&
         status == cudaStreamCaptureStatusActive;
}

void CudaStream::init_blas() {
  std::call_once(blas_once_, [this] {
    device_.make_current();
    TANDEM_CUDA_CHECK(cudaMalloc(&workspace_, kBlasWorkspaceBytes), label_);
    TANDEM_CUDA_CHECK(cublasCreate(&cublas_), label_);
    TANDEM_CUDA_CHECK(cublasSetStream(cublas_, stream_), label_);
    TANDEM_CUDA_CHECK(cublasSetWorkspace(cublas_, workspace_, kBlasWorkspaceBytes), label_);
    TANDEM_CUDA_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST), label_);
    TANDEM_CUDA_CHECK(cublasLtCreate(&lt_), label_);
  });
}

cublasHandle_t CudaStream::cublas() {
  init_blas();
  return cublas_;
}

cublasLtHandle_t CudaStream::cublas_lt() {
  init_blas();
  return lt_;
}

void* CudaStream::blas_workspace() {
  init_blas();
  return workspace_;
}

CudaStream& stream_of(Encoder& enc) {
  // Only CudaDevice creates the streams of a cuda device (see the precondition in the header).
  return static_cast<CudaStream&>(enc.stream().impl());
}

}  // namespace tandem::backends::cuda
