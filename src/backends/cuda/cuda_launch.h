// cuda_launch.h (private) — host-side launchers of the cuda backend's own kernels (*.cu).
//
// Each launcher enqueues its kernel on `stream` and returns cudaGetLastError() (the launch
// status; errors while the kernel runs surface at the next synchronize). They never block, never
// allocate, and may be called during stream capture. n == 0 launches nothing. Pointers are device
// pointers of the stream's device. Plain C++ signatures so that only the .cu files meet nvcc.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "tandem/kernels.h"

namespace tandem::backends::cuda::launch {

// y[i] = value
cudaError_t fill(cudaStream_t stream, float* y, std::size_t n, float value);
// y[i] = x[i] * a  (y may alias x)
cudaError_t scale(cudaStream_t stream, float* y, const float* x, std::size_t n, float a);
// y[i] = a[i] + b[i]  (y may alias a or b)
cudaError_t add(cudaStream_t stream, float* y, const float* a, const float* b, std::size_t n);
// copy: `bytes` from src to dst (device memory, not overlapping), as a kernel (a graph of a
// forward stays kernel-only): 16-byte elements when both pointers allow it, else 4 or 1.
// pdl: launched with programmatic stream serialization, like gemv_bias_act (Note [GEMV and PDL]).
cudaError_t copy(cudaStream_t stream, void* dst, const void* src, std::size_t bytes, bool pdl);
// out[0] = sum of x[0..n): one block, double accumulators, a fixed tree order (deterministic and
// exact for integer-valued data below 2^53).
cudaError_t sum(cudaStream_t stream, float* out, const float* x, std::size_t n);
// An empty kernel: the launch+sync ceiling of `tandem bench`.
cudaError_t empty(cudaStream_t stream);
// signal: *host_word = ++*counter, after a system-scope fence (Note [Graph completion signal] in
// completion_signal.h). Launched without programmatic serialization, so it starts only once
// everything before it on `stream` has completed. counter: device memory; host_word: the device
// alias of page-locked, mapped host memory.
cudaError_t signal(cudaStream_t stream, unsigned* counter, unsigned* host_word);

}  // namespace tandem::backends::cuda::launch

namespace tandem::backends::cuda::launch {

// Activation codes of the nn launchers: the values of tandem::Activation (static_assert'ed in
// cuda_nn_kernels.cpp): 0 none, 1 ReLU, 2 GELU (erf form).
// bias_act: y[r][c] = act(x[r][c] + bias[c]); bias may be null; y may alias x.
cudaError_t bias_act(cudaStream_t stream, float* y, const float* x, const float* bias,
                     std::size_t rows, std::size_t cols, int act);
// gemv_bias_act: the batch-1 (rows <= kGemvMaxRows) linear: y[r][o] = act(w[o] . x[r] + bias[o]),
// w out x in row-major; a warp per output, 16-byte loads when in % 4 == 0 and pointers align.
// pdl: launched with programmatic stream serialization (Note [GEMV and PDL] in nn_kernels.cu):
// the kernel may be scheduled while the previous kernel of `stream` is still running; it waits
// for that kernel's completion (griddepcontrol.wait) before its first memory access, so stream
// order is kept exactly. Also under graph capture (a programmatic edge).
inline constexpr std::size_t kGemvMaxRows = 4;
cudaError_t gemv_bias_act(cudaStream_t stream, float* y, const float* x, const float* w,
                          const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                          int act, bool pdl);
// rows_linear: the same linear for kGemvMaxRows < rows <= kRowsLinearMaxRows (Note [Small-batch
// linear] in nn_kernels.cu): a block per two output columns, the block's threads splitting `in`;
// PDL as gemv_bias_act. cudaErrorInvalidValue for rows above the limit.
inline constexpr std::size_t kRowsLinearMaxRows = 16;
cudaError_t rows_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                        const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                        int act, bool pdl);
// cluster_linear: the same linear for kRowsLinearMaxRows < rows <= kTileLinearMaxRows when
// cluster_linear_fits (in x out <= kTileLinearMaxWeights, in a multiple of 4 S with a slice of
// at most 128 floats, x and w 16-byte aligned; Note [Cluster linear] in nn_kernels.cu): a
// cluster of S blocks per 32 x 32 output tile, split-K summed through distributed shared
// memory; PDL as gemv_bias_act. cudaErrorInvalidValue when it does not fit.
inline constexpr std::size_t kTileLinearMaxRows = 32;
inline constexpr std::size_t kTileLinearMaxWeights = 262144;  // in x out, floats (1 MiB)
bool cluster_linear_fits(std::size_t rows, std::size_t in, std::size_t out, const float* x,
                         const float* w);
cudaError_t cluster_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                           const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                           int act, bool pdl);
// mma_linear: the same linear for kRowsLinearMaxRows < rows <= kMmaLinearMaxRows when
// mma_linear_fits (`in` a multiple of 32 and at least kMmaLinearMinIn, x and w 16-byte aligned):
// fp32 products on the tensor cores by 3xTF32, each within 3 * 2^-20 of itself (Note [MMA
// linear] in mma_linear.cu); tiles of 32 rows up to kMmaLinearSmallTileRows rows, of 64 above;
// the reduction split until the grid has a block for each of the device's `sms` SMs; PDL as
// gemv_bias_act. cudaErrorInvalidValue when it does not fit.
inline constexpr std::size_t kMmaLinearMaxRows = 256;
inline constexpr std::size_t kMmaLinearSmallTileRows = 96;
inline constexpr std::size_t kMmaLinearMinIn = 512;
bool mma_linear_fits(std::size_t rows, std::size_t in, std::size_t out, const float* x,
                     const float* w);
cudaError_t mma_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                       const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                       int act, bool pdl, int sms);
// layer_norm: a warp per row, the row in registers, for cols <= 1024; a block per row above.
// softmax: a block per row. See kernels.h for the contracts (in place allowed).
// pdl (layer_norm, attention's fused kernel): launched as gemv_bias_act with pdl.
cudaError_t layer_norm(cudaStream_t stream, float* y, const float* x, const float* residual,
                       const float* gamma, const float* beta, std::size_t rows, std::size_t cols,
                       float eps, bool pdl);
cudaError_t softmax(cudaStream_t stream, float* y, const float* x, std::size_t rows,
                    std::size_t cols, float scale);
// transpose: y[b][c][r] = x[b][r][c], 32x32 tiles through shared memory.
cudaError_t transpose(cudaStream_t stream, float* y, const float* x, std::size_t batch,
                      std::size_t rows, std::size_t cols);
// scale_matrix: C_i = beta * C_i (beta == 0: zeros, C not read) for the k == 0 gemm.
cudaError_t scale_matrix(cudaStream_t stream, float* c, std::size_t ldc, std::size_t stride_c,
                         std::size_t m, std::size_t n, std::size_t batch, float beta);
// attention: out = softmax(scale * Q K^T) V per (batch, head). Note [CUDA attention]:
//   seq <= 128 and K, V of one head with 8 query rows fit 48 KiB of shared memory (the
//   encoder's seq 32, head_dim 64: 20 KB): one fused kernel, a block per (batch, head, 8 query
//   rows) with K, V and the query rows staged in shared memory, a warp per query row, softmax in
//   registers; scratch is not used.
//   Otherwise two kernels, a block per query row: scores + softmax into scratch, then P . V.
//   pdl: the fused kernel launched as gemv_bias_act with pdl (the two-kernel path never is).
cudaError_t attention(cudaStream_t stream, float* out, const float* qkv, float* scratch,
                      std::size_t batch, std::size_t seq, std::size_t heads,
                      std::size_t head_dim, float scale, bool pdl);

// encoder_stack: a stack of post-norm transformer encoder layers of the reference encoder's
// sizes as one kernel, a thread-block cluster per sequence (Note [Fused encoder] in
// encoder_kernel.cu). encoder_stack_fits says which stacks it runs: d_model 256, 4 heads,
// feed-forward 1024, ReLU, 1 <= seq <= 32, batch <= kEncoderStackMaxBatch, layers <=
// kEncoderStackMaxLayers, on a device that can schedule the kernel's 16-block clusters (Hopper);
// encoder_stack returns cudaErrorInvalidValue / cudaErrorNotSupported otherwise. Pointers:
// device memory, 16-byte aligned; x, y: batch x seq x 256; ws: at least batch x seq x 2560
// floats (contents undefined afterwards), not overlapping x, y or the weights; y must not
// overlap x. pdl: launched as gemv_bias_act with pdl.
// Batch 2 at most: a cluster per sequence, and the H100 runs 8 such clusters at once (one per
// GPC), so larger batches from several threads queue; measured (docs/benchmarks.md, "The fused
// encoder"): batch 4 from 8 threads ran 23% below the op-by-op path, batch 2 15% above it.
inline constexpr std::size_t kEncoderStackMaxBatch = 2;
inline constexpr std::size_t kEncoderStackMaxLayers = 8;
struct EncoderStackParams {
  EncoderLayerParams layer[kEncoderStackMaxLayers];
  int layers, batch, seq, act;
  float eps, scale;  // layer_norm's eps; attention's score scale (1 / sqrt(head_dim))
  const float* x;
  float* y;
  float* ws;
};
bool encoder_stack_fits(std::size_t batch, std::size_t seq, std::size_t d_model,
                        std::size_t heads, std::size_t feed_forward, std::size_t layers, int act);
cudaError_t encoder_stack(cudaStream_t stream, const EncoderStackParams& params, bool pdl);

}  // namespace tandem::backends::cuda::launch
