// mma_linear.cu — the fp32 linear of mid-size batches on the tensor cores, by 3xTF32
// (cuda_launch.h: mma_linear).
//
// Note [MMA linear]
// y (rows x out) = act(x (rows x in) . w^T + bias), w row-major out x in, for
// kRowsLinearMaxRows < rows <= kMmaLinearMaxRows (a BatchQueue's merged batches: tens to a few
// hundred rows) where the cluster linear does not take them, `in` a multiple of kBk = 32 and at
// least kMmaLinearMinIn, x and w 16-byte aligned (mma_linear_fits). cuBLAS's fp32 GEMM runs on the
// CUDA cores; this kernel runs the products on the tensor cores as three TF32 mma per product
// (mma_tf32.cuh: each product within 3 * 2^-20 of itself, near fp32: the fused encoder's
// arithmetic).
// - Tiles: a block of 4 warps per BM x 64 tile of y, BM = 32 up to kMmaLinearSmallTileRows rows
//   (more blocks for few rows), else 64; each warp a (BM / 2) x 32 quarter in m16n8 tiles.
// - Pipeline: the reduction dimension in steps of kBk = 32; x's and w's slices of a step staged
//   in shared memory by cp.async (16-byte copies through L2; rows past `rows` or `out`
//   zero-filled), kStages buffers deep, so later steps' copies fly while this one's mma run.
//   Rows of shared memory are kBk + 4 floats apart: a warp's fragment loads (lane 4 g + t reads
//   row g, column t) hit 32 distinct banks.
// - Split-K: at these sizes one block per tile leaves most SMs idle and each block waits out
//   its copies step after step (measured on the H100: a batch-96 MLP forward took 86 us, twice
//   cuBLAS's). So S blocks (splits_for: 1, 2, 4 or 8, until the grid has a block per SM, each
//   keeping at least kMinSteps steps) share a tile's reduction as a thread-block cluster; each
//   leaves its partial tile in shared memory and block r sums rows [r BM / S, (r + 1) BM / S)
//   of all S through distributed shared memory (cluster_sum_tile, as the cluster linear).
// - Bias and activation in the epilogue: one kernel per linear, where cuBLASLt may take a
//   split-K GEMM and its reduction; launched with PDL like the GEMV (Note [GEMV and PDL] in
//   nn_kernels.cu).
// Measured against cuBLASLt's fp32 (TANDEM_CUDA_MMA_LINEAR=0; docs/benchmarks.md, "Tensor-core
// linear"), the MLP's forward with graphs on the H100: +24-27% forwards/s on one thread at batch
// 24-96 and +27-42% with 8 threads at once; at 128-256 rows 1-4% slower on one thread, +11% with
// 8. With `in` 256 (8 steps) neither the pipeline nor the split pays (the encoder's layers: -16%
// to -21% on one thread), hence kMmaLinearMinIn.
#include <cooperative_groups.h>

#include <cstdint>

#include "backends/cuda/cluster_sum.cuh"
#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/mma_tf32.cuh"
#include "backends/cuda/pdl.cuh"
#include "backends/cuda/warp_reduce.cuh"

namespace tandem::backends::cuda::launch {
namespace {

constexpr int kBn = 64, kBk = 32, kLd = kBk + 4, kThreads = 128;

// kStages<BM>: shared-memory buffers of the pipeline (3 for 32-row tiles, 2 for 64: static
// shared memory stays under 48 KB).
template <int BM>
constexpr int kStages = BM == 32 ? 3 : 2;

// copy16_or_zero(dst, src, valid): 16 bytes global -> shared by cp.async.cg, or 16 zero bytes
// when !valid (src-size 0: nothing is read; src must still be a valid address).
__device__ __forceinline__ void copy16_or_zero(float* dst, const float* src, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(n)
               : "memory");
}

// Grid: x the 64-column tiles, y the S splits of `in` (a cluster of S blocks when S > 1), z the
// BM-row tiles.
template <int BM>
__global__ void __launch_bounds__(kThreads)
    mma_linear_kernel(float* __restrict__ y, const float* __restrict__ x,
                      const float* __restrict__ w, const float* __restrict__ bias, int rows, int in,
                      int out, int act) {
  constexpr int kS = kStages<BM>;
  constexpr int kWm = BM / 2;                     // a warp's rows
  constexpr int kMt = kWm / 16, kNt = 4;          // its m16 and n8 tiles (32 columns)
  constexpr int kXs = BM * kLd, kWs = kBn * kLd;  // floats of a stage's slices
  static_assert(BM * (kBn + 1) <= kS * (kXs + kWs), "the partial tile fits the stages' memory");
  __shared__ __align__(16) float smem[kS * (kXs + kWs)];
  pdl_wait_then_release();
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int wr = (warp / 2) * kWm, wc = (warp % 2) * 32;  // the warp's quarter of the tile
  const int row0 = static_cast<int>(blockIdx.z) * BM, col0 = static_cast<int>(blockIdx.x) * kBn;
  const int splits = static_cast<int>(gridDim.y), rank = static_cast<int>(blockIdx.y);
  const int steps = in / kBk / splits;  // this block's share of the reduction
  const int k_begin = rank * steps * kBk;

  // stage(step): copies x[row0 .. + BM)[k .. + kBk) and w[col0 .. + kBn)[k .. + kBk) of the
  // block's step `step` into buffer step % kS (8 chunks of 16 bytes a row); always commits a
  // group (empty past the last step), so that wait_group counts stay uniform.
  auto stage = [&](int step) {
    if (step < steps) {
      float* xs = smem + (step % kS) * (kXs + kWs);
      float* ws = xs + kXs;
      const int k = k_begin + step * kBk;
#pragma unroll
      for (int i = tid; i < BM * 8; i += kThreads) {
        const int r = i / 8, c = i % 8, gr = row0 + r;
        const float* src = x + static_cast<std::size_t>(gr < rows ? gr : 0) * in + k + 4 * c;
        copy16_or_zero(xs + r * kLd + 4 * c, src, gr < rows);
      }
#pragma unroll
      for (int i = tid; i < kBn * 8; i += kThreads) {
        const int r = i / 8, c = i % 8, gc = col0 + r;
        const float* src = w + static_cast<std::size_t>(gc < out ? gc : 0) * in + k + 4 * c;
        copy16_or_zero(ws + r * kLd + 4 * c, src, gc < out);
      }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };

  Tf32x3Acc acc[kMt][kNt];
#pragma unroll
  for (int s = 0; s < kS - 1; ++s) stage(s);
  for (int step = 0; step < steps; ++step) {
    // Groups committed so far: step + kS - 1; at most kS - 2 may still fly, so this step's landed.
    asm volatile("cp.async.wait_group %0;" ::"n"(kS - 2) : "memory");
    __syncthreads();  // every thread's copies of this step landed; every warp is done with the
                      // buffer that the next stage() overwrites (read in the previous step)
    stage(step + kS - 1);
    const float* xa = smem + (step % kS) * (kXs + kWs);
    const float* wb = xa + kXs;
#pragma unroll
    for (int kk = 0; kk < kBk; kk += 8) {
      Tf32Split<4> a[kMt];
      Tf32Split<2> b[kNt];
#pragma unroll
      for (int m = 0; m < kMt; ++m) {
        const float* p = xa + (wr + 16 * m + g) * kLd + kk + t;
        const float v[4] = {p[0], p[8 * kLd], p[4], p[8 * kLd + 4]};
        a[m] = split_fragment(v);
      }
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        const float* p = wb + (wc + 8 * n + g) * kLd + kk + t;
        const float v[2] = {p[0], p[4]};
        b[n] = split_fragment(v);
      }
#pragma unroll
      for (int m = 0; m < kMt; ++m) {
#pragma unroll
        for (int n = 0; n < kNt; ++n) mma_3xtf32(acc[m][n], a[m], b[n]);
      }
    }
  }

  // each_value(f): f(r, c, v) for every accumulator value of the lane, (r, c) its place in the
  // block's tile (lane 4 g + t holds rows g and g + 8, columns 2 t and 2 t + 1 of each m16n8
  // tile).
  auto each_value = [&](auto f) {
#pragma unroll
    for (int m = 0; m < kMt; ++m) {
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          f(wr + 16 * m + g + 8 * (i / 2), wc + 8 * n + 2 * t + i % 2, acc[m][n].value(i));
        }
      }
    }
  };
  if (splits == 1) {
    each_value([&](int r, int c, float v) {
      const int o = col0 + c;
      if (row0 + r < rows && o < out) {
        y[static_cast<std::size_t>(row0 + r) * out + o] =
            activate(v + (bias ? bias[o] : 0.0f), act);
      }
    });
    return;
  }
  // Split: each block leaves its partial tile in its shared memory (over the stages, which no
  // copy writes any more: the groups past the last step were empty) and the cluster sums them.
  cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  __syncthreads();  // every warp's last reads of the stages are done
  each_value([&](int r, int c, float v) { smem[r * (kBn + 1) + c] = v; });
  cluster_sum_tile<BM, kBn, kThreads>(cluster, smem, y, bias, row0, col0, rows, out, act);
}

// splits_for(tiles, in, sms): S, the blocks a tile's reduction is split over: the fewest (1,
// 2, 4, 8) that give each of the GPU's `sms` SMs a block (more blocks, each with fewer steps:
// the kernel is latency-bound at these sizes), keeping at least kMinSteps steps a block.
constexpr int kMinSteps = 4;
int splits_for(std::size_t tiles, std::size_t in, int sms) {
  const std::size_t steps = in / kBk;
  int s = 1;
  while (s < 8 && tiles * static_cast<std::size_t>(s) < static_cast<std::size_t>(sms) &&
         steps % (2 * static_cast<std::size_t>(s)) == 0 &&
         steps / (2 * static_cast<std::size_t>(s)) >= kMinSteps) {
    s *= 2;
  }
  return s;
}

template <int BM>
cudaError_t launch_tiles(cudaStream_t stream, float* y, const float* x, const float* w,
                         const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                         int act, bool pdl, int sms) {
  const auto cols = (out + kBn - 1) / kBn, row_tiles = (rows + BM - 1) / BM;
  const int s = splits_for(cols * row_tiles, in, sms);
  const dim3 grid(static_cast<unsigned>(cols), static_cast<unsigned>(s),
                  static_cast<unsigned>(row_tiles));
  return launch_ex(stream, {grid, dim3(kThreads), 0, pdl, s > 1 ? static_cast<unsigned>(s) : 0u},
                   mma_linear_kernel<BM>, y, x, w, bias, static_cast<int>(rows),
                   static_cast<int>(in), static_cast<int>(out), act);
}

}  // namespace

bool mma_linear_fits(std::size_t rows, std::size_t in, std::size_t out, const float* x,
                     const float* w) {
  return rows > kRowsLinearMaxRows && rows <= kMmaLinearMaxRows && in >= kMmaLinearMinIn &&
         in % kBk == 0 && in <= 0x7fffffffu && out > 0 && out <= 0x7fffffffu &&
         reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
}

cudaError_t mma_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                       const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                       int act, bool pdl, int sms) {
  if (!mma_linear_fits(rows, in, out, x, w)) return cudaErrorInvalidValue;
  if (rows <= kMmaLinearSmallTileRows) {
    return launch_tiles<32>(stream, y, x, w, bias, rows, in, out, act, pdl, sms);
  }
  return launch_tiles<64>(stream, y, x, w, bias, rows, in, out, act, pdl, sms);
}

}  // namespace tandem::backends::cuda::launch
