// cuda_backend.cpp — the cuda backend: NVIDIA GPUs through the CUDA runtime, cuBLAS, cuBLASLt.
// Devices: cudaGetDeviceCount, asked once per process (GPUs do not come and go under a running
// CUDA runtime). Without a usable driver or GPU it reports 0 devices and why. Encoding lock
// `none`: the CUDA driver is thread-safe and each thread owns its stream and library handles.
#include <mutex>
#include <string>

#include "backends/cuda/cuda_device.h"
#include "runtime/backend.h"

namespace tandem::backends::cuda {
namespace {

struct Probe {
  int count = 0;
  std::string reason;
};

const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    const cudaError_t st = cudaGetDeviceCount(&r.count);
    if (st != cudaSuccess) {
      r.count = 0;
      r.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(st) + " (" +
                 cudaGetErrorString(st) + ")";
      (void)cudaGetLastError();
    } else if (r.count == 0) {
      r.reason = "cudaGetDeviceCount: no CUDA device";
    }
    return r;
  }();
  return p;
}

class CudaBackend : public detail::Backend {
 public:
  [[nodiscard]] std::string name() const override { return "cuda"; }
  [[nodiscard]] int device_count() const override { return probe().count; }
  [[nodiscard]] std::string unavailable_reason() const override { return probe().reason; }
  [[nodiscard]] EncodingLockPolicy default_encoding_lock() const override {
    return EncodingLockPolicy::kNone;
  }
  [[nodiscard]] bool host_visible() const override { return false; }
  [[nodiscard]] int default_priority() const override { return 100; }  // above cpu (0)
  [[nodiscard]] std::unique_ptr<detail::BackendDevice> open(int index,
                                                            const RuntimeConfig& config) override {
    return std::make_unique<CudaDevice>(index, config);
  }
};

const detail::BackendRegistrar registrar{std::make_unique<CudaBackend>()};

}  // namespace
}  // namespace tandem::backends::cuda
