// cpu_kernels.h (private) — the cpu backend's Kernels: host functions dispatched onto the
// encoder's stream (HostStream workers). Shared by agx_model. The nn kernels (gemm .. attention)
// live in cpu_nn_kernels.cpp (OpenBLAS, one BLAS thread per call: Note [BLAS threads] there).
#pragma once

#include "tandem/kernels.h"

namespace tandem::backends {

class CpuKernels : public Kernels {
 public:
  CpuKernels();  // sets OpenBLAS to one thread per call, once per process
  void fill(Encoder& enc, float* y, std::size_t n, float value) const override;
  void scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const override;
  void add(Encoder& enc, float* y, const float* a, const float* b, std::size_t n) const override;
  void copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const override;
  void sum(Encoder& enc, float* out, const float* x, std::size_t n) const override;
  void copy_from_host(Encoder& enc, void* dst, const void* host_src,
                      std::size_t bytes) const override;
  void empty(Encoder& enc) const override;
  void copy_to_host(Encoder& enc, void* host_dst, const void* src,
                    std::size_t bytes) const override;

  void gemm(Encoder& enc, const GemmArgs& args) const override;
  void linear(Encoder& enc, float* y, const float* x, const float* w, const float* bias,
              std::size_t rows, std::size_t in, std::size_t out, Activation act) const override;
  void bias_activation(Encoder& enc, float* y, const float* x, const float* bias,
                       std::size_t rows, std::size_t cols, Activation act) const override;
  void layer_norm(Encoder& enc, float* y, const float* x, const float* residual,
                  const float* gamma, const float* beta, std::size_t rows, std::size_t cols,
                  float eps) const override;
  void softmax(Encoder& enc, float* y, const float* x, std::size_t rows, std::size_t cols,
               float scale) const override;
  void transpose(Encoder& enc, float* y, const float* x, std::size_t batch, std::size_t rows,
                 std::size_t cols) const override;
  void copy_2d(Encoder& enc, float* dst, std::size_t dst_ld, const float* src,
               std::size_t src_ld, std::size_t rows, std::size_t cols) const override;
  void attention(Encoder& enc, float* out, const float* qkv, float* scratch, std::size_t batch,
                 std::size_t seq, std::size_t heads, std::size_t head_dim,
                 float scale) const override;
};

}  // namespace tandem::backends
