// encoder_kernel.cu — the fused encoder (Note [Fused encoder]): a whole stack of post-norm
// transformer encoder layers of the reference encoder's sizes in one kernel, a thread-block
// cluster per sequence.
//
// Note [Fused encoder]
// The encoder's batch-1 forward op by op is 14 kernels (per layer: in_proj, attention, out_proj,
// layer_norm, linear1, linear2, layer_norm) on 32 x 256 activations: each does a few us of work
// and the forward's time is mostly the gaps between them (docs/benchmarks.md, "Encoder batch
// 1"). Here the forward is one kernel: a cluster of C blocks (C = 8, or 16 where the GPU can
// schedule it: kEncoderClusterAuto) per sequence, 512 threads a block, one block an SM, and
// every phase of every layer split over the cluster's blocks by output columns, the phases
// separated by cluster barriers (hardware, no grid-wide atomics) instead of kernel boundaries:
//   P1  stage the layer input (layer > 0: the previous layer's pre-norm sum, normalized here by
//       every block for its own use; block r also stores its 256 / C columns of the normalized
//       input, the residual of P3) | qkv = x . in_w^T + in_b, block r its 768 / C columns
//   P2  attention: block r one head's (r / (C / 4)) share of the query rows, a warp per row
//   P3  t1 = att . out_w^T + out_b + x (pre-norm), block r its 256 / C columns
//   P4  stage t1, normalize (norm1), block r stores its columns of the normalized t1 (the
//       residual of P5) | hidden = relu(t1 . lin1_w^T + lin1_b), block r its 1024 / C columns
//   P5  t2 = hidden . lin2_w^T + lin2_b + t1 (pre-norm), block r its 256 / C columns
//   after the last layer: y = norm2(t2), row r of the sequence by block r mod C.
// Activations live in the caller's workspace (global memory, L2-resident at these sizes), read
// with ld.global.cg so that no block sees a stale L1 line of another's writes; each barrier is a
// __threadfence() and cluster.sync(). Weights are read straight from global memory (L2): each is
// used by exactly one block of the cluster per forward.
// A phase's matrix product: the block's output columns in tiles of 8 rows x 8 columns, a warp
// per tile; the warp's 32 lanes split the reduction dimension (lane l the float4s 4l, 4l + 128,
// ...), so every load is a 512-byte contiguous warp access (weights from global, activations
// from the shared-memory stage), and the 64 partial sums a lane holds are folded by two
// reduce_scatter<32> (62 shuffles) into one output per lane and half. Where a phase has fewer
// tiles than warps (C = 16: 16 columns), two warps split each tile's reduction and the block adds
// their halves in shared memory, in a fixed order (results are deterministic).
// Numerics: fp32 throughout (no tensor cores, TF32 or not); sums in a different order than the
// op-by-op kernels, so results agree with them to rounding (tests: 1e-4 against the cpu backend).
// Sizes: d_model 256, 4 heads, feed-forward 1024, ReLU, seq <= 32, any eps; other encoders take
// the op-by-op path (encoder_stack_fits).
#include <cuda_runtime.h>

#include <array>
#include <cfloat>
#include <mutex>

#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/pdl.cuh"
#include "backends/cuda/warp_reduce.cuh"

#include <cooperative_groups.h>

namespace tandem::backends::cuda::launch {
namespace {

namespace cg = cooperative_groups;

constexpr int kD = 256, kFF = 1024, kHeads = 4, kHeadDim = kD / kHeads, kQkv = 3 * kD;
constexpr int kRows = 32;  // rows a cluster computes (the sequence, zero-padded)
constexpr int kThreads = 512, kWarps = kThreads / 32;
constexpr int kTileR = 8, kTileC = 8;  // a warp task: rows x columns
constexpr int kAttnLd = kHeadDim + 1;  // K and V rows in shared memory: distinct banks per key
// Shared memory: the stage (kRows x up to kFF floats), then the split-reduction partials
// (2 x kRows x 16 floats at most); attention reuses the stage's space.
constexpr int kStageFloats = kRows * kFF;
constexpr int kPartFloats = 2 * kRows * 16;
constexpr std::size_t kSmemBytes = (kStageFloats + kPartFloats) * sizeof(float);
static_assert((2 * kRows * kAttnLd + kWarps * kHeadDim) <= kStageFloats);

// Workspace regions, each rows_total x width floats (rows_total = batch x seq):
//   qkv [3 d] (P1 -> P2; then P3's output t1, seq x d in the sequence's own qkv rows)
//   att [d]   (P2 -> P3; P5's output t2 -> the next layer's P1 / the final norm)
//   t1n [d]   (P4's normalized t1, P5's residual)
//   hid [ff]  (P4 -> P5)
//   xn  [d]   (P1's normalized layer input, P3's residual; layer 0 uses x itself)
struct Regions {
  float *qkv, *t1, *att, *t1n, *hid, *xn;
};

__device__ __forceinline__ Regions regions_of(float* ws, std::size_t rows_total, std::size_t row0) {
  Regions g;
  float* qkv = ws;
  float* att = qkv + rows_total * kQkv;
  float* t1n = att + rows_total * kD;
  float* hid = t1n + rows_total * kD;
  float* xn = hid + rows_total * kFF;
  g.qkv = qkv + row0 * kQkv;
  g.t1 = g.qkv;  // the sequence's own qkv rows (seq x 3d) hold its seq x d t1
  g.att = att + row0 * kD;
  g.t1n = t1n + row0 * kD;
  g.hid = hid + row0 * kFF;
  g.xn = xn + row0 * kD;
  return g;
}

// cluster_barrier(cluster): every block's global and shared writes before it are visible to
// every block of the cluster after it.
__device__ __forceinline__ void cluster_barrier(cg::cluster_group& cluster) {
  __threadfence();
  cluster.sync();
}

// stage_rows<K>(a, src, seq): a[r][k] = src[r * K + k] for r < seq, 0 for seq <= r < kRows.
template <int K>
__device__ void stage_rows(float* a, const float* src, int seq) {
  constexpr int q = K / 4;
  const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int i = static_cast<int>(threadIdx.x); i < kRows * q; i += kThreads) {
    reinterpret_cast<float4*>(a)[i] =
        i / q < seq ? __ldcg(reinterpret_cast<const float4*>(src) + i) : zero;
  }
}

// normalize_rows(a, gamma, beta, seq, eps): rows r < seq of a (kRows x kD, shared memory)
// replaced by layer_norm(a[r]) * gamma + beta, a warp per row (biased variance, PyTorch's).
__device__ void normalize_rows(float* a, const float* __restrict__ gamma,
                               const float* __restrict__ beta, int seq, float eps) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  constexpr int kVals = kD / 32;
  for (int r = warp; r < seq; r += kWarps) {
    float* row = a + r * kD;
    float v[kVals];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kVals; ++k) {
      v[k] = row[lane + 32 * k];
      s += v[k];
    }
    const float mean = warp_sum(s) / static_cast<float>(kD);
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kVals; ++k) sq += (v[k] - mean) * (v[k] - mean);
    const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(kD) + eps);
#pragma unroll
    for (int k = 0; k < kVals; ++k) {
      const int c = lane + 32 * k;
      row[c] = (v[k] - mean) * inv * __ldg(gamma + c) + __ldg(beta + c);
    }
  }
}

// store_columns(dst, a, c0, n, seq): dst[r * kD + c0 + c] = a[r * kD + c0 + c] for r < seq,
// c < n: the block's share of a staged (normalized) activation, for the later phase that needs
// those columns as its residual.
__device__ void store_columns(float* dst, const float* a, int c0, int n, int seq) {
  for (int i = static_cast<int>(threadIdx.x); i < seq * n; i += kThreads) {
    const int r = i / n, c = c0 + i % n;
    dst[r * kD + c] = a[r * kD + c];
  }
}

// Epilogue of a phase's product: y[r * ld + c] = act(sum + bias[c] + residual[r * kD + c]).
struct Epilogue {
  float* y;
  int ld;
  const float* bias;
  const float* residual;  // rows x kD, or null
  int act;
};

__device__ __forceinline__ void finish(const Epilogue& e, int r, int c, float v, int seq) {
  if (r >= seq) return;
  v += __ldg(e.bias + c);
  if (e.residual) v += __ldcg(e.residual + r * kD + c);
  e.y[r * e.ld + c] = activate(v, e.act);
}

// block_product<K>(a, w, c0, n, seq, e, part): the block's columns [c0, c0 + n) (n a multiple
// of kTileC, at least 16) of a (kRows x K, shared memory) . w^T (w: out x K, global), through
// the epilogue. Every thread of the block calls it (it may synchronize the block).
template <int K>
__device__ void block_product(const float* a, const float* __restrict__ w, int c0, int n,
                              int seq, const Epilogue& e, float* part) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  constexpr int kRowTiles = kRows / kTileR;
  const int tiles = kRowTiles * (n / kTileC);
  const int split = tiles >= kWarps ? 1 : kWarps / tiles;  // 1 or 2 (n >= 16)
  const int span = K / split;
  for (int t = warp; t < tiles * split; t += kWarps) {
    const int tile = t % tiles, half = t / tiles;
    const int r0 = (tile % kRowTiles) * kTileR, cl0 = (tile / kRowTiles) * kTileC;
    float acc[kTileR * kTileC];
#pragma unroll
    for (int i = 0; i < kTileR * kTileC; ++i) acc[i] = 0.0f;
    const float* wt = w + static_cast<std::size_t>(c0 + cl0) * K;
    for (int k = half * span + 4 * lane; k < (half + 1) * span; k += 128) {
      float4 wv[kTileC];
#pragma unroll
      for (int j = 0; j < kTileC; ++j) wv[j] = __ldg(reinterpret_cast<const float4*>(wt + j * K + k));
#pragma unroll
      for (int i = 0; i < kTileR; ++i) {
        const float4 av = *reinterpret_cast<const float4*>(a + (r0 + i) * K + k);
#pragma unroll
        for (int j = 0; j < kTileC; ++j) {
          float& s = acc[i * kTileC + j];
          s = fmaf(av.x, wv[j].x, s);
          s = fmaf(av.y, wv[j].y, s);
          s = fmaf(av.z, wv[j].z, s);
          s = fmaf(av.w, wv[j].w, s);
        }
      }
    }
    // Lane l: rows r0 + l / 8 and r0 + 4 + l / 8, column cl0 + l % 8.
    const float lo = reduce_scatter<32>(acc, lane);
    const float hi = reduce_scatter<32>(acc + 32, lane);
    const int r = r0 + lane / kTileC, c = cl0 + lane % kTileC;
    if (split == 1) {
      finish(e, r, c0 + c, lo, seq);
      finish(e, r + 4, c0 + c, hi, seq);
    } else {
      part[(half * kRows + r) * n + c] = lo;
      part[(half * kRows + r + 4) * n + c] = hi;
    }
  }
  if (split > 1) {
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < kRows * n; i += kThreads) {
      const int r = i / n, c = i % n;
      float s = part[r * n + c];
      for (int h = 1; h < split; ++h) s += part[(h * kRows + r) * n + c];
      finish(e, r, c0 + c, s, seq);
    }
  }
}

// attention_share(smem, qkv, att, rank, blocks, seq, scale): block `rank` of `blocks` (a multiple
// of kHeads) computes head rank / (blocks / kHeads)'s output for its share of the query rows:
// K and V of the head staged in shared memory, a warp per query row (lane t: key t's score),
// softmax in registers, P . V with the probabilities broadcast by shuffles.
__device__ void attention_share(float* smem, const float* qkv, float* att, int rank, int blocks,
                                int seq, float scale) {
  const int per_head = blocks / kHeads;
  const int h = rank / per_head;
  const int rows_each = (seq + per_head - 1) / per_head;
  const int q0 = (rank % per_head) * rows_each;
  const int nq = min(rows_each, seq - q0);  // may be <= 0: nothing to compute
  float* ks = smem;                 // kRows x kAttnLd
  float* vs = ks + kRows * kAttnLd;  // kRows x kAttnLd
  float* qs = vs + kRows * kAttnLd;  // kWarps x kHeadDim
  const int tid = static_cast<int>(threadIdx.x);
  for (int i = tid; i < seq * kHeadDim; i += kThreads) {
    const int t = i / kHeadDim, j = i % kHeadDim;
    const float* row = qkv + t * kQkv + h * kHeadDim + j;
    ks[t * kAttnLd + j] = __ldcg(row + kD);
    vs[t * kAttnLd + j] = __ldcg(row + 2 * kD);
  }
  for (int i = tid; i < nq * kHeadDim; i += kThreads) {
    const int r = i / kHeadDim, j = i % kHeadDim;
    qs[i] = __ldcg(qkv + (q0 + r) * kQkv + h * kHeadDim + j);
  }
  __syncthreads();
  const int warp = tid / 32, lane = tid % 32;
  if (warp >= nq) return;  // no barrier follows in this phase
  const float* q = qs + warp * kHeadDim;
  float score = -FLT_MAX;
  if (lane < seq) {
    const float* k = ks + lane * kAttnLd;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma unroll
    for (int j = 0; j < kHeadDim; j += 4) {
      a0 = fmaf(q[j], k[j], a0);
      a1 = fmaf(q[j + 1], k[j + 1], a1);
      a2 = fmaf(q[j + 2], k[j + 2], a2);
      a3 = fmaf(q[j + 3], k[j + 3], a3);
    }
    score = ((a0 + a1) + (a2 + a3)) * scale;
  }
  const float mx = warp_max(score);
  float p = lane < seq ? expf(score - mx) : 0.0f;
  p /= warp_sum(p);
  float o0 = 0.0f, o1 = 0.0f;
  for (int t = 0; t < seq; ++t) {
    const float pt = __shfl_sync(0xffffffffu, p, t);
    o0 = fmaf(pt, vs[t * kAttnLd + lane], o0);
    o1 = fmaf(pt, vs[t * kAttnLd + lane + 32], o1);
  }
  float* out = att + (q0 + warp) * kD + h * kHeadDim;
  out[lane] = o0;
  out[lane + 32] = o1;
}

template <int C>
__global__ void __launch_bounds__(kThreads, 1) encoder_stack_kernel(EncoderStackParams p) {
  static_assert(C % kHeads == 0 && kD % (C * kTileC) == 0 && kD / C >= 16);
  extern __shared__ float4 smem4[];
  float* stage = reinterpret_cast<float*>(smem4);
  float* part = stage + kStageFloats;
  pdl_wait_then_release();
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int seq = p.seq;
  const std::size_t b = blockIdx.x;
  const Regions g = regions_of(p.ws, static_cast<std::size_t>(p.batch) * seq, b * seq);
  const float* x = p.x + b * seq * kD;
  constexpr int nd = kD / C, nqkv = kQkv / C, nff = kFF / C;
  for (int l = 0; l < p.layers; ++l) {
    const EncoderStackLayer& L = p.layer[l];
    // P1: the layer's input (normalized by the previous layer's norm2), then qkv.
    stage_rows<kD>(stage, l == 0 ? x : g.att, seq);
    __syncthreads();
    if (l > 0) {
      normalize_rows(stage, p.layer[l - 1].norm2_w, p.layer[l - 1].norm2_b, seq, p.eps);
      __syncthreads();
      store_columns(g.xn, stage, rank * nd, nd, seq);
    }
    const float* residual = l == 0 ? x : g.xn;
    block_product<kD>(stage, L.in_w, rank * nqkv, nqkv, seq, {g.qkv, kQkv, L.in_b, nullptr, 0},
                      part);
    cluster_barrier(cluster);
    // P2: attention.
    attention_share(stage, g.qkv, g.att, rank, C, seq, p.scale);
    cluster_barrier(cluster);
    // P3: out_proj + the residual, before norm1.
    stage_rows<kD>(stage, g.att, seq);
    __syncthreads();
    block_product<kD>(stage, L.out_w, rank * nd, nd, seq, {g.t1, kD, L.out_b, residual, 0}, part);
    cluster_barrier(cluster);
    // P4: norm1, then linear1 + ReLU.
    stage_rows<kD>(stage, g.t1, seq);
    __syncthreads();
    normalize_rows(stage, L.norm1_w, L.norm1_b, seq, p.eps);
    __syncthreads();
    store_columns(g.t1n, stage, rank * nd, nd, seq);
    block_product<kD>(stage, L.lin1_w, rank * nff, nff, seq, {g.hid, kFF, L.lin1_b, nullptr, p.act},
                      part);
    cluster_barrier(cluster);
    // P5: linear2 + the residual, before norm2 (into att's space: attention's output is dead).
    stage_rows<kFF>(stage, g.hid, seq);
    __syncthreads();
    block_product<kFF>(stage, L.lin2_w, rank * nd, nd, seq, {g.att, kD, L.lin2_b, g.t1n, 0}, part);
    cluster_barrier(cluster);
  }
  // The last norm2, into y: row r by block r mod C, a warp per row.
  const EncoderStackLayer& last = p.layer[p.layers - 1];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int r = rank + C * warp;
  if (r < seq) {
    constexpr int kVals = kD / 32;
    const float* src = g.att + r * kD;
    float v[kVals];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kVals; ++k) {
      v[k] = __ldcg(src + lane + 32 * k);
      s += v[k];
    }
    const float mean = warp_sum(s) / static_cast<float>(kD);
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kVals; ++k) sq += (v[k] - mean) * (v[k] - mean);
    const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(kD) + p.eps);
    float* dst = p.y + (b * seq + r) * kD;
#pragma unroll
    for (int k = 0; k < kVals; ++k) {
      const int c = lane + 32 * k;
      dst[c] = (v[k] - mean) * inv * __ldg(last.norm2_w + c) + __ldg(last.norm2_b + c);
    }
  }
}

// Per device: the kernels' attributes set (shared memory above 48 KiB, the non-portable cluster
// size) and the auto cluster size chosen, once.
constexpr int kMaxDevices = 64;
struct Prepared {
  std::once_flag once;
  cudaError_t status = cudaSuccess;
  int auto_cluster = 8;
};
std::array<Prepared, kMaxDevices> g_prepared;

template <int C>
cudaError_t set_attributes() {
  cudaError_t e = cudaFuncSetAttribute(encoder_stack_kernel<C>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(kSmemBytes));
  if (e == cudaSuccess && C > 8) {
    e = cudaFuncSetAttribute(encoder_stack_kernel<C>,
                             cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  }
  return e;
}

// prepared(): this device's Prepared, set up on first use; null if the device ordinal is out of
// range or cudaGetDevice fails (status in *error).
Prepared* prepared(cudaError_t* error) {
  int dev = 0;
  *error = cudaGetDevice(&dev);
  if (*error != cudaSuccess) return nullptr;
  if (dev < 0 || dev >= kMaxDevices) {
    *error = cudaErrorInvalidDevice;
    return nullptr;
  }
  Prepared& pr = g_prepared[static_cast<std::size_t>(dev)];
  std::call_once(pr.once, [&pr] {
    pr.status = set_attributes<8>();
    if (pr.status == cudaSuccess) pr.status = set_attributes<16>();
    if (pr.status != cudaSuccess) return;
    // 16 when at least one cluster of 16 such blocks fits the GPU (H100: yes).
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(1, 16);
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = kSmemBytes;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 1;
    attr.val.clusterDim.y = 16;
    attr.val.clusterDim.z = 1;
    config.attrs = &attr;
    config.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, encoder_stack_kernel<16>, &config) ==
            cudaSuccess &&
        clusters >= 1) {
      pr.auto_cluster = 16;
    }
    (void)cudaGetLastError();  // a failed query only means 8
  });
  *error = pr.status;
  return pr.status == cudaSuccess ? &pr : nullptr;
}

}  // namespace

bool encoder_stack_fits(std::size_t batch, std::size_t seq, std::size_t d_model,
                        std::size_t heads, std::size_t feed_forward, std::size_t layers, int act) {
  return batch >= 1 && batch <= kEncoderStackMaxBatch && seq >= 1 &&
         seq <= static_cast<std::size_t>(kRows) && d_model == kD && heads == kHeads &&
         feed_forward == kFF && layers >= 1 && layers <= kEncoderStackMaxLayers && act == 1;
}

cudaError_t encoder_stack(cudaStream_t stream, const EncoderStackParams& params, int cluster,
                          bool pdl) {
  if (params.batch < 1 || static_cast<std::size_t>(params.batch) > kEncoderStackMaxBatch ||
      params.seq < 1 || params.seq > kRows || params.layers < 1 ||
      static_cast<std::size_t>(params.layers) > kEncoderStackMaxLayers) {
    return cudaErrorInvalidValue;
  }
  cudaError_t e = cudaSuccess;
  const Prepared* pr = prepared(&e);
  if (!pr) return e;
  const int c = cluster == kEncoderClusterAuto ? pr->auto_cluster : cluster;
  const dim3 grid(static_cast<unsigned>(params.batch), static_cast<unsigned>(c));
  if (c == 16) {
    return launch_ex(stream, {grid, dim3(kThreads), kSmemBytes, pdl, 16u},
                     encoder_stack_kernel<16>, params);
  }
  if (c == 8) {
    return launch_ex(stream, {grid, dim3(kThreads), kSmemBytes, pdl, 8u},
                     encoder_stack_kernel<8>, params);
  }
  return cudaErrorInvalidValue;
}

}  // namespace tandem::backends::cuda::launch
