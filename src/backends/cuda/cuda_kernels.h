// cuda_kernels.h (private) — CudaKernels: the Kernels table of the cuda backend: own kernels
// (cuda_launch.h; device-to-device copy too, so that a captured forward is kernels only),
// cudaMemcpyAsync for host <-> device, and cuBLAS / cuBLASLt for the GEMMs, launched on the
// encoder's cudaStream_t, every call checked (TANDEM_CUDA_CHECK). Stateless; per-stream state
// (cuBLAS handles, workspace) lives in CudaStream, the cuBLASLt algorithm cache in CudaDevice.
//
// Note [CUDA linear paths]
// linear(rows, in, out, act):
//   rows <= 4 (batch 1..4): own GEMV kernel with bias and activation fused (one launch; a warp
//     per output, 16-byte weight loads). Measured to beat cuBLAS at batch 1 (issue 3).
//   rows 5..16: own small-batch kernel, bias and activation fused (Note [Small-batch linear] in
//     nn_kernels.cu: a block per two outputs, its threads splitting `in`). On the H100 1.7-2x
//     cuBLASLt's rate on one thread, 4-11% below it with 8 threads at once.
//   rows 17..32 with in x out <= 2^18 floats (1 MiB) and `in` a multiple of 4 that splits into
//     slices of <= 128: own cluster kernel (Note [Cluster linear] in nn_kernels.cu: split-K over
//     a thread-block cluster, summed in distributed shared memory, one kernel). The encoder's
//     batch 1 (32 rows, 256 x 768 .. 1024 x 256 weights); larger weights take the next path.
//   rows 17..256 otherwise, `in` >= 512 and a multiple of 32, x and w 16-byte aligned (unless
//     TANDEM_CUDA_MMA_LINEAR=0 or TANDEM_CUDA_TF32=1): own 3xTF32 tensor-core kernel (Note [MMA
//     linear] in mma_linear.cu: near-fp32 products, cluster split-K, bias and activation fused).
//     A BatchQueue's merged batches: the MLP's forward +24-42% at 24-96 rows on 1 and 8 threads.
//   else: cuBLASLt matmul with the bias (and ReLU) in its epilogue; GELU (erf form, which
//     cuBLASLt's tanh-approximated GELU epilogue is not) as a second, in-place kernel.
//   Fallback when cuBLASLt offers no algorithm: cublasGemmEx + the bias_act kernel.
//   Algorithm choice, cached per device and shape (LtAlgoCache): the heuristic's first, except
//   that with TANDEM_CUDA_AUTOTUNE=1 (opt-in) the first eager call of a shape with at least
//   2^28 multiply-adds times the heuristic's first 8 algorithms on its own operands (after 5
//   untimed runs of the heuristic's choice: the clock ramps up; then 2 passes of 1 untimed + 5
//   timed runs each, keeping each one's best; on its stream, waiting for them) and keeps the
//   fastest (another than the heuristic's first only when at least 3% faster: timing noise). The
//   first finisher's choice wins when threads tune one shape at once. A graph capture cannot
//   time: it uses the heuristic's first and caches nothing, so eager calls still tune the shape.
//   Each stream keeps a plan per shape (LtPlanCache: descriptors + algorithm), so a call after
//   the first sets the bias pointer and runs the matmul, without descriptor calls or locks.
// fp32 throughout, unless TANDEM_CUDA_TF32=1 (RuntimeConfig::cuda_tf32): then the cuBLAS GEMMs
// use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); the GEMV, small-batch and cluster
// kernels stay fp32 and the 3xTF32 kernel's shapes go to cuBLASLt.
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
  void empty(Encoder& enc) const override;

  // nn kernels (cuda_nn_kernels.cpp).
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

  // The fused encoder (encoder_kernel.cu) when launch::encoder_stack_fits and
  // RuntimeConfig::cuda_fused_encoder allow it.
  [[nodiscard]] bool encoder_stack(Encoder& enc, const EncoderStackArgs& args) const override;

  // A CudaResidentChain (resident_chain.h) on `stream`'s device.
  [[nodiscard]] std::unique_ptr<ResidentChain> start_resident_chain(
      Stream& stream, const std::vector<ResidentLayer>& layers,
      const ResidentConfig& config) const override;
};

}  // namespace tandem::backends::cuda
