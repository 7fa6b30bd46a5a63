// nn_kernels.cu — the cuda backend's own nn kernels (see cuda_launch.h): bias+activation, the
// batch-1..4 GEMV+bias+activation, the small-batch (5..16 rows) and cluster (17..32 rows) linears,
// layer_norm, softmax, transpose, attention.
#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "backends/cuda/cluster_sum.cuh"
#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/pdl.cuh"
#include "backends/cuda/warp_reduce.cuh"

#include <cooperative_groups.h>

namespace tandem::backends::cuda::launch {
namespace {

constexpr int kThreads = 256;
constexpr std::size_t kMaxBlocks = 65535;

// block_sum / block_max: every thread gets the result. blockDim.x a multiple of 32, <= 1024.
// `shared` holds 32 floats; the trailing barrier makes it reusable at once.
__device__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < warps ? shared[lane] : 0.0f;
  r = warp_sum(r);
  __syncthreads();
  return r;
}
__device__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < warps ? shared[lane] : -FLT_MAX;
  r = warp_max(r);
  __syncthreads();
  return r;
}

__global__ void bias_act_kernel(float* y, const float* x, const float* __restrict__ bias,
                                std::size_t rows, std::size_t cols, int act) {
  const std::size_t total = rows * cols;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const float b = bias ? bias[i % cols] : 0.0f;
    y[i] = activate(x[i] + b, act);
  }
}

// Note [GEMV and PDL]
// With programmatic dependent launch (launch attribute programmaticStreamSerialization), a
// kernel may be scheduled before the previous kernel of its stream has finished. Every GEMV
// therefore begins with griddepcontrol.wait (cudaGridDependencySynchronize: returns once all
// preceding work of the stream has completed and its memory is visible; a no-op when the kernel
// was launched without the attribute) before touching memory, and then signals
// griddepcontrol.launch_dependents so that the next PDL kernel may be scheduled in turn. What
// overlaps is only the launch latency and block scheduling of the next kernel with the tail of
// this one: the order of memory effects is exactly the stream's. Dependents launch only once
// every block of this kernel has signalled or exited, so waiting blocks never starve it.
// (pdl_wait_then_release(): pdl.cuh, shared with the copy kernel of elementwise.cu.)

// A warp per output column o; ROWS input rows share each weight load.
template <int ROWS, bool VEC>
__global__ void gemv_kernel(float* __restrict__ y, const float* __restrict__ x,
                            const float* __restrict__ w, const float* __restrict__ bias,
                            std::size_t in, std::size_t out, int act) {
  pdl_wait_then_release();
  const std::size_t o = blockIdx.x * std::size_t{blockDim.x / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (o >= out) return;
  const float* wr = w + o * in;
  float acc[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) acc[r] = 0.0f;
  if constexpr (VEC) {
    const auto* w4 = reinterpret_cast<const float4*>(wr);
    const std::size_t n4 = in / 4;
    for (std::size_t i = lane; i < n4; i += 32) {
      const float4 wv = __ldg(w4 + i);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float4 xv = __ldg(reinterpret_cast<const float4*>(x + r * in) + i);
        acc[r] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
      }
    }
  } else {
    for (std::size_t i = lane; i < in; i += 32) {
      const float wv = __ldg(wr + i);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) acc[r] += wv * __ldg(x + r * in + i);
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const float s = warp_sum(acc[r]);
    if (lane == 0) y[r * out + o] = activate(s + (bias ? bias[o] : 0.0f), act);
  }
}

// Note [Small-batch linear]
// rows in (kGemvMaxRows, kRowsLinearMaxRows]: one block per kRowsLinearCols output columns,
// every row. The block's threads split the reduction dimension (16-byte steps when VEC), so each
// weight row is read once, coalesced, and x (at most 16 rows, L1-resident) is shared by the
// block's columns; a layer spreads over out / 2 blocks (the GEMV's warp per column would read
// all of x once per column, and one warp's registers cannot hold 16 rows' sums of several
// columns). Each thread keeps ROWS x kRowsLinearCols partial sums; a warp folds them with
// reduce_scatter (warp_reduce.cuh: 16 shuffles for 16 rows, against 80 for a warp_sum per row),
// after which lane l holds row l >> (5 - log2 ROWS); the warps' sums meet in shared memory, and
// one thread per output adds bias and activation. ROWS is a power of two >= rows (rows beyond
// `rows` are never read). PDL as the GEMV (Note [GEMV and PDL]).
// Why 16 rows (H100, `tandem bench --device cuda`, docs/benchmarks.md): at 8 rows the MLP ran
// 1.8-2x faster on one thread than with cuBLASLt and as fast at 8 threads; with 32 rows too (a
// 32-row variant, 168 registers a thread) one thread gained 33-55% (MLP batch 32, the eager
// encoder's batch 1), but 8 threads lost 13% (MLP batch 32) and 8-16 graph-replaying threads
// 15-35% (encoder batch 1): its out / 2 blocks filled the GPU, where cuBLASLt's few tiles left
// room for the other threads' kernels.
constexpr int kRowsLinearCols = 2;
constexpr int kRowsLinearMaxWarps = 8;

template <int ROWS, bool VEC>
__global__ void rows_linear_kernel(float* __restrict__ y, const float* __restrict__ x,
                                   const float* __restrict__ w, const float* __restrict__ bias,
                                   int rows, int in, int out, int act) {
  __shared__ float part[kRowsLinearMaxWarps][kRowsLinearCols][ROWS];
  pdl_wait_then_release();
  const int o0 = static_cast<int>(blockIdx.x) * kRowsLinearCols;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  float acc[kRowsLinearCols][ROWS];
#pragma unroll
  for (int c = 0; c < kRowsLinearCols; ++c) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) acc[c][r] = 0.0f;
  }
  const float* wr[kRowsLinearCols];
#pragma unroll
  for (int c = 0; c < kRowsLinearCols; ++c) {
    wr[c] = w + static_cast<std::size_t>(min(o0 + c, out - 1)) * in;  // a column past `out`: unused
  }
  if constexpr (VEC) {
    const int n4 = in / 4;
    for (int i = tid; i < n4; i += static_cast<int>(blockDim.x)) {
      float4 wv[kRowsLinearCols];
#pragma unroll
      for (int c = 0; c < kRowsLinearCols; ++c) wv[c] = __ldg(reinterpret_cast<const float4*>(wr[c]) + i);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (r < rows) {
          const float4 xv = __ldg(reinterpret_cast<const float4*>(x + static_cast<std::size_t>(r) * in) + i);
#pragma unroll
          for (int c = 0; c < kRowsLinearCols; ++c) {
            acc[c][r] += wv[c].x * xv.x + wv[c].y * xv.y + wv[c].z * xv.z + wv[c].w * xv.w;
          }
        }
      }
    }
  } else {
    for (int i = tid; i < in; i += static_cast<int>(blockDim.x)) {
      float wv[kRowsLinearCols];
#pragma unroll
      for (int c = 0; c < kRowsLinearCols; ++c) wv[c] = __ldg(wr[c] + i);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (r < rows) {
          const float xv = __ldg(x + static_cast<std::size_t>(r) * in + i);
#pragma unroll
          for (int c = 0; c < kRowsLinearCols; ++c) acc[c][r] += wv[c] * xv;
        }
      }
    }
  }
  constexpr int kShift = 5 - log2_of(ROWS);
  const int row = lane >> kShift;
  const bool holder = (lane & ((1 << kShift) - 1)) == 0;
#pragma unroll
  for (int c = 0; c < kRowsLinearCols; ++c) {
    const float s = reduce_scatter<ROWS>(acc[c], lane);
    if (holder) part[warp][c][row] = s;
  }
  __syncthreads();
  for (int i = tid; i < kRowsLinearCols * ROWS; i += static_cast<int>(blockDim.x)) {
    const int c = i / ROWS, r = i % ROWS, o = o0 + c;
    if (r < rows && o < out) {
      float s = 0.0f;
      for (int k = 0; k < warps; ++k) s += part[k][c][r];
      y[static_cast<std::size_t>(r) * out + o] = activate(s + (bias ? bias[o] : 0.0f), act);
    }
  }
}

// Note [Cluster linear]
// rows in (kRowsLinearMaxRows, kTileLinearMaxRows] (the encoder's batch 1: 32 rows): a cluster of
// S blocks per tile of 32 rows x 32 output columns, each block one S-th of the reduction
// dimension (split-K, S = 1, 2, 4 or 8, the fewest that give slices of at most 64 floats, else
// of at most kTileMaxSlice; cluster_splits): it stages its slices of x and
// w in shared memory (16-byte loads, up to 8 of each in flight a thread), each of its 128
// threads computes 4 rows x 2 columns of the partial tile, and the cluster sums the S partial
// tiles through distributed shared memory, block r the rows [r 32/S, (r + 1) 32/S), adding bias
// and activation. One kernel, where cuBLASLt takes two for some of these shapes (a split-K GEMM
// and its reduction kernel), and light blocks (128 threads, <= 38 KB of shared memory) that
// leave room for other streams' kernels. PDL as the GEMV.
// Only for weights of at most kTileLinearMaxWeights floats (1 MiB: the encoder's layers, 768 x
// 256 up to 256 x 1024), measured on the H100 (docs/benchmarks.md): the encoder's batch-1 graph
// gained 1-3% on one thread, 16-18% at 8 threads and 26-31% at 16; the MLP's 2-4 MiB layers at
// 32 rows (128-256 blocks a layer) lost 16% at 8 threads, where cuBLASLt's fewer, longer blocks
// share the GPU better.
constexpr int kTileRows = 32, kTileCols = 32, kTileThreads = 128, kTileMaxSlice = 128;

__global__ void __launch_bounds__(kTileThreads) cluster_linear_kernel(
    float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
    const float* __restrict__ bias, int rows, int in, int out, int act, int slice) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int ld = slice + 4;  // floats; a slice a multiple of 32: rows 16 bytes apart mod 128
                             // (a warp's column reads hit distinct banks)
  float* xs = smem;                           // kTileRows x ld
  float* ws = xs + kTileRows * ld;            // kTileCols x ld
  float* part = ws + kTileCols * ld;          // kTileRows x (kTileCols + 1)
  pdl_wait_then_release();
  cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int col0 = static_cast<int>(blockIdx.x) * kTileCols;
  const int k0 = rank * slice;
  const int tid = static_cast<int>(threadIdx.x);
  const int q = slice / 4;  // float4s per row of a slice
  const int n4 = kTileRows * q;
  for (int base = tid; base < n4; base += 8 * kTileThreads) {
    float4 xv[8], wv[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int i = base + u * kTileThreads;
      if (i < n4) {
        const int r = i / q, c4 = i % q;
        const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        xv[u] = r < rows ? __ldg(reinterpret_cast<const float4*>(x + static_cast<std::size_t>(r) * in + k0) + c4) : zero;
        wv[u] = col0 + r < out ? __ldg(reinterpret_cast<const float4*>(w + static_cast<std::size_t>(col0 + r) * in + k0) + c4) : zero;
      }
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int i = base + u * kTileThreads;
      if (i < n4) {
        const int r = i / q, c4 = i % q;
        *reinterpret_cast<float4*>(xs + r * ld + 4 * c4) = xv[u];
        *reinterpret_cast<float4*>(ws + r * ld + 4 * c4) = wv[u];
      }
    }
  }
  __syncthreads();
  // Thread t: rows 4 (t / 16) .. + 3, columns t % 16 and t % 16 + 16.
  const int rg = tid / 16, cg = tid % 16;
  float acc[4][2] = {};
  for (int k = 0; k < slice; k += 4) {
    float4 a[4], b[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(xs + (4 * rg + i) * ld + k);
#pragma unroll
    for (int j = 0; j < 2; ++j) b[j] = *reinterpret_cast<const float4*>(ws + (cg + 16 * j) * ld + k);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        acc[i][j] += a[i].x * b[j].x + a[i].y * b[j].y + a[i].z * b[j].z + a[i].w * b[j].w;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) part[(4 * rg + i) * (kTileCols + 1) + cg + 16 * j] = acc[i][j];
  }
  cluster_sum_tile<kTileRows, kTileCols, kTileThreads>(cluster, part, y, bias, 0, col0, rows, out,
                                                        act);
}

// cluster_splits(in, x, w): S for cluster_linear_kernel: the fewest splits (1, 2, 4, 8) whose
// slice is a multiple of 4 floats and at most 64 (more blocks pull the weights: the kernel is
// latency-bound), else at most kTileMaxSlice; 0 when none fits or x, w are not 16-byte aligned.
int cluster_splits(std::size_t in, const float* x, const float* w) {
  if (reinterpret_cast<std::uintptr_t>(x) % 16 != 0 || reinterpret_cast<std::uintptr_t>(w) % 16 != 0) {
    return 0;
  }
  for (std::size_t limit : {std::size_t{64}, static_cast<std::size_t>(kTileMaxSlice)}) {
    for (int s = 1; s <= 8; s *= 2) {
      const auto su = static_cast<std::size_t>(s);
      if (in % (4 * su) == 0 && in / su <= limit) return s;
    }
  }
  return 0;
}

// layer_norm_warp_kernel: a warp per row for cols <= 32 * VALS, the row in registers: one read
// of x (and residual), shuffles only, no block barrier (the block-per-row kernel below reads the
// row three times around two block reductions). y may alias x or residual: each lane reads all
// its elements before it writes them.
template <int VALS>
__global__ void layer_norm_warp_kernel(float* y, const float* x, const float* residual,
                                       const float* __restrict__ gamma,
                                       const float* __restrict__ beta, std::size_t rows,
                                       int cols, float eps) {
  pdl_wait_then_release();
  const std::size_t row = blockIdx.x * std::size_t{blockDim.x / 32} + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;
  const float* xr = x + row * cols;
  const float* rr = residual ? residual + row * cols : nullptr;
  float* yr = y + row * cols;
  float v[VALS];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < VALS; ++k) {
    const int c = lane + 32 * k;
    v[k] = c < cols ? xr[c] + (rr ? rr[c] : 0.0f) : 0.0f;
    s += v[k];
  }
  const float mean = warp_sum(s) / static_cast<float>(cols);
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < VALS; ++k) {
    const float dv = lane + 32 * k < cols ? v[k] - mean : 0.0f;
    sq += dv * dv;
  }
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(cols) + eps);
#pragma unroll
  for (int k = 0; k < VALS; ++k) {
    const int c = lane + 32 * k;
    if (c < cols) yr[c] = (v[k] - mean) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
  }
}

__global__ void layer_norm_kernel(float* y, const float* x, const float* residual,
                                  const float* __restrict__ gamma, const float* __restrict__ beta,
                                  std::size_t cols, float eps) {
  __shared__ float shared[32];
  pdl_wait_then_release();
  const std::size_t row = blockIdx.x;
  const float* xr = x + row * cols;
  const float* rr = residual ? residual + row * cols : nullptr;
  float* yr = y + row * cols;
  float s = 0.0f;
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c] + (rr ? rr[c] : 0.0f);
  const float mean = block_sum(s, shared) / static_cast<float>(cols);
  float sq = 0.0f;
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = xr[c] + (rr ? rr[c] : 0.0f) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, shared) / static_cast<float>(cols) + eps);
  // Every read of the row happened before the barriers above; each element below is read and
  // written by the same thread, so y may alias x or residual.
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = (xr[c] + (rr ? rr[c] : 0.0f) - mean) * inv;
    yr[c] = v * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
  }
}

__global__ void softmax_kernel(float* y, const float* x, std::size_t cols, float scale) {
  __shared__ float shared[32];
  const std::size_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
  float mx = -FLT_MAX;
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, scale * xr[c]);
  mx = block_max(mx, shared);
  float s = 0.0f;
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(scale * xr[c] - mx);
  const float inv = 1.0f / block_sum(s, shared);
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) {
    yr[c] = expf(scale * xr[c] - mx) * inv;
  }
}

constexpr int kTile = 32;

__global__ void transpose_kernel(float* __restrict__ y, const float* __restrict__ x,
                                 std::size_t rows, std::size_t cols, std::size_t batch0) {
  __shared__ float tile[kTile][kTile + 1];
  const std::size_t b = batch0 + blockIdx.z;
  const float* xb = x + b * rows * cols;
  float* yb = y + b * rows * cols;
  const std::size_t c0 = blockIdx.x * std::size_t{kTile}, r0 = blockIdx.y * std::size_t{kTile};
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::size_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = xb[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
    const std::size_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) yb[c * rows + r] = tile[threadIdx.x][i];
  }
}

__global__ void scale_matrix_kernel(float* c, std::size_t ldc, std::size_t stride_c,
                                    std::size_t m, std::size_t n, std::size_t batch, float beta) {
  const std::size_t total = batch * m * n;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t b = i / (m * n), r = (i / n) % m, j = i % n;
    float* p = c + b * stride_c + r * ldc + j;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

// Fused attention for short sequences (Note [CUDA attention] in cuda_launch.h): block = (b, h, a
// tile of kFusedWarps query rows), a warp per query row. K and V of the head and the tile's query
// rows are staged in shared memory (K and V rows padded to head_dim + 1 floats: no bank conflicts
// when lanes walk keys). Lane t computes the scores of keys t, t + 32, ... (seq <= 32 *
// kFusedMaxKeySlots) with four partial sums (the dot product is not one chain of head_dim
// dependent multiply-adds); softmax by warp shuffles; the warp's probabilities go to shared
// memory, and lanes split the head_dim outputs of P . V, reading each P[t] as a broadcast. The
// first version (four warps walking 16 query rows each, one accumulator, a shuffle per P[t], 8
// blocks for the encoder's batch 1) took 16.9 us a call under ncu on the H100, this one 8.1-8.7
// (docs/benchmarks.md).
constexpr int kFusedWarps = 8;
constexpr int kFusedMaxKeySlots = 4;  // seq <= 128

// fused_attention_floats(seq, head_dim): the fused kernel's shared memory, in floats.
constexpr std::size_t fused_attention_floats(std::size_t seq, std::size_t head_dim) {
  return 2 * seq * (head_dim + 1) + kFusedWarps * (head_dim + seq);
}

__global__ void attention_fused_kernel(float* __restrict__ out, const float* __restrict__ qkv,
                                       int seq, int heads, int head_dim, float scale) {
  extern __shared__ float smem[];
  pdl_wait_then_release();
  const int ld = head_dim + 1;
  float* ks = smem;                        // seq x ld
  float* vs = ks + seq * ld;               // seq x ld
  float* qs = vs + seq * ld;               // kFusedWarps x head_dim: the tile's query rows
  float* ps = qs + kFusedWarps * head_dim;  // kFusedWarps x seq: each warp's probabilities
  const int bh = static_cast<int>(blockIdx.x);
  const int h = bh % heads, b = bh / heads;
  const std::size_t d = static_cast<std::size_t>(heads) * head_dim;
  const float* base = qkv + static_cast<std::size_t>(b) * seq * 3 * d + h * head_dim;
  const int first = static_cast<int>(blockIdx.y) * kFusedWarps;
  const int tile = min(kFusedWarps, seq - first);
  const int tid = static_cast<int>(threadIdx.x), threads = static_cast<int>(blockDim.x);
  for (int i = tid; i < seq * head_dim; i += threads) {
    const int t = i / head_dim, j = i % head_dim;
    const float* row = base + static_cast<std::size_t>(t) * 3 * d + j;
    ks[t * ld + j] = row[d];
    vs[t * ld + j] = row[2 * d];
  }
  for (int i = tid; i < tile * head_dim; i += threads) {
    const int r = i / head_dim, j = i % head_dim;
    qs[i] = base[static_cast<std::size_t>(first + r) * 3 * d + j];
  }
  __syncthreads();
  const int warp = tid / 32, lane = tid % 32;
  if (warp >= tile) return;  // no barrier follows
  const float* q = qs + warp * head_dim;
  float p[kFusedMaxKeySlots];
  float mx = -FLT_MAX;
#pragma unroll
  for (int slot = 0; slot < kFusedMaxKeySlots; ++slot) {
    const int t = slot * 32 + lane;
    float dot = -FLT_MAX;
    if (t < seq) {
      const float* k = ks + t * ld;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      int j = 0;
      for (; j + 4 <= head_dim; j += 4) {
        a0 += q[j] * k[j];
        a1 += q[j + 1] * k[j + 1];
        a2 += q[j + 2] * k[j + 2];
        a3 += q[j + 3] * k[j + 3];
      }
      for (; j < head_dim; ++j) a0 += q[j] * k[j];
      dot = ((a0 + a1) + (a2 + a3)) * scale;
    }
    p[slot] = dot;
    mx = fmaxf(mx, dot);
  }
  mx = warp_max(mx);
  float sum = 0.0f;
#pragma unroll
  for (int slot = 0; slot < kFusedMaxKeySlots; ++slot) {
    const int t = slot * 32 + lane;
    p[slot] = t < seq ? expf(p[slot] - mx) : 0.0f;
    sum += p[slot];
  }
  const float inv = 1.0f / warp_sum(sum);
  float* pw = ps + warp * seq;
#pragma unroll
  for (int slot = 0; slot < kFusedMaxKeySlots; ++slot) {
    const int t = slot * 32 + lane;
    if (t < seq) pw[t] = p[slot] * inv;
  }
  __syncwarp();
  float* orow = out + (static_cast<std::size_t>(b) * seq + first + warp) * d + h * head_dim;
  for (int j = lane; j < head_dim; j += 32) {
    float a0 = 0.0f, a1 = 0.0f;
    int t = 0;
    for (; t + 2 <= seq; t += 2) {
      a0 += pw[t] * vs[t * ld + j];
      a1 += pw[t + 1] * vs[(t + 1) * ld + j];
    }
    if (t < seq) a0 += pw[t] * vs[t * ld + j];
    orow[j] = a0 + a1;
  }
}

// Attention, pass 1: block = one (b, h, s) query row; P[t] = softmax_t(scale * q . k_t) into
// scratch[(b*heads + h)*seq*seq + s*seq + t]. The query row is staged in shared memory.
__global__ void attention_scores_kernel(float* __restrict__ scratch, const float* __restrict__ qkv,
                                        std::size_t seq, std::size_t heads, std::size_t head_dim,
                                        float scale) {
  extern __shared__ float q[];  // head_dim floats
  __shared__ float shared[32];
  const std::size_t idx = blockIdx.x;
  const std::size_t s = idx % seq, h = (idx / seq) % heads, b = idx / (seq * heads);
  const std::size_t d = heads * head_dim;
  const float* base = qkv + b * seq * 3 * d;
  for (std::size_t j = threadIdx.x; j < head_dim; j += blockDim.x) {
    q[j] = base[s * 3 * d + h * head_dim + j];
  }
  __syncthreads();
  float* p = scratch + ((b * heads + h) * seq + s) * seq;
  float mx = -FLT_MAX;
  for (std::size_t t = threadIdx.x; t < seq; t += blockDim.x) {
    const float* k = base + t * 3 * d + d + h * head_dim;
    float dot = 0.0f;
    for (std::size_t j = 0; j < head_dim; ++j) dot += q[j] * k[j];
    dot *= scale;
    p[t] = dot;
    mx = fmaxf(mx, dot);
  }
  mx = block_max(mx, shared);
  float sum = 0.0f;
  for (std::size_t t = threadIdx.x; t < seq; t += blockDim.x) {
    const float e = expf(p[t] - mx);
    p[t] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum, shared);
  for (std::size_t t = threadIdx.x; t < seq; t += blockDim.x) p[t] *= inv;
}

// Attention, pass 2: block = one (b, h, s) row; out[j] = sum_t P[t] v_t[j], threads over j.
__global__ void attention_values_kernel(float* __restrict__ out, const float* __restrict__ qkv,
                                        const float* __restrict__ scratch, std::size_t seq,
                                        std::size_t heads, std::size_t head_dim) {
  const std::size_t idx = blockIdx.x;
  const std::size_t s = idx % seq, h = (idx / seq) % heads, b = idx / (seq * heads);
  const std::size_t d = heads * head_dim;
  const float* vbase = qkv + b * seq * 3 * d + 2 * d + h * head_dim;
  const float* p = scratch + ((b * heads + h) * seq + s) * seq;
  for (std::size_t j = threadIdx.x; j < head_dim; j += blockDim.x) {
    float acc = 0.0f;
    for (std::size_t t = 0; t < seq; ++t) acc += p[t] * vbase[t * 3 * d + j];
    out[(b * seq + s) * d + h * head_dim + j] = acc;
  }
}

unsigned grid_for(std::size_t n) {
  return static_cast<unsigned>(std::clamp<std::size_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// row_threads(cols): a block size for the row kernels, a multiple of 32 in [32, 1024].
unsigned row_threads(std::size_t cols) {
  const std::size_t t = std::clamp<std::size_t>((cols + 3) / 4, 32, 1024);
  return static_cast<unsigned>((t + 31) / 32 * 32);
}

template <int ROWS>
cudaError_t launch_gemv(cudaStream_t stream, float* y, const float* x, const float* w,
                        const float* bias, std::size_t in, std::size_t out, int act, bool pdl) {
  constexpr int kWarps = 8;
  const dim3 grid(static_cast<unsigned>((out + kWarps - 1) / kWarps)), block(kWarps * 32);
  const bool vec = in % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
  if (vec) return launch_ex(stream, {grid, block, 0, pdl}, gemv_kernel<ROWS, true>, y, x, w, bias, in, out, act);
  return launch_ex(stream, {grid, block, 0, pdl}, gemv_kernel<ROWS, false>, y, x, w, bias, in, out, act);
}

template <int ROWS>
cudaError_t launch_rows_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                               const float* bias, std::size_t rows, std::size_t in,
                               std::size_t out, int act, bool pdl) {
  const bool vec = in % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
  const std::size_t steps = vec ? in / 4 : in;  // the reduction's loads per weight row
  const dim3 grid(static_cast<unsigned>((out + kRowsLinearCols - 1) / kRowsLinearCols));
  const dim3 block(static_cast<unsigned>(
      std::clamp<std::size_t>((steps + 31) / 32 * 32, 32, kRowsLinearMaxWarps * 32)));
  const int r = static_cast<int>(rows), k = static_cast<int>(in), n = static_cast<int>(out);
  if (vec) return launch_ex(stream, {grid, block, 0, pdl}, rows_linear_kernel<ROWS, true>, y, x, w, bias, r, k, n, act);
  return launch_ex(stream, {grid, block, 0, pdl}, rows_linear_kernel<ROWS, false>, y, x, w, bias, r, k, n, act);
}

}  // namespace

cudaError_t bias_act(cudaStream_t stream, float* y, const float* x, const float* bias,
                     std::size_t rows, std::size_t cols, int act) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  bias_act_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(y, x, bias, rows, cols, act);
  return cudaGetLastError();
}

cudaError_t gemv_bias_act(cudaStream_t stream, float* y, const float* x, const float* w,
                          const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                          int act, bool pdl) {
  if (rows == 0 || out == 0) return cudaSuccess;
  switch (rows) {
    case 1: return launch_gemv<1>(stream, y, x, w, bias, in, out, act, pdl);
    case 2: return launch_gemv<2>(stream, y, x, w, bias, in, out, act, pdl);
    case 3: return launch_gemv<3>(stream, y, x, w, bias, in, out, act, pdl);
    case 4: return launch_gemv<4>(stream, y, x, w, bias, in, out, act, pdl);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t rows_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                        const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                        int act, bool pdl) {
  if (rows == 0 || out == 0) return cudaSuccess;
  if (rows > kRowsLinearMaxRows || in > 0x7fffffffu || out > 0x7fffffffu ||
      (out + kRowsLinearCols - 1) / kRowsLinearCols > 0x7fffffffu) {
    return cudaErrorInvalidValue;
  }
  if (rows <= 8) return launch_rows_linear<8>(stream, y, x, w, bias, rows, in, out, act, pdl);
  return launch_rows_linear<16>(stream, y, x, w, bias, rows, in, out, act, pdl);
}

bool cluster_linear_fits(std::size_t rows, std::size_t in, std::size_t out, const float* x,
                         const float* w) {
  return rows > 0 && rows <= kTileLinearMaxRows && out > 0 && in <= kTileLinearMaxWeights &&
         out <= kTileLinearMaxWeights / std::max<std::size_t>(in, 1) &&
         cluster_splits(in, x, w) > 0;
}

cudaError_t cluster_linear(cudaStream_t stream, float* y, const float* x, const float* w,
                           const float* bias, std::size_t rows, std::size_t in, std::size_t out,
                           int act, bool pdl) {
  if (!cluster_linear_fits(rows, in, out, x, w)) return cudaErrorInvalidValue;
  const int s = cluster_splits(in, x, w);
  const int slice = static_cast<int>(in) / s;
  const std::size_t smem =
      (static_cast<std::size_t>(kTileRows + kTileCols) * (slice + 4) + kTileRows * (kTileCols + 1)) *
      sizeof(float);
  const dim3 grid(static_cast<unsigned>((out + kTileCols - 1) / kTileCols), static_cast<unsigned>(s));
  return launch_ex(stream, {grid, dim3(kTileThreads), smem, pdl, static_cast<unsigned>(s)},
                   cluster_linear_kernel, y, x, w, bias, static_cast<int>(rows),
                   static_cast<int>(in), static_cast<int>(out), act, slice);
}

cudaError_t layer_norm(cudaStream_t stream, float* y, const float* x, const float* residual,
                       const float* gamma, const float* beta, std::size_t rows, std::size_t cols,
                       float eps, bool pdl) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffffu) return cudaErrorInvalidValue;
  if (cols <= 32 * 32) {
    constexpr unsigned kRowsPerBlock = kThreads / 32;
    const dim3 grid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
    const int c = static_cast<int>(cols);
    if (cols <= 32 * 8) {
      return launch_ex(stream, {grid, dim3(kThreads), 0, pdl}, layer_norm_warp_kernel<8>, y, x,
                       residual, gamma, beta, rows, c, eps);
    }
    return launch_ex(stream, {grid, dim3(kThreads), 0, pdl}, layer_norm_warp_kernel<32>, y, x,
                     residual, gamma, beta, rows, c, eps);
  }
  return launch_ex(stream, {dim3(static_cast<unsigned>(rows)), dim3(row_threads(cols)), 0, pdl},
                   layer_norm_kernel, y, x, residual, gamma, beta, cols, eps);
}

cudaError_t softmax(cudaStream_t stream, float* y, const float* x, std::size_t rows,
                    std::size_t cols, float scale) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffffu) return cudaErrorInvalidValue;
  softmax_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, stream>>>(y, x, cols, scale);
  return cudaGetLastError();
}

cudaError_t transpose(cudaStream_t stream, float* y, const float* x, std::size_t batch,
                      std::size_t rows, std::size_t cols) {
  if (batch == 0 || rows == 0 || cols == 0) return cudaSuccess;
  const dim3 block(kTile, 8);
  for (std::size_t b0 = 0; b0 < batch; b0 += kMaxBlocks) {
    const dim3 grid(static_cast<unsigned>((cols + kTile - 1) / kTile),
                    static_cast<unsigned>((rows + kTile - 1) / kTile),
                    static_cast<unsigned>(std::min(kMaxBlocks, batch - b0)));
    transpose_kernel<<<grid, block, 0, stream>>>(y, x, rows, cols, b0);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t scale_matrix(cudaStream_t stream, float* c, std::size_t ldc, std::size_t stride_c,
                         std::size_t m, std::size_t n, std::size_t batch, float beta) {
  if (m == 0 || n == 0 || batch == 0) return cudaSuccess;
  scale_matrix_kernel<<<grid_for(batch * m * n), kThreads, 0, stream>>>(c, ldc, stride_c, m, n,
                                                                        batch, beta);
  return cudaGetLastError();
}

cudaError_t attention(cudaStream_t stream, float* out, const float* qkv, float* scratch,
                      std::size_t batch, std::size_t seq, std::size_t heads,
                      std::size_t head_dim, float scale, bool pdl) {
  const std::size_t rows = batch * heads * seq;
  if (rows == 0 || head_dim == 0) return cudaSuccess;
  if (rows > 0x7fffffffu || head_dim > 12 * 1024) return cudaErrorInvalidValue;
  const std::size_t fused_smem = fused_attention_floats(seq, head_dim) * sizeof(float);
  if (seq <= 32 * kFusedMaxKeySlots && fused_smem <= 48 * 1024 && batch * heads <= 0x7fffffffu) {
    const dim3 grid(static_cast<unsigned>(batch * heads),
                    static_cast<unsigned>((seq + kFusedWarps - 1) / kFusedWarps));
    return launch_ex(stream, {grid, dim3(kFusedWarps * 32), fused_smem, pdl},
                     attention_fused_kernel, out, qkv, static_cast<int>(seq),
                     static_cast<int>(heads), static_cast<int>(head_dim), scale);
  }
  const unsigned t1 = static_cast<unsigned>(std::clamp<std::size_t>((seq + 31) / 32 * 32, 32, 256));
  attention_scores_kernel<<<static_cast<unsigned>(rows), t1, head_dim * sizeof(float), stream>>>(
      scratch, qkv, seq, heads, head_dim, scale);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const unsigned t2 =
      static_cast<unsigned>(std::clamp<std::size_t>((head_dim + 31) / 32 * 32, 32, 1024));
  attention_values_kernel<<<static_cast<unsigned>(rows), t2, 0, stream>>>(out, qkv, scratch, seq,
                                                                          heads, head_dim);
  return cudaGetLastError();
}

}  // namespace tandem::backends::cuda::launch
