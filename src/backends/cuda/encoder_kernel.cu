// encoder_kernel.cu — the fused encoder (Note [Fused encoder]): a whole stack of post-norm
// transformer encoder layers of the reference encoder's sizes in one kernel, a thread-block
// cluster per sequence.
//
// Note [Fused encoder]
// The encoder's batch-1 forward op by op is 14 kernels (per layer: in_proj, attention, out_proj,
// layer_norm, linear1, linear2, layer_norm) on 32 x 256 activations: each does a few us of work
// and the forward's time is mostly the gaps between them (docs/benchmarks.md, "Encoder batch
// 1"). Here the forward is one kernel: a cluster of 16 blocks (a non-portable cluster size,
// Hopper's largest) per sequence, 512 threads and 218 KiB of shared memory a block, one block an
// SM, and every phase of every layer split over the cluster's blocks by output columns, the
// phases separated by cluster barriers (hardware, no grid-wide atomics) instead of kernel
// boundaries:
//   P1  stage the layer input (layer > 0: the previous layer's pre-norm sum, normalized here by
//       every block for its own use; block r keeps its 16 columns of it in shared memory, the
//       residual of P3) | qkv = x . in_w^T + in_b, block r its 48 columns
//   P2  attention: block r head r / 4's quarter of the query rows, a warp per row
//   P3  t1 = att . out_w^T + out_b + x (pre-norm), block r its 16 columns
//   P4  stage t1, normalize (norm1), block r keeps its columns of the normalized t1 (the residual
//       of P5) | hidden = relu(t1 . lin1_w^T + lin1_b), block r its 64 columns
//   P5  t2 = hidden . lin2_w^T + lin2_b + t1 (pre-norm), block r its 16 columns
//   after the last layer: y = norm2(t2), row r of the sequence by block r mod 16.
// Activations live in the caller's workspace (global memory, L2-resident at these sizes) and are
// staged into shared memory by cp.async.cg (through L2 only, so no block sees a stale L1 line of
// another's writes); each barrier is a cluster barrier's arrive (release) and wait (acquire).
// Each phase's weight slice (at most 64 KiB a block; each weight is used by exactly one block of
// the cluster) is copied into shared memory by cp.async between the arrive and the wait of the
// barrier before its phase, so its latency hides behind the barrier (started before the arrive,
// the copies lengthened the release: cluster_arrive). Staged matrices are swizzled (16-byte
// chunk j of row r at j ^ (r % 8)), not padded: with rows 16 bytes longer than their data the
// cp.async staging ran 2-3x slower on the H100.
// A phase's matrix product (block_product) runs on the tensor cores by 3xTF32 (mma_tf32.cuh:
// three TF32 mma per product, each product within 3 * 2^-20 of itself): a warp task is a 16 x 16
// output tile (16 x 8 for in_proj's 48 columns) over a part of the reduction, which each phase
// splits 2-8 ways so that every warp has work; the block adds the partial sums in shared memory,
// in a fixed order (results are deterministic).
// Numerics: fp32 inputs and outputs, products by 3xTF32 (each within 3 * 2^-20 of itself,
// tf32_split.h and its test; fp32's own rounding is 2^-24, one TF32 product's 2^-10), fp32 sums
// in a different order than the op-by-op kernels (tests: 1e-4 against the cpu backend).
// Sizes: d_model 256, 4 heads, feed-forward 1024, ReLU, seq <= 32, any eps; other encoders, and
// devices that cannot schedule such a cluster, take the op-by-op path (encoder_stack_fits).
// Measured on the H100 (docs/benchmarks.md, "The fused encoder" and "Where the fused encoder's
// time goes"): ~43 us a forward by the phase clocks (PhaseClock below), of which products
// ~15 us, staging ~9 us, cluster barriers ~8.3 us (ten, each release waiting for the block's
// global stores), attention ~4 us, epilogues ~3 us; with fp32 FMA products (before the tensor
// cores) 60 us.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <mutex>

#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/mma_tf32.cuh"
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
constexpr int kAttnLd = kHeadDim + 4;  // K and V rows in shared memory: 16-byte rows, and the
                                       // 8 lanes of a 16-byte access phase on distinct banks
// A block's output columns per phase: in_proj, out_proj / linear2, linear1.
constexpr int kNQkv = kQkv / kCluster, kND = kD / kCluster, kNFF = kFF / kCluster;
// Matrices staged in shared memory (a phase's input rows, its weight slice) are swizzled: row r's
// 16-byte chunk j is stored at chunk j ^ (r % 8) of the row (swizzled). The 8 rows g and 4
// columns t a tensor-core fragment load reads then fall on 32 distinct banks, rows stay dense and
// 16-byte aligned for cp.async, and a warp's 32 chunks of a row still land in one aligned 512-byte
// run.
__host__ __device__ constexpr int swizzled(int r, int k) {
  return (((k >> 2) ^ (r & 7)) << 2) | (k & 3);
}
// Shared memory: the stage (kRows x up to kFF floats: a phase's input; attention reuses it for
// K, V and the query rows), the weight buffer (the block's slice of a phase's weights: at most
// 64 KiB), the split-reduction partials (kSplit x kRows x N floats: block_product), the
// residual (kRows x kND).
constexpr int kStageFloats = kRows * kFF;
constexpr int kWeightFloats = std::max({kNFF * kD, kND * kFF, kNQkv * kD});
constexpr int kPartFloats = 4 * kRows * kNQkv;  // in_proj's 4-way split, the largest
constexpr int kResFloats = kRows * kND;  // the residual's columns of the block's 16-column phases
constexpr std::size_t kSmemBytes =
    (kStageFloats + kWeightFloats + kPartFloats + kResFloats) * sizeof(float);
static_assert(2 * kRows * kAttnLd + kWarps * kHeadDim <= kStageFloats);
static_assert(kSmemBytes <= 227 * 1024);

// Workspace regions, each rows_total x width floats (rows_total = batch x seq):
//   qkv [3 d] (P1 -> P2; then P3's output t1, seq x d in the sequence's own qkv rows)
//   att [d]   (P2 -> P3; P5's output t2 -> the next layer's P1 / the final norm)
//   hid [ff]  (P4 -> P5)
// The residuals (P1's normalized input for P3, P4's normalized t1 for P5) never leave the block:
// the block that computes a residual sum's columns stages them itself (res, shared memory).
struct Regions {
  float *qkv, *t1, *att, *hid;
};

__device__ __forceinline__ Regions regions_of(float* ws, std::size_t rows_total, std::size_t row0) {
  Regions g;
  float* qkv = ws;
  float* att = qkv + rows_total * kQkv;
  float* hid = att + rows_total * kD;
  g.qkv = qkv + row0 * kQkv;
  g.t1 = g.qkv;  // the sequence's own qkv rows (seq x 3d) hold its seq x d t1
  g.att = att + row0 * kD;
  g.hid = hid + row0 * kFF;
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

// PhaseClock: where the kernel's time goes, phase by phase (a diagnostic, compiled only with
// -DTANDEM_ENCODER_PHASE_CLOCKS, e.g. cmake -DCMAKE_CUDA_FLAGS=-DTANDEM_ENCODER_PHASE_CLOCKS).
// Thread 0 of each block of the first sequence's cluster adds, per phase, the SM cycles from the
// phase's start (the barrier before it passed) to: its input staged (stage), normalized (norm),
// its warp's products done (product; attention's whole work in phase 2), the block's last thread
// done (epilogue), the barrier after it passed (wait: the slowest block and the barrier's own
// latency); rank 0 prints the means in us every 4096 launches (device printf: the host sees it at
// its next synchronize). Without the macro every member is an empty inline function.
#ifdef TANDEM_ENCODER_PHASE_CLOCKS
constexpr int kClockPhases = 5 * kEncoderStackMaxLayers + 1, kClockParts = 5;
__device__ unsigned long long g_clock[kClockParts][kClockPhases], g_clock_total, g_clock_launches;
struct PhaseClock {
  bool on;
  int phase = 0;
  long long t0, t;
  __device__ explicit PhaseClock(bool enabled) : on(enabled && threadIdx.x == 0) {
    t0 = t = clock64();
  }
  __device__ void mark(int part) {
    const long long now = clock64();
    if (on) atomicAdd(&g_clock[part][phase], static_cast<unsigned long long>(now - t));
    t = now;
  }
  __device__ void staged() { mark(0); }
  __device__ void normalized() { mark(1); }
  __device__ void multiplied() { mark(2); }
  __device__ void done() {
    __syncthreads();
    mark(3);
  }
  __device__ void passed() {
    mark(4);
    ++phase;
  }
  __device__ void finish(int rank) {
    done();
    if (!on) return;
    atomicAdd(&g_clock_total, static_cast<unsigned long long>(clock64() - t0));
    if (rank != 0) return;
    const unsigned long long n = atomicAdd(&g_clock_launches, 1ull) + 1;
    if (n % 4096 != 0) return;
    const double us = 1.0 / (1980.0 * static_cast<double>(n) * kCluster);  // cycles -> us a block
    printf("encoder phases after %llu launches (us a block, 1.98 GHz): total %.2f\n", n,
           static_cast<double>(g_clock_total) * us);
    printf("  phase    stage    norm  product epilogue    wait\n");
    for (int i = 0; i <= phase; ++i) {
      printf("  %5d %8.2f %7.2f %8.2f %8.2f %7.2f\n", i, static_cast<double>(g_clock[0][i]) * us,
             static_cast<double>(g_clock[1][i]) * us, static_cast<double>(g_clock[2][i]) * us,
             static_cast<double>(g_clock[3][i]) * us, static_cast<double>(g_clock[4][i]) * us);
    }
  }
};
#else
struct PhaseClock {
  __device__ explicit PhaseClock(bool) {}
  __device__ void staged() {}
  __device__ void normalized() {}
  __device__ void multiplied() {}
  __device__ void done() {}
  __device__ void passed() {}
  __device__ void finish(int) {}
};
#endif

// cluster_arrive() then cluster_wait(): the cluster barrier, split. Every block's global and
// shared writes before its arrive are visible to every block of the cluster after its wait:
// arrive has release and wait acquire semantics at cluster scope, for every state space (PTX
// ISA, "barrier.cluster"); the reads after it go through L2 (cp.async.cg, ld.global.cg), never a
// stale L1 line. The release waits for the thread's outstanding memory operations, cp.async
// copies included (the SASS's MEMBAR), so copies that no other block depends on are started
// between the two halves: they then overlap the wait instead of lengthening the release.
// Every thread of the block calls both (.aligned).
__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// RowChunks<K>: how a block copies rows of K floats in 16-byte chunks: thread t takes chunk
// c = 4 (t mod (K / 4)) of rows r0 = t / (K / 4), r0 + kStep, ... (a pass of the block covers
// kStep rows); the chunk lands at the row's swizzled column.
template <int K>
struct RowChunks {
  static constexpr int q = K / 4, kStep = kThreads / q;
  static_assert(kThreads % q == 0);
  int r0 = static_cast<int>(threadIdx.x) / q, c = 4 * (static_cast<int>(threadIdx.x) % q);
};

// stage_rows<K>(a, src, seq): starts a[r * K + swizzled(r, k)] = src[r * K + k] for r < seq
// (asynchronous: see wait_copies), and zeroes the rows seq <= r < kRows.
template <int K>
__device__ void stage_rows(float* a, const float* src, int seq) {
  const RowChunks<K> at;
  static_assert(kRows % RowChunks<K>::kStep == 0);
#pragma unroll
  for (int r = at.r0; r < kRows; r += RowChunks<K>::kStep) {
    float* dst = a + r * K + swizzled(r, at.c);
    if (r < seq) {
      copy16(dst, src + r * K + at.c);
    } else {
      *reinterpret_cast<float4*>(dst) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  }
}

// begin_phase<K>(stage, src, seq): stages the phase's input rows (stage_rows) and waits for them
// and for the weight copies started during the barrier before it (end_phase); the block may read
// both afterwards.
template <int K>
__device__ void begin_phase(float* stage, const float* src, int seq) {
  stage_rows<K>(stage, src, seq);
  wait_copies();
  __syncthreads();
}

// stage_weights<K>(wbuf, w, rows): starts the copy of the block's weight slice (rows contiguous
// rows of K floats of a weight matrix) into the weight buffer, swizzled. The buffer
// must no longer be read (a __syncthreads() after the phase that used it).
template <int K>
__device__ void stage_weights(float* wbuf, const float* w, int rows) {
  const RowChunks<K> at;
#pragma unroll 4
  for (int r = at.r0; r < rows; r += RowChunks<K>::kStep) {
    copy16(wbuf + r * K + swizzled(r, at.c), w + r * K + at.c);
  }
}

// cluster_barrier(clock, during): the cluster barrier, `during()` run between its arrive and its
// wait (copies that no other block waits for: see cluster_arrive). clock: a PhaseClock.
template <class During>
__device__ __forceinline__ void cluster_barrier(PhaseClock& clock, During during) {
  clock.done();
  cluster_arrive();
  during();
  cluster_wait();
  clock.passed();
}

// end_phase<K>(clock, wbuf, next_w, rows): the cluster barrier, and once every thread of the
// block is done with the weight buffer, the copy of the next phase's slice (rows x K floats at
// next_w, or nothing if null) into it, started between the barrier's arrive and wait.
// clock: a PhaseClock.
template <int K>
__device__ void end_phase(PhaseClock& clock, float* wbuf, const float* next_w, int rows) {
  __syncthreads();
  cluster_barrier(clock, [&] {
    if (next_w) stage_weights<K>(wbuf, next_w, rows);
  });
}

// NormWeights: a layer norm's gamma and beta at the lane's columns lane + 32 k (load_norm), read
// from global memory ahead of the barrier or staging wait before the norm, to hide its latency.
constexpr int kRowVals = kD / 32;
struct NormWeights {
  float gamma[kRowVals], beta[kRowVals];
};

__device__ __forceinline__ NormWeights load_norm(const float* __restrict__ gamma,
                                                 const float* __restrict__ beta) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  NormWeights n;
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) {
    n.gamma[k] = __ldg(gamma + lane + 32 * k);
    n.beta[k] = __ldg(beta + lane + 32 * k);
  }
  return n;
}

// normalize_row(v, n, eps): v holds the lane's values of a kD-column row (columns lane + 32 k);
// replaces them by layer_norm(row) * gamma + beta (biased variance, PyTorch's LayerNorm). Every
// lane of the warp calls it.
__device__ __forceinline__ void normalize_row(float (&v)[kRowVals], const NormWeights& n,
                                              float eps) {
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) s += v[k];
  const float mean = warp_sum(s) / static_cast<float>(kD);
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) sq += (v[k] - mean) * (v[k] - mean);
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(kD) + eps);
#pragma unroll
  for (int k = 0; k < kRowVals; ++k) v[k] = (v[k] - mean) * inv * n.gamma[k] + n.beta[k];
}

// normalize_rows(a, n, seq, eps): rows r < seq of a (kRows x kD, swizzled, shared memory)
// normalized in place (normalize_row), a warp per row.
// The warp's rows (kRows / kWarps of them) are normalized side by side: their reductions'
// shuffle chains overlap.
__device__ void normalize_rows(float* a, const NormWeights& n, int seq, float eps) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  constexpr int kEach = kRows / kWarps;
  static_assert(kRows % kWarps == 0);
  float v[kEach][kRowVals];
#pragma unroll
  for (int i = 0; i < kEach; ++i) {
    const int r = warp + i * kWarps;
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) v[i][k] = a[r * kD + swizzled(r, lane + 32 * k)];
  }
#pragma unroll
  for (int i = 0; i < kEach; ++i) normalize_row(v[i], n, eps);
#pragma unroll
  for (int i = 0; i < kEach; ++i) {
    const int r = warp + i * kWarps;
    if (r >= seq) break;  // rows >= seq stay as staged (zero)
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) a[r * kD + swizzled(r, lane + 32 * k)] = v[i][k];
  }
}

// store_residual(res, a, c0, seq): res[r * kND + c] = a[r * kD + swizzled(r, c0 + c)] for r < seq,
// c < kND: the block's columns of a staged (normalized) activation, kept for the later phase
// that adds them as its residual.
__device__ void store_residual(float* res, const float* a, int c0, int seq) {
  for (int i = static_cast<int>(threadIdx.x); i < seq * kND; i += kThreads) {
    const int r = i / kND, c = i % kND;
    res[i] = a[r * kD + swizzled(r, c0 + c)];
  }
}

// Epilogue of a phase's product: y[r * ld + c0 + c] = act(sum + bias[c0 + c] + residual[r * kND +
// c]) for the block's columns c0 + c.
struct Epilogue {
  float* y;
  int ld;
  const float* bias;      // global, all the layer's columns
  const float* residual;  // shared memory, kRows x kND (16-column phases), or null
  int act;
};

__device__ __forceinline__ void finish(const Epilogue& e, int r, int c, float v, float bias,
                                       int c0) {
  v += bias;
  if (e.residual) v += e.residual[r * kND + c];
  e.y[r * e.ld + c0 + c] = activate(v, e.act);
}

// block_product<K, N, NW, kSplit>(a, w, c0, seq, e, part, clock): the block's columns
// [c0, c0 + N) of a . w^T through the epilogue, a: kRows x K (shared memory, swizzled), w: the
// N x K weight slice (shared memory, swizzled). Every thread of the block calls it (it
// synchronizes the block).
// On the tensor cores, by 3xTF32 (mma_tf32.cuh: near-fp32 accuracy): a warp task is a 16 x 8 NW
// tile (NW m16n8k8 fragments side by side: the A fragment is loaded and split once for all NW)
// over one kSplit-th of the reduction; the tasks' partial sums go to `part` and the block adds them
// in a fixed order (the results are deterministic).
template <int K, int N, int NW, int kSplit>
__device__ void block_product(const float* a, const float* w, int c0, int seq, const Epilogue& e,
                              float* part, PhaseClock& clock) {
  constexpr int kMTiles = kRows / 16, kTiles = kMTiles * (N / (8 * NW));
  constexpr int kSpan = K / kSplit;
  static_assert(N % (8 * NW) == 0 && kSpan % 32 == 0 && kTiles * kSplit % kWarps == 0 &&
                kSplit * kRows * N <= kPartFloats);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  // Rows g, g + 8 (of a) and g + 8 n (of w) share a swizzle (8 | m0, n0): chunk j of each
  // 32-float span of the reduction, column t of it, is at off[j] of the span.
  int off[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) off[j] = ((j ^ g) << 2) + t;
  // The epilogue's biases, loaded now so their latency hides behind the products.
  constexpr int kPer = (kRows * N + kThreads - 1) / kThreads;
  float bias[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    bias[i] = __ldg(e.bias + c0 + (static_cast<int>(threadIdx.x) + i * kThreads) % N);
  }
#pragma unroll 1
  for (int task = warp; task < kTiles * kSplit; task += kWarps) {
    const int tile = task % kTiles, s = task / kTiles;
    const int m0 = (tile % kMTiles) * 16, n0 = (tile / kMTiles) * 8 * NW;
    const float* at = a + (m0 + g) * K + s * kSpan;
    const float* wt = w + (n0 + g) * K + s * kSpan;
    Tf32x3Acc acc[NW];
#pragma unroll 2
    for (int k = 0; k < kSpan; k += 32) {
#pragma unroll
      for (int j = 0; j < 8; j += 2) {  // a k8 step: chunks j and j + 1
        const float av[4] = {at[k + off[j]], at[8 * K + k + off[j]], at[k + off[j + 1]],
                             at[8 * K + k + off[j + 1]]};
        const Tf32Split<4> as = split_fragment(av);
#pragma unroll
        for (int n = 0; n < NW; ++n) {
          const float* wn = wt + 8 * n * K;
          const float bv[2] = {wn[k + off[j]], wn[k + off[j + 1]]};
          mma_3xtf32(acc[n], as, split_fragment(bv));
        }
      }
    }
    // acc[n]: (m0 + g, n0 + 8 n + 2 t) and + 1, then the same 8 rows below.
#pragma unroll
    for (int n = 0; n < NW; ++n) {
      float* pt = part + (s * kRows + m0 + g) * N + n0 + 8 * n + 2 * t;
      pt[0] = acc[n].value(0);
      pt[1] = acc[n].value(1);
      pt[8 * N] = acc[n].value(2);
      pt[8 * N + 1] = acc[n].value(3);
    }
  }
  clock.multiplied();
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kThreads, r = i / N, c = i % N;
    if (r >= seq) break;
    float sum = part[r * N + c];
#pragma unroll
    for (int h = 1; h < kSplit; ++h) sum += part[(h * kRows + r) * N + c];
    finish(e, r, c, sum, bias[j], c0);
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
  float* res = part + kPartFloats;
  pdl_wait_then_release();
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int seq = p.seq;
  const std::size_t b = blockIdx.x;
  PhaseClock clock(blockIdx.x == 0);
  const Regions g = regions_of(p.ws, static_cast<std::size_t>(p.batch) * seq, b * seq);
  const float* x = p.x + b * seq * kD;
  // Each phase's weight slice is copied once the phase before it is done with the buffer,
  // between the arrive and the wait of the cluster barrier before it (end_phase).
  stage_weights<kD>(wbuf, p.layer[0].in_w + rank * kNQkv * kD, kNQkv);
  for (int l = 0; l < p.layers; ++l) {
    const EncoderLayerParams& L = p.layer[l];
    // P1: the layer's input (normalized by the previous layer's norm2), then qkv.
    NormWeights norm{};
    if (l > 0) norm = load_norm(p.layer[l - 1].norm2_w, p.layer[l - 1].norm2_b);
    begin_phase<kD>(stage, l == 0 ? x : g.att, seq);
    clock.staged();
    if (l > 0) {
      normalize_rows(stage, norm, seq, p.eps);
      __syncthreads();
    }
    store_residual(res, stage, rank * kND, seq);  // layer 0: x itself
    clock.normalized();
    block_product<kD, kNQkv, 1, 4>(stage, wbuf, rank * kNQkv, seq,
                                   {g.qkv, kQkv, L.in_b, nullptr, 0}, part, clock);
    end_phase<kD>(clock, wbuf, L.out_w + rank * kND * kD, kND);
    // P2: attention.
    attention_share(stage, g.qkv, g.att, rank, seq, p.scale);
    clock.multiplied();
    cluster_barrier(clock, [] {});  // every block's share of att is written; nothing to stage
    // P3: out_proj + the residual, before norm1.
    begin_phase<kD>(stage, g.att, seq);
    clock.staged();
    block_product<kD, kND, 2, 8>(stage, wbuf, rank * kND, seq, {g.t1, kD, L.out_b, res, 0}, part,
                                 clock);
    end_phase<kD>(clock, wbuf, L.lin1_w + rank * kNFF * kD, kNFF);
    // P4: norm1, then linear1 + ReLU.
    norm = load_norm(L.norm1_w, L.norm1_b);
    begin_phase<kD>(stage, g.t1, seq);
    clock.staged();
    normalize_rows(stage, norm, seq, p.eps);
    __syncthreads();
    store_residual(res, stage, rank * kND, seq);
    clock.normalized();
    block_product<kD, kNFF, 2, 2>(stage, wbuf, rank * kNFF, seq,
                                  {g.hid, kFF, L.lin1_b, nullptr, p.act}, part, clock);
    end_phase<kFF>(clock, wbuf, L.lin2_w + rank * kND * kFF, kND);
    // P5: linear2 + the residual, before norm2 (into att's space: attention's output is dead).
    begin_phase<kFF>(stage, g.hid, seq);
    clock.staged();
    block_product<kFF, kND, 2, 8>(stage, wbuf, rank * kND, seq, {g.att, kD, L.lin2_b, res, 0},
                                  part, clock);
    end_phase<kD>(clock, wbuf,
                  l + 1 < p.layers ? p.layer[l + 1].in_w + rank * kNQkv * kD : nullptr, kNQkv);
  }
  // The last norm2, into y: row r by block r mod kCluster, a warp per row.
  const EncoderLayerParams& last = p.layer[p.layers - 1];
  const NormWeights norm = load_norm(last.norm2_w, last.norm2_b);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int r = rank + kCluster * warp;
  if (r < seq) {
    const float* src = g.att + r * kD;
    float v[kRowVals];
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) v[k] = __ldcg(src + lane + 32 * k);
    normalize_row(v, norm, p.eps);
    float* dst = p.y + (b * seq + r) * kD;
#pragma unroll
    for (int k = 0; k < kRowVals; ++k) dst[lane + 32 * k] = v[k];
  }
  clock.finish(rank);
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
