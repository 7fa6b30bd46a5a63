// cuda_kernels.h (private) — CudaKernels: the Kernels table of the cuda backend: own kernels
// (cuda_launch.h) and cudaMemcpyAsync, launched on the encoder's cudaStream_t, every launch
// checked (TANDEM_CUDA_CHECK). Stateless; per-stream state (cuBLAS handles) lives in CudaStream.
#pragma once

#include "tandem/kernels.h"

namespace tandem::backends::cuda {

class CudaKernels : public Kernels {
 public:
  void fill(Encoder& enc, float* y, std::size_t n, float value) const override;
  void scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const override;
  void add(Encoder& enc, float* y, const float* a, const float* b, std::size_t n) const override;
  void copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const override;
  void sum(Encoder& enc, float* out, const float* x, std::size_t n) const override;
  void copy_from_host(Encoder& enc, void* dst, const void* host_src,
                      std::size_t bytes) const override;
  void copy_to_host(Encoder& enc, void* host_dst, const void* src,
                    std::size_t bytes) const override;
};

}  // namespace tandem::backends::cuda
