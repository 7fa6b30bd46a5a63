// resident_kernel.cu — the persistent grid of a resident chain (resident_kernel.h; Note
// [Resident serving] in tandem/resident.h).
//
// One pass (pass = 1, 2, ... within a launch; par = pass & 1 picks the published batch's
// buffers):
//   block 0, warp 0: polls every slot's doorbell until some rang (or it decides to exit), takes
//     up to max_batch of them round-robin, marks them served;
//   block 0: copies their inputs from the slots into act[0], writes list/seqs/count[par], and
//     releases the pass word (device scope);
//   other blocks: thread 0 acquires the pass word;
//   every block: per layer, stages the batch's inputs (L2 loads) into shared memory, computes
//     its rows, and (between layers) meets the others at a grid barrier; the last layer writes
//     into the slots' mapped outputs;
//   every block: a system-scope fence, then counts itself finished; the last one stores each
//     request's sequence number into its slot's done word (release, system scope).
// Why the buffers can be reused: block 0 publishes pass n+1 only after the last barrier of pass
// n, which every block reaches only after it has read act[0] and the lists of pass n are
// double-buffered by parity (a block may still write pass n's outputs while pass n+1 is
// published; it cannot be two passes behind, since pass n+1's first barrier waits for it).
#include <cuda/atomic>

#include "backends/cuda/resident_kernel.h"

namespace tandem::backends::cuda::resident {

namespace {

constexpr unsigned kFull = 0xFFFFFFFFu;

__device__ inline unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ inline unsigned load_volatile(const unsigned* w) {
  return *reinterpret_cast<const volatile unsigned*>(w);
}

__device__ inline void store_release_system(unsigned* w, unsigned v) {
  ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_system>(*w).store(v, ::cuda::memory_order_release);
}

__device__ inline unsigned load_acquire_device(unsigned* w) {
  return ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(*w).load(::cuda::memory_order_acquire);
}

// grid_barrier: every block arrives; returns when `target` arrivals were counted (the counter is
// monotonic within a launch: target = barriers so far x blocks).
__device__ void grid_barrier(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> c(*counter);
    c.fetch_add(1, ::cuda::memory_order_acq_rel);
    while (c.load(::cuda::memory_order_acquire) < target) {
    }
    __threadfence();
  }
  __syncthreads();
}

__device__ inline float activate(float v, int act) {
  if (act == 1) return v < 0.0f ? 0.0f : v;
  if (act == 2) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  return v;
}

// The block's rows [row0, row0 + nrows) of one layer for a batch of b <= MB samples. Warp w
// computes rows w, w + warps, ... (at most RW of them) together, lanes strided over the inputs:
// each input value loaded from shared memory once per warp serves all its rows (shared-memory
// bandwidth, not the FMAs, bounds this loop). Sample j's row r goes to y[j * ldy + col0 + r].
template <int MB, int RW>
__device__ void layer_rows(const LayerParams& L, const float* wsm, const float* bsm,
                           const float* xs, int b, int nrows, float* y, int ldy, int col0) {
  const int warps = static_cast<int>(blockDim.x) / 32;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int in = L.in;
  for (int r0 = warp; r0 < nrows; r0 += warps * RW) {
    float acc[RW][MB];
#pragma unroll
    for (int q = 0; q < RW; ++q) {
#pragma unroll
      for (int j = 0; j < MB; ++j) acc[q][j] = 0.0f;
    }
    const float* w[RW];
#pragma unroll
    for (int q = 0; q < RW; ++q) w[q] = wsm + min(r0 + q * warps, nrows - 1) * in;
    for (int k = lane; k < in; k += 32) {
      float xv[MB];
#pragma unroll
      for (int j = 0; j < MB; ++j) xv[j] = j < b ? xs[j * in + k] : 0.0f;
#pragma unroll
      for (int q = 0; q < RW; ++q) {
        const float wv = w[q][k];
#pragma unroll
        for (int j = 0; j < MB; ++j) acc[q][j] = fmaf(wv, xv[j], acc[q][j]);
      }
    }
#pragma unroll
    for (int q = 0; q < RW; ++q) {
      const int r = r0 + q * warps;
      if (r >= nrows) break;  // uniform across the warp
#pragma unroll
      for (int j = 0; j < MB; ++j) {
        if (j >= b) break;
        float v = acc[q][j];
#pragma unroll
        for (int s = 16; s > 0; s /= 2) v += __shfl_xor_sync(kFull, v, s);
        if (lane == 0) y[j * ldy + col0 + r] = activate(v + bsm[r], L.act);
      }
    }
  }
}

template <int MB>
__device__ void layer_rows_any(const LayerParams& L, const float* wsm, const float* bsm,
                               const float* xs, int b, int nrows, float* y, int ldy, int col0) {
  const int warps = static_cast<int>(blockDim.x) / 32;
  if (nrows > warps) layer_rows<MB, 2>(L, wsm, bsm, xs, b, nrows, y, ldy, col0);
  else layer_rows<MB, 1>(L, wsm, bsm, xs, b, nrows, y, ldy, col0);
}

// One layer for the batch. Not the last: rows into y_device ([b][L.out], device memory). The
// last: rows into this block's output stage in shared memory, then copied to each request's
// slot (host memory) in 16-byte stores where the rows allow it — a few wide PCIe writes per
// block and sample instead of a 4-byte write per output.
__device__ void run_layer(const LayerParams& L, const float* smem, float* stage, float* out_stage,
                          const float* x, int b, float* y_device, float* y_host, const int* list) {
  // Stage the batch's inputs: written by other blocks (or block 0) in this launch, so read from
  // L2 (ld.global.cg), never from a possibly stale L1 line.
  // Up to 8 loads of a thread in flight before its first store.
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* s4 = reinterpret_cast<float4*>(stage);
  const int n4 = b * L.in / 4, step = static_cast<int>(blockDim.x);
  for (int base = static_cast<int>(threadIdx.x); base < n4; base += 8 * step) {
    float4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      if (base + u * step < n4) v[u] = __ldcg(x4 + base + u * step);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      if (base + u * step < n4) s4[base + u * step] = v[u];
    }
  }
  __syncthreads();
  const int row0 = static_cast<int>(blockIdx.x) * L.rows;
  const int nrows = min(L.rows, L.out - row0);
  const float* wsm = smem + L.w_off;
  const float* bsm = wsm + L.rows * L.in;
  float* y = y_host != nullptr ? out_stage : y_device;
  const int ldy = y_host != nullptr ? L.rows : L.out;
  const int col0 = y_host != nullptr ? 0 : row0;
  if (nrows > 0) {
    if (b <= 1) layer_rows_any<1>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
    else if (b <= 2) layer_rows_any<2>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
    else if (b <= 4) layer_rows_any<4>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
    else if (b <= 8) layer_rows_any<8>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
    else if (b <= 16) layer_rows_any<16>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
    else layer_rows_any<32>(L, wsm, bsm, stage, b, nrows, y, ldy, col0);
  }
  __syncthreads();  // the stage is rewritten by the next layer; the output stage is complete
  if (y_host != nullptr && nrows > 0) {
    const bool wide = nrows % 4 == 0 && L.rows % 4 == 0 && L.out % 4 == 0 && row0 % 4 == 0;
    if (wide) {
      const int q = nrows / 4;
      for (int i = static_cast<int>(threadIdx.x); i < b * q; i += static_cast<int>(blockDim.x)) {
        const int j = i / q, c = i % q;
        reinterpret_cast<float4*>(y_host + static_cast<size_t>(list[j]) * L.out + row0)[c] =
            reinterpret_cast<const float4*>(out_stage + j * L.rows)[c];
      }
    } else {
      for (int i = static_cast<int>(threadIdx.x); i < b * nrows; i += static_cast<int>(blockDim.x)) {
        const int j = i / nrows, r = i % nrows;
        y_host[static_cast<size_t>(list[j]) * L.out + row0 + r] = out_stage[j * L.rows + r];
      }
    }
  }
}

// Loads this block's rows of every layer (zero rows past the end) and their biases.
__device__ void load_weights(const Params& p, float* smem) {
  for (int l = 0; l < p.layers; ++l) {
    const LayerParams& L = p.layer[l];
    const int row0 = static_cast<int>(blockIdx.x) * L.rows;
    float* w = smem + L.w_off;
    const int n4 = L.rows * L.in / 4;
    for (int i = static_cast<int>(threadIdx.x); i < n4; i += static_cast<int>(blockDim.x)) {
      const int r = i / (L.in / 4);
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (row0 + r < L.out) v = reinterpret_cast<const float4*>(L.w + static_cast<size_t>(row0) * L.in)[i];
      reinterpret_cast<float4*>(w)[i] = v;
    }
    for (int r = static_cast<int>(threadIdx.x); r < L.rows; r += static_cast<int>(blockDim.x)) {
      w[L.rows * L.in + r] = (L.b != nullptr && row0 + r < L.out) ? L.b[row0 + r] : 0.0f;
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kBlockThreads, 1) resident_chain_kernel(Params p) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* stage = smem + p.stage_off;
  float* out_stage = smem + p.out_stage_off;
  __shared__ int s_list[kMaxBatch];
  __shared__ unsigned s_seq[kMaxBatch];
  __shared__ int s_count;
  const unsigned B = gridDim.x;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const bool poller = blockIdx.x == 0 && threadIdx.x < 32;

  load_weights(p, smem);

  // Block 0, warp 0: the served sequence numbers of slots lane and lane + 32, in registers.
  unsigned served0 = 0, served1 = 0;
  int rot = 0, want = 1;
  unsigned long long passes = 0, requests = 0;
  const unsigned long long start = now_ns();
  auto* totals = reinterpret_cast<volatile unsigned long long*>(p.control);
  if (poller) {
    if (lane < p.slots) served0 = p.served[lane];
    if (lane + 32 < p.slots) served1 = p.served[lane + 32];
    passes = totals[kPasses / 2];
    requests = totals[kRequests / 2];
  }
  const bool timer = blockIdx.x == 0 && threadIdx.x == 0;
  unsigned long long t_taken = 0, t_published = 0, t_layers = 0;
  unsigned long long ph_input = 0, ph_layers = 0, ph_completion = 0;  // running totals
  if (timer) {  // read once: host memory reads are PCIe round trips, the writes below are posted
    ph_input = totals[kPhaseInput / 2];
    ph_layers = totals[kPhaseLayers / 2];
    ph_completion = totals[kPhaseCompletion / 2];
  }
  unsigned barriers = 0;
  const int in0 = p.layer[0].in;

  for (unsigned pass = 1;; ++pass) {
    const int par = static_cast<int>(pass & 1u);
    if (blockIdx.x == 0) {
      if (poller) {
        int taken = -1;  // -1: exit
        const unsigned long long poll_start = now_ns();
        unsigned long long first_seen = 0;
        for (;;) {
          // Relaxed (volatile) loads, all in flight at once: one PCIe round trip a poll; the
          // acquire fence below orders the input reads after a doorbell that rang.
          const unsigned d0 = lane < p.slots ? load_volatile(p.doorbell + lane * kWordStride) : served0;
          const unsigned d1 =
              lane + 32 < p.slots ? load_volatile(p.doorbell + (lane + 32) * kWordStride) : served1;
          const unsigned long long pending =
              static_cast<unsigned long long>(__ballot_sync(kFull, d0 != served0)) |
              (static_cast<unsigned long long>(__ballot_sync(kFull, d1 != served1)) << 32);
          unsigned command = 0;
          if (lane == 0) command = load_volatile(p.control + kCommand);
          command = __shfl_sync(kFull, command, 0);
          const unsigned long long t = __shfl_sync(kFull, now_ns(), 0);
          if (command == kStopCommand || t - start > p.max_run_ns) break;
          // Gathering: while fewer requests are pending than the recent passes took (`want`,
          // which decays by one a pass), wait up to gather_ns after the first one for the
          // others — callers re-ring a microsecond or two after their pass completed. A lone
          // caller (want 1) never waits.
          if (pending != 0 && __popcll(pending) < min(want, p.max_batch)) {
            if (first_seen == 0) first_seen = t;
            if (t - first_seen < p.gather_ns) continue;
          }
          if (pending != 0) {
            ::cuda::atomic_thread_fence(::cuda::memory_order_acquire, ::cuda::thread_scope_system);
            // Round-robin: rotate so that the slot after the last one taken comes first.
            const unsigned long long rotated =
                rot == 0 ? pending : (pending >> rot) | (pending << (64 - rot));
            unsigned long long rest = rotated;
            int j = 0, last = rot;
            while (rest != 0 && j < p.max_batch) {
              const int slot = (__ffsll(static_cast<long long>(rest)) - 1 + rot) & 63;
              rest &= rest - 1;
              const unsigned q0 = __shfl_sync(kFull, d0, slot & 31);
              const unsigned q1 = __shfl_sync(kFull, d1, slot & 31);
              const unsigned seq = slot < 32 ? q0 : q1;
              if (lane == 0) {
                s_list[j] = slot;
                s_seq[j] = seq;
              }
              if (lane == (slot & 31)) {
                if (slot < 32) served0 = seq;
                else served1 = seq;
              }
              last = slot;
              ++j;
            }
            rot = (last + 1) & 63;
            taken = j;
            want = max(j, want - 1);
            t_taken = t;
            break;
          }
          if (t - poll_start > p.idle_ns) break;
        }
        if (lane < p.slots) p.served[lane] = served0;
        if (lane + 32 < p.slots) p.served[lane + 32] = served1;
        if (lane == 0) {
          s_count = taken;
          if (taken > 0) {
            ++passes;
            requests += static_cast<unsigned long long>(taken);
            totals[kPasses / 2] = passes;
            totals[kRequests / 2] = requests;
          }
        }
      }
      __syncthreads();
      const int b = s_count;
      // Inputs: from the slots (host memory, rewritten by the host between passes: ld.cv), 16
      // bytes a load, up to 8 loads of a thread in flight before its first store (each load is
      // a PCIe round trip).
      {
        const int q = in0 / 4, total = b * q;
        const float4* in4 = reinterpret_cast<const float4*>(p.in);
        float4* act4 = reinterpret_cast<float4*>(p.act[0]);
        for (int base = static_cast<int>(threadIdx.x); base < total;
             base += 8 * static_cast<int>(blockDim.x)) {
          float4 v[8];
#pragma unroll
          for (int u = 0; u < 8; ++u) {
            const int i = base + u * static_cast<int>(blockDim.x);
            if (i < total) v[u] = __ldcv(in4 + static_cast<size_t>(s_list[i / q]) * q + i % q);
          }
#pragma unroll
          for (int u = 0; u < 8; ++u) {
            const int i = base + u * static_cast<int>(blockDim.x);
            if (i < total) act4[i] = v[u];
          }
        }
      }
      for (int j = static_cast<int>(threadIdx.x); j < b; j += static_cast<int>(blockDim.x)) {
        p.list[par * kMaxBatch + j] = s_list[j];
        p.seqs[par * kMaxBatch + j] = s_seq[j];
      }
      if (threadIdx.x == 0) p.count[par] = b;
      __syncthreads();
      if (threadIdx.x == 0) {
        __threadfence();
        ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(p.words[kPassWord])
            .store(pass, ::cuda::memory_order_release);
        t_published = now_ns();
        if (b < 0) store_release_system(p.control + kExitedEpoch, p.epoch);
      }
    } else {
      if (threadIdx.x == 0) {
        while (load_acquire_device(p.words + kPassWord) < pass) {
        }
      }
      __syncthreads();
      if (threadIdx.x == 0) s_count = __ldcg(p.count + par);
      if (threadIdx.x < kMaxBatch) {
        s_list[threadIdx.x] = __ldcg(p.list + par * kMaxBatch + threadIdx.x);
        s_seq[threadIdx.x] = __ldcg(p.seqs + par * kMaxBatch + threadIdx.x);
      }
      __syncthreads();
    }
    const int b = s_count;
    if (b < 0) return;

    for (int l = 0; l < p.layers; ++l) {
      const bool last = l + 1 == p.layers;
      run_layer(p.layer[l], smem, stage, out_stage, p.act[l], b, last ? nullptr : p.act[l + 1],
                last ? p.out : nullptr, s_list);
      if (!last) grid_barrier(p.words + kBarrierWord, ++barriers * B);
    }

    if (timer) t_layers = now_ns();
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence_system();  // this block's output rows reach the host before it counts
      ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> finished(p.words[kFinishedWord]);
      if (finished.fetch_add(1, ::cuda::memory_order_acq_rel) == pass * B - 1) {
        __threadfence_system();
        for (int j = 0; j < b; ++j) store_release_system(p.done + s_list[j] * kWordStride, s_seq[j]);
      }
    }
    if (timer) {  // block 0's time per phase, summed over passes (ResidentStats)
      ph_input += t_published - t_taken;
      ph_layers += t_layers - t_published;
      ph_completion += now_ns() - t_layers;
      totals[kPhaseInput / 2] = ph_input;
      totals[kPhaseLayers / 2] = ph_layers;
      totals[kPhaseCompletion / 2] = ph_completion;
    }
  }
}

}  // namespace

cudaError_t launch(const Params& p, int blocks, size_t shared_bytes, cudaStream_t stream) {
  cudaError_t e = cudaFuncSetAttribute(resident_chain_kernel,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(shared_bytes));
  if (e != cudaSuccess) return e;
  Params copy = p;
  void* args[] = {&copy};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(&resident_chain_kernel),
                                     dim3(static_cast<unsigned>(blocks)), dim3(kBlockThreads), args,
                                     shared_bytes, stream);
}

cudaError_t max_blocks_per_sm(size_t shared_bytes, int* out) {
  cudaError_t e = cudaFuncSetAttribute(resident_chain_kernel,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(shared_bytes));
  if (e != cudaSuccess) return e;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(out, resident_chain_kernel, kBlockThreads,
                                                       shared_bytes);
}

}  // namespace tandem::backends::cuda::resident
