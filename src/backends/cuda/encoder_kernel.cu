// encoder_kernel.cu — the fused encoder (Note [Fused encoder]): a whole stack of post-norm
// transformer encoder layers of the reference encoder's sizes in one kernel, a thread-block
// cluster per sequence.
//
// Note [Fused encoder]
// The encoder's batch-1 forward op by op is 14 kernels (per layer: in_proj, attention, out_proj,
// layer_norm, linear1, linear2, layer_norm) on 32 x 256 activations: each does a few us of work
// and the forward's time is mostly the gaps between them (docs/benchmarks.md, "Encoder batch
// 1"). Here the forward is one kernel: a cluster of 16 blocks (a non-portable cluster size,
// Hopper's largest) per sequence, 512 threads and 196 KiB of shared memory a block, one block an
// SM, and every phase of every layer split over the cluster's blocks by output columns, the
// phases separated by cluster barriers (hardware, no grid-wide atomics) instead of kernel
// boundaries:
//   P1  stage the layer input (layer > 0: the previous layer's pre-norm sum, normalized here by
//       every block for its own use; block r also stores its 16 columns of the normalized
//       input, the residual of P3) | qkv = x . in_w^T + in_b, block r its 48 columns
//   P2  attention: block r head r / 4's quarter of the query rows, a warp per row
//   P3  t1 = att . out_w^T + out_b + x (pre-norm), block r its 16 columns
//   P4  stage t1, normalize (norm1), block r stores its columns of the normalized t1 (the
//       residual of P5) | hidden = relu(t1 . lin1_w^T + lin1_b), block r its 64 columns
//   P5  t2 = hidden . lin2_w^T + lin2_b + t1 (pre-norm), block r its 16 columns
//   after the last layer: y = norm2(t2), row r of the sequence by block r mod 16.
// Activations live in the caller's workspace (global memory, L2-resident at these sizes) and are
// staged into shared memory by cp.async.cg (through L2 only, so no block sees a stale L1 line of
// another's writes); each barrier is a cluster.sync() (release / acquire). Each phase's weight
// slice (at most 64 KiB a block; each weight is used by exactly one block of the cluster) is
// copied into shared memory by cp.async as soon as the phase before has finished reading the
// buffer, so its latency hides behind the cluster barrier.
// A phase's matrix product: the block's output columns in tiles of 8 rows x 8 columns, a warp
// per tile, each quarter of the tile (4 x 4) on 8 lanes that split the reduction dimension
// (block_product). Where a phase has fewer tiles than warps (16 columns), two warps split each
// tile's reduction and the block adds their halves in shared memory, in a fixed order (results
// are deterministic).
// Numerics: fp32 throughout (no tensor cores, TF32 or not); sums in a different order than the
// op-by-op kernels, so results agree with them to rounding (tests: 1e-4 against the cpu backend).
// Sizes: d_model 256, 4 heads, feed-forward 1024, ReLU, seq <= 32, any eps; other encoders, and
// devices that cannot schedule such a cluster, take the op-by-op path (encoder_stack_fits).
// Measured on the H100 (docs/benchmarks.md, "The fused encoder"): ~70 us a forward under ncu,
// 0.4 instructions issued per scheduler and cycle: the chain of ten phases (barrier, staging
// wait, product, epilogue) bounds it, not the products (16 x 16 warp tiles, with half the
// shared-memory loads per multiply-add, ran no faster). Batch-1 graph replays: +32% forwards/s on
// one thread, +55% at 8, even at 16 (8 clusters of 16 SMs fit the GPU at once).
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
constexpr int kCluster = 16;  // blocks a cluster (non-portable size: Hopper)
constexpr int kRows = 32;     // rows a cluster computes (the sequence, zero-padded)
// 512 threads: 128 registers a thread (1024 threads, at 64 registers, ran 8% slower on the H100).
constexpr int kThreads = 512, kWarps = kThreads / 32;
constexpr int kTileR = 8, kTileC = 8;  // a warp task: rows x columns
constexpr int kAttnLd = kHeadDim + 4;  // K and V rows in shared memory: 16-byte rows, and the
                                       // 8 lanes of a 16-byte access phase on distinct banks
// A block's output columns per phase: in_proj, out_proj / linear2, linear1.
constexpr int kNQkv = kQkv / kCluster, kND = kD / kCluster, kNFF = kFF / kCluster;
// Shared memory: the stage (kRows x up to kFF floats: a phase's input; attention reuses it for
// K, V and the query rows), the weight buffer (the block's slice of a phase's weights: at most
// 64 KiB), the split-reduction partials (2 x kRows x kND floats: the 16-column phases' 8 tiles
// on 16 warps).
constexpr int kStageFloats = kRows * kFF;
constexpr int kWeightFloats = kNFF * kD > kND * kFF ? kNFF * kD : kND * kFF;
constexpr int kPartFloats = kWarps / 8 * kRows * kND;  // phases of 16 columns: 8 tiles
constexpr std::size_t kSmemBytes = (kStageFloats + kWeightFloats + kPartFloats) * sizeof(float);
static_assert(kNQkv * kD <= kWeightFloats);
static_assert(2 * kRows * kAttnLd + kWarps * kHeadDim <= kStageFloats);
static_assert(kSmemBytes <= 227 * 1024);

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

// copy16(dst, src): an asynchronous 16-byte copy global -> shared (cp.async.cg: through L2 only,
// so never a stale L1 line of another block's writes). wait_copies(): this thread's copies have
// landed (a __syncthreads() must follow before other threads read them).
__device__ __forceinline__ void copy16(float* dst, const float* src) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}

// cluster_barrier(cluster): every block's global and shared writes before it are visible to
// every block of the cluster after it: barrier.cluster.arrive has release and barrier.cluster.wait
// acquire semantics at cluster scope, for every state space (PTX ISA, "barrier.cluster"); the
// reads after it go through L2 (cp.async.cg, ld.global.cg), never a stale L1 line.
__device__ __forceinline__ void cluster_barrier(cg::cluster_group& cluster) { cluster.sync(); }

// stage_rows<K>(a, src, seq): starts a[r][k] = src[r * K + k] for r < seq (asynchronous: see
// wait_copies), and zeroes the rows seq <= r < kRows.
template <int K>
__device__ void stage_rows(float* a, const float* src, int seq) {
  constexpr int q = K / 4;
  for (int i = static_cast<int>(threadIdx.x); i < kRows * q; i += kThreads) {
    if (i / q < seq) {
      copy16(a + 4 * i, src + 4 * i);
    } else {
      reinterpret_cast<float4*>(a)[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  }
}

// begin_phase<K>(stage, src, seq): stages the phase's input rows (stage_rows) and waits for them
// and for the weight copies started before the barrier; the block may read both afterwards.
template <int K>
__device__ void begin_phase(float* stage, const float* src, int seq) {
  stage_rows<K>(stage, src, seq);
  wait_copies();
  __syncthreads();
}

// stage_weights(wbuf, w, floats): starts the copy of the block's weight slice (contiguous rows of
// a weight matrix) into the weight buffer. The buffer must no longer be read (a __syncthreads()
// after the phase that used it).
__device__ void stage_weights(float* wbuf, const float* w, int floats) {
  for (int i = static_cast<int>(threadIdx.x); i < floats / 4; i += kThreads) {
    copy16(wbuf + 4 * i, w + 4 * i);
  }
}

// end_phase(cluster, wbuf, next_w, floats): once every thread of the block is done with the
// weight buffer, starts copying the next phase's slice (next_w, or nothing if null) into it, then
// the cluster barrier.
__device__ void end_phase(cg::cluster_group& cluster, float* wbuf, const float* next_w, int floats) {
  __syncthreads();
  if (next_w) stage_weights(wbuf, next_w, floats);
  cluster_barrier(cluster);
}

// normalize_row(v, gamma, beta, eps, lane): v holds the lane's values of a kD-column row
// (columns lane + 32 k); replaces them by layer_norm(row) * gamma + beta (biased variance,
// PyTorch's LayerNorm). Every lane of the warp calls it.
constexpr int kRowVals = kD / 32;
__device__ __forceinline__ void normalize_row(float (&v)[kRowVals], const float* __restrict__ gamma,
                                              const float* __restrict__ beta, float eps, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) s += v[k];
  const float mean = warp_sum(s) / static_cast<float>(kD);
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) sq += (v[k] - mean) * (v[k] - mean);
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(kD) + eps);
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) {
    const int c = lane + 32 * k;
    v[k] = (v[k] - mean) * inv * __ldg(gamma + c) + __ldg(beta + c);
  }
}

// normalize_rows(a, gamma, beta, seq, eps): rows r < seq of a (kRows x kD, shared memory)
// normalized in place (normalize_row), a warp per row.
__device__ void normalize_rows(float* a, const float* __restrict__ gamma,
                               const float* __restrict__ beta, int seq, float eps) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  for (int r = warp; r < seq; r += kWarps) {
    float* row = a + r * kD;
    float v[kRowVals];
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) v[k] = row[lane + 32 * k];
    normalize_row(v, gamma, beta, eps, lane);
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) row[lane + 32 * k] = v[k];
  }
}

// store_columns(dst, a, c0, seq): dst[r * kD + c0 + c] = a[r * kD + c0 + c] for r < seq,
// c < kND: the block's share of a staged (normalized) activation, for the later phase that needs
// those columns as its residual.
__device__ void store_columns(float* dst, const float* a, int c0, int seq) {
  for (int i = static_cast<int>(threadIdx.x); i < seq * kND; i += kThreads) {
    const int r = i / kND, c = c0 + i % kND;
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

// block_product<K, N>(a, w, c0, seq, e, part): the block's columns [c0, c0 + N) of a . w^T
// through the epilogue, a: kRows x K (shared memory), w: the N x K weight slice (shared
// memory). Every thread of the block calls it (it may synchronize the block).
// A warp computes an 8 x 8 tile: lane = 8 q + kl, quarter q = (row half q / 2, column half q % 2)
// of the tile (4 x 4 outputs), kl one of 8 lanes splitting the reduction (the float4s kl,
// kl + 8, ...); the 8 lanes of a quarter then fold their 16 partial sums by reduce_scatter's
// steps over lane bits 2..0 (14 shuffles), leaving lane kl two outputs: row kl / 2, columns
// 2 (kl % 2) and + 1 of its quarter.
template <int K, int N>
__device__ void block_product(const float* a, const float* w, int c0, int seq, const Epilogue& e,
                              float* part) {
  constexpr int kRowTiles = kRows / kTileR;
  constexpr int kTiles = kRowTiles * (N / kTileC);
  constexpr int kSplit = kTiles >= kWarps ? 1 : kWarps / kTiles;
  constexpr int kSpan = K / kSplit;
  constexpr int kKLanes = 8, kStep = 4 * kKLanes;
  static_assert(N % kTileC == 0 && kSpan % kStep == 0 &&
                (kSplit == 1 || kSplit * kRows * N <= kPartFloats));
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int q = lane / kKLanes, kl = lane % kKLanes;
#pragma unroll 1
  for (int t = warp; t < kTiles * kSplit; t += kWarps) {
    const int tile = t % kTiles, half = t / kTiles;
    const int r0 = (tile % kRowTiles) * kTileR + 4 * (q / 2);
    const int cl0 = (tile / kRowTiles) * kTileC + 4 * (q % 2);
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) acc[i] = 0.0f;
    const float* wt = w + cl0 * K + half * kSpan + 4 * kl;
    const float* at = a + r0 * K + half * kSpan + 4 * kl;
#pragma unroll 8
    for (int k = 0; k < kSpan; k += kStep) {
      float4 wv[4], av[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) wv[j] = *reinterpret_cast<const float4*>(wt + j * K + k);
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = *reinterpret_cast<const float4*>(at + i * K + k);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float& s = acc[i * 4 + j];
          s = fmaf(av[i].x, wv[j].x, s);
          s = fmaf(av[i].y, wv[j].y, s);
          s = fmaf(av[i].z, wv[j].z, s);
          s = fmaf(av[i].w, wv[j].w, s);
        }
      }
    }
    reduce_scatter_step<16, kKLanes / 2>(acc, lane);  // acc[0..1]: outputs 2 kl and 2 kl + 1
    const int r = r0 + kl / 2, c = cl0 + 2 * (kl % 2);
    if constexpr (kSplit == 1) {
      finish(e, r, c0 + c, acc[0], seq);
      finish(e, r, c0 + c + 1, acc[1], seq);
    } else {
      part[(half * kRows + r) * N + c] = acc[0];
      part[(half * kRows + r) * N + c + 1] = acc[1];
    }
  }
  if constexpr (kSplit > 1) {
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < kRows * N; i += kThreads) {
      const int r = i / N, c = i % N;
      float s = part[r * N + c];
#pragma unroll
      for (int h = 1; h < kSplit; ++h) s += part[(h * kRows + r) * N + c];
      finish(e, r, c0 + c, s, seq);
    }
  }
}

// attention_share(smem, qkv, att, rank, seq, scale): block `rank` computes head
// rank / (kCluster / kHeads)'s output for its share of the query rows: K and V of the head
// staged in shared memory, a warp per query row (lane t: key t's score), softmax in registers,
// P . V with the probabilities broadcast by shuffles.
__device__ void attention_share(float* smem, const float* qkv, float* att, int rank, int seq,
                                float scale) {
  constexpr int kPerHead = kCluster / kHeads;
  const int h = rank / kPerHead;
  const int rows_each = (seq + kPerHead - 1) / kPerHead;
  const int q0 = (rank % kPerHead) * rows_each;
  const int nq = min(rows_each, seq - q0);  // may be <= 0: nothing to compute
  float* ks = smem;                  // kRows x kAttnLd
  float* vs = ks + kRows * kAttnLd;  // kRows x kAttnLd
  float* qs = vs + kRows * kAttnLd;  // kWarps x kHeadDim
  const int tid = static_cast<int>(threadIdx.x);
  constexpr int q4 = kHeadDim / 4;
  for (int i = tid; i < seq * q4; i += kThreads) {
    const int t = i / q4, j = 4 * (i % q4);
    const float* row = qkv + t * kQkv + h * kHeadDim + j;
    copy16(ks + t * kAttnLd + j, row + kD);
    copy16(vs + t * kAttnLd + j, row + 2 * kD);
  }
  for (int i = tid; i < nq * q4; i += kThreads) {
    const int r = i / q4, j = 4 * (i % q4);
    copy16(qs + r * kHeadDim + j, qkv + (q0 + r) * kQkv + h * kHeadDim + j);
  }
  wait_copies();
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
      const float4 kv = *reinterpret_cast<const float4*>(k + j);
      const float4 qv = *reinterpret_cast<const float4*>(q + j);
      a0 = fmaf(qv.x, kv.x, a0);
      a1 = fmaf(qv.y, kv.y, a1);
      a2 = fmaf(qv.z, kv.z, a2);
      a3 = fmaf(qv.w, kv.w, a3);
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

__global__ void __launch_bounds__(kThreads, 1) encoder_stack_kernel(EncoderStackParams p) {
  extern __shared__ float4 smem4[];
  float* stage = reinterpret_cast<float*>(smem4);
  float* wbuf = stage + kStageFloats;
  float* part = wbuf + kWeightFloats;
  pdl_wait_then_release();
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int seq = p.seq;
  const std::size_t b = blockIdx.x;
  const Regions g = regions_of(p.ws, static_cast<std::size_t>(p.batch) * seq, b * seq);
  const float* x = p.x + b * seq * kD;
  // Each phase's weight slice is copied while the phase before it ends (after the block's last
  // read of the buffer, before the cluster barrier), so its latency hides behind the barrier.
  stage_weights(wbuf, p.layer[0].in_w + rank * kNQkv * kD, kNQkv * kD);
  for (int l = 0; l < p.layers; ++l) {
    const EncoderLayerParams& L = p.layer[l];
    // P1: the layer's input (normalized by the previous layer's norm2), then qkv.
    begin_phase<kD>(stage, l == 0 ? x : g.att, seq);
    if (l > 0) {
      normalize_rows(stage, p.layer[l - 1].norm2_w, p.layer[l - 1].norm2_b, seq, p.eps);
      __syncthreads();
      store_columns(g.xn, stage, rank * kND, seq);
    }
    const float* residual = l == 0 ? x : g.xn;
    block_product<kD, kNQkv>(stage, wbuf, rank * kNQkv, seq, {g.qkv, kQkv, L.in_b, nullptr, 0},
                             part);
    end_phase(cluster, wbuf, L.out_w + rank * kND * kD, kND * kD);
    // P2: attention.
    attention_share(stage, g.qkv, g.att, rank, seq, p.scale);
    cluster_barrier(cluster);
    // P3: out_proj + the residual, before norm1.
    begin_phase<kD>(stage, g.att, seq);
    block_product<kD, kND>(stage, wbuf, rank * kND, seq, {g.t1, kD, L.out_b, residual, 0}, part);
    end_phase(cluster, wbuf, L.lin1_w + rank * kNFF * kD, kNFF * kD);
    // P4: norm1, then linear1 + ReLU.
    begin_phase<kD>(stage, g.t1, seq);
    normalize_rows(stage, L.norm1_w, L.norm1_b, seq, p.eps);
    __syncthreads();
    store_columns(g.t1n, stage, rank * kND, seq);
    block_product<kD, kNFF>(stage, wbuf, rank * kNFF, seq, {g.hid, kFF, L.lin1_b, nullptr, p.act},
                            part);
    end_phase(cluster, wbuf, L.lin2_w + rank * kND * kFF, kND * kFF);
    // P5: linear2 + the residual, before norm2 (into att's space: attention's output is dead).
    begin_phase<kFF>(stage, g.hid, seq);
    block_product<kFF, kND>(stage, wbuf, rank * kND, seq, {g.att, kD, L.lin2_b, g.t1n, 0}, part);
    end_phase(cluster, wbuf, l + 1 < p.layers ? p.layer[l + 1].in_w + rank * kNQkv * kD : nullptr,
              kNQkv * kD);
  }
  // The last norm2, into y: row r by block r mod kCluster, a warp per row.
  const EncoderLayerParams& last = p.layer[p.layers - 1];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int r = rank + kCluster * warp;
  if (r < seq) {
    const float* src = g.att + r * kD;
    float v[kRowVals];
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) v[k] = __ldcg(src + lane + 32 * k);
    normalize_row(v, last.norm2_w, last.norm2_b, p.eps, lane);
    float* dst = p.y + (b * seq + r) * kD;
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) dst[lane + 32 * k] = v[k];
  }
}

// Per device: the kernel's attributes set (shared memory above 48 KiB, the non-portable cluster
// size) and whether the device can run a cluster of it, once.
constexpr int kMaxDevices = 64;
struct Prepared {
  std::once_flag once;
  cudaError_t status = cudaSuccess;
  bool runnable = false;
};
std::array<Prepared, kMaxDevices> g_prepared;

// prepared(error): this device's Prepared, set up on first use; null (the reason in *error) if
// the device ordinal is out of range or setting the attributes failed.
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
    pr.status = cudaFuncSetAttribute(encoder_stack_kernel,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(kSmemBytes));
    if (pr.status == cudaSuccess) {
      pr.status = cudaFuncSetAttribute(encoder_stack_kernel,
                                       cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    }
    if (pr.status != cudaSuccess) {
      (void)cudaGetLastError();
      pr.status = cudaSuccess;  // a device without these (pre-Hopper): not runnable, no error
      return;
    }
    const LaunchConfig one_cluster(nullptr, {dim3(1, kCluster), dim3(kThreads), kSmemBytes,
                                             false, kCluster});
    int clusters = 0;
    pr.runnable = cudaOccupancyMaxActiveClusters(&clusters, encoder_stack_kernel,
                                                 &one_cluster.config) == cudaSuccess &&
                  clusters >= 1;
    (void)cudaGetLastError();  // a failed query only means not runnable
  });
  *error = pr.status;
  return pr.status == cudaSuccess ? &pr : nullptr;
}

// counts_fit(batch, seq, layers): within the kernel's limits.
bool counts_fit(std::size_t batch, std::size_t seq, std::size_t layers) {
  return batch >= 1 && batch <= kEncoderStackMaxBatch && seq >= 1 &&
         seq <= static_cast<std::size_t>(kRows) && layers >= 1 && layers <= kEncoderStackMaxLayers;
}

}  // namespace

bool encoder_stack_fits(std::size_t batch, std::size_t seq, std::size_t d_model,
                        std::size_t heads, std::size_t feed_forward, std::size_t layers, int act) {
  if (!counts_fit(batch, seq, layers) || d_model != kD || heads != kHeads || feed_forward != kFF ||
      act != 1) {
    return false;
  }
  cudaError_t e = cudaSuccess;
  const Prepared* pr = prepared(&e);
  return pr != nullptr && pr->runnable;
}

cudaError_t encoder_stack(cudaStream_t stream, const EncoderStackParams& params, bool pdl) {
  if (params.batch < 0 || params.seq < 0 || params.layers < 0 ||
      !counts_fit(static_cast<std::size_t>(params.batch), static_cast<std::size_t>(params.seq),
                  static_cast<std::size_t>(params.layers))) {
    return cudaErrorInvalidValue;
  }
  cudaError_t e = cudaSuccess;
  const Prepared* pr = prepared(&e);
  if (!pr) return e;
  if (!pr->runnable) return cudaErrorNotSupported;
  const dim3 grid(static_cast<unsigned>(params.batch), static_cast<unsigned>(kCluster));
  return launch_ex(stream, {grid, dim3(kThreads), kSmemBytes, pdl, kCluster},
                   encoder_stack_kernel, params);
}

}  // namespace tandem::backends::cuda::launch
