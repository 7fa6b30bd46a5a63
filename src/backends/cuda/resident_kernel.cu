// resident_kernel.cu — the persistent grid of a resident chain (resident_kernel.h; Note
// [Resident serving] in tandem/resident.h). The grid: `blocks` compute blocks and a poller (the
// last block). Passes are numbered 1, 2, ... within a launch; par = pass & 1 picks a pass's
// buffers (act[*], act_out; the poller keeps the lists and sizes in its shared memory).
//
// Poller, two warp groups side by side. The intake, in one loop: polls the doorbells, takes new
// requests into the forming pass (round-robin, up to max_batch) and copies their inputs in as
// they ring; publishes the forming pass (its number and size in the pass word) once the compute
// blocks are idle or the batch is full. A pass is formed only after the pass two before it (same
// buffers) was completed. The completion, for each published pass that every compute block
// counted finished: copies its outputs from act_out to the slots' mapped outputs, one system
// fence, then plain stores of the done words. So while the compute blocks run pass n, the intake
// gathers pass n + 1 (its input copies, PCIe round trips, overlap the computation) and the
// completion returns pass n - 1; the system fence is the completion's alone.
// Compute block, for each pass: acquires the pass word; per layer, stages the batch's inputs
// (L2 loads) into shared memory, computes its rows, and (between layers) meets the other compute
// blocks at a grid barrier; then counts itself finished (release).
// Why one buffer set per parity suffices: the intake rewrites pass n's inputs (for pass n + 2)
// only after pass n was completed; a compute block writes act[l] (l >= 1) or act_out of pass n + 2
// only after a barrier of pass n + 1, which every block reaches only after finishing pass n.
#include <cuda/atomic>

#include "backends/cuda/resident_kernel.h"
#include "backends/cuda/warp_reduce.cuh"

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

// The pass word (64-bit, words[kPassWord]): pass << 8 | (requests + 1); requests = -1: exit.
__device__ inline unsigned long long* pass_word(const Params& p) {
  return reinterpret_cast<unsigned long long*>(p.words + kPassWord);
}

// grid_barrier: every compute block arrives; returns when `target` arrivals were counted (the
// counter is monotonic within a launch: target = barriers so far x compute blocks). Thread 0's
// release add, after the block's bar.sync, publishes the block's writes; its acquire load, before
// the second bar.sync, makes every block's writes visible to the whole block.
__device__ void grid_barrier(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> c(*counter);
    c.fetch_add(1, ::cuda::memory_order_release);
    while (c.load(::cuda::memory_order_acquire) < target) {
    }
  }
  __syncthreads();
}

// The block's rows [row0, row0 + nrows) of one layer for a batch of b <= MB samples. Warp w
// computes rows w, w + warps, ... (at most RW of them) together; lane i takes the float4s
// i, i + 32, ... of the inputs. Each input float4 loaded from shared memory serves all the warp's
// rows, each weight float4 all the batch's samples; 16-byte loads keep the loop short (at 8 warps
// a block the loop is latency-bound, not bandwidth-bound). Sample j's row r goes to
// y[j * ldy + col0 + r].
template <int MB, int RW>
__device__ void layer_rows(const LayerParams& L, const float* wsm, const float* bsm,
                           const float* xs, int b, int nrows, float* y, int ldy, int col0) {
  const int warps = static_cast<int>(blockDim.x) / 32;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int in4 = L.in / 4;
  const float4* x4 = reinterpret_cast<const float4*>(xs);
  for (int r0 = warp; r0 < nrows; r0 += warps * RW) {
    float acc[RW][MB];
#pragma unroll
    for (int q = 0; q < RW; ++q) {
#pragma unroll
      for (int j = 0; j < MB; ++j) acc[q][j] = 0.0f;
    }
    const float4* w[RW];
#pragma unroll
    for (int q = 0; q < RW; ++q) {
      w[q] = reinterpret_cast<const float4*>(wsm + min(r0 + q * warps, nrows - 1) * L.in);
    }
    for (int k = lane; k < in4; k += 32) {
      float4 xv[MB];
#pragma unroll
      for (int j = 0; j < MB; ++j) xv[j] = j < b ? x4[j * in4 + k] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int q = 0; q < RW; ++q) {
        const float4 wv = w[q][k];
#pragma unroll
        for (int j = 0; j < MB; ++j) {
          float a = acc[q][j];
          a = fmaf(wv.x, xv[j].x, a);
          a = fmaf(wv.y, xv[j].y, a);
          a = fmaf(wv.z, xv[j].z, a);
          acc[q][j] = fmaf(wv.w, xv[j].w, a);
        }
      }
    }
    constexpr int kShift = 5 - log2_of(MB);  // lane l ends up holding sample l >> kShift
#pragma unroll
    for (int q = 0; q < RW; ++q) {
      const int r = r0 + q * warps;
      if (r >= nrows) break;  // uniform across the warp
      const float v = reduce_scatter<MB>(acc[q], lane);
      const int j = lane >> kShift;
      if ((lane & ((1 << kShift) - 1)) == 0 && j < b) {
        y[j * ldy + col0 + r] = activate(v + bsm[r], L.act);
      }
    }
  }
}

template <int MB>
__device__ void layer_rows_any(const LayerParams& L, const float* wsm, const float* bsm,
                               const float* xs, int b, int nrows, float* y, int ldy, int col0) {
  const int warps = static_cast<int>(blockDim.x) / 32;
  if (MB <= 16 && nrows > warps) layer_rows<MB, 2>(L, wsm, bsm, xs, b, nrows, y, ldy, col0);
  else layer_rows<MB, 1>(L, wsm, bsm, xs, b, nrows, y, ldy, col0);
}

// One layer for the batch: stage the inputs x [b][L.in] in shared memory, then this block's rows
// into y [b][L.out] (device memory).
__device__ void run_layer(const LayerParams& L, const float* smem, float* stage, const float* x,
                          int b, float* y, unsigned long long* marks) {
  // Stage the batch's inputs: written by other blocks (or the poller) in this launch, so read
  // from L2 (ld.global.cg), never from a possibly stale L1 line. Up to 8 loads of a thread in
  // flight before its first store.
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
  if (marks != nullptr) marks[0] = now_ns();
  const int row0 = static_cast<int>(blockIdx.x) * L.rows;
  const int nrows = min(L.rows, L.out - row0);
  const float* wsm = smem + L.w_off;
  const float* bsm = wsm + L.rows * L.in;
  if (nrows > 0) {
    if (b <= 1) layer_rows_any<1>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
    else if (b <= 2) layer_rows_any<2>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
    else if (b <= 4) layer_rows_any<4>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
    else if (b <= 8) layer_rows_any<8>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
    else if (b <= 16) layer_rows_any<16>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
    else layer_rows_any<32>(L, wsm, bsm, stage, b, nrows, y, L.out, row0);
  }
  __syncthreads();  // the stage is rewritten by the next layer
  if (marks != nullptr) marks[1] = now_ns();
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

// copy_float4s(tid, threads, total, dst, load): *dst(i) = load(i) for i in [0, total), by the
// `threads` threads of a group (tid: this thread's index in it), up to 8 loads of a thread in
// flight before its first store.
template <class Dst, class Load>
__device__ void copy_float4s(int tid, int threads, int total, Dst dst, Load load) {
  for (int base = tid; base < total; base += 8 * threads) {
    float4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      if (base + u * threads < total) v[u] = load(base + u * threads);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      if (base + u * threads < total) *dst(base + u * threads) = v[u];
    }
  }
}

// The poller block's two warp groups (bar.sync 0, that is __syncthreads, is not used in the
// poller): the intake (threads 0..127) and the completion (threads 128..255). Each has a named
// barrier of its own; between them, named barriers by pass parity carry each handoff (a
// producer's bar.arrive, the consumer's bar.sync, both groups counted: memory ordered as by
// __syncthreads): kPublished + parity, the intake published a pass (its list, seqs and count
// are in PollerShared); kCompleted + parity, the completion completed one (its buffers and
// lists are free again). Each barrier's arrivals and waits alternate: a pass's buffers are reused
// (pass + 2, same barriers) only after both handoffs of the pass.
constexpr int kGroupThreads = kBlockThreads / 2;
constexpr int kIntakeBarrier = 1, kCompletionBarrier = 2, kPublishedBarrier = 3, kCompletedBarrier = 5;

__device__ inline void group_sync(int barrier) {
  asm volatile("bar.sync %0, %1;" ::"r"(barrier), "r"(kGroupThreads) : "memory");
}
__device__ inline void handoff_arrive(int barrier) {
  asm volatile("bar.arrive %0, %1;" ::"r"(barrier), "r"(kBlockThreads) : "memory");
}
__device__ inline void handoff_wait(int barrier) {
  asm volatile("bar.sync %0, %1;" ::"r"(barrier), "r"(kBlockThreads) : "memory");
}

// The poller's shared memory: the intake's own state, and each published pass's list, seqs and
// count (-1: the grid exits), by parity, for the completion.
struct PollerShared {
  int new_slot[kMaxBatch];
  unsigned new_seq[kMaxBatch];
  int list[2][kMaxBatch];      // published passes' slots, by parity
  unsigned seq[2][kMaxBatch];  // ... and sequence numbers
  int count[2];
  int n_new, exit;
  unsigned finished_polled, finished_now;
};

// The intake (poller threads 0..127): forms pass after pass out of the doorbells, each into the
// buffers of its parity, and publishes a pass as soon as the compute blocks are idle or the batch
// is full. A pass is formed only after the pass two before it (same buffers) was completed.
__device__ void intake(const Params& p, unsigned compute_blocks, PollerShared& s) {
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % 32;
  const bool warp0 = tid < 32;
  const int in0 = p.layer[0].in, q_in = in0 / 4;
  auto* totals = reinterpret_cast<volatile unsigned long long*>(p.control);
  unsigned served0 = 0, served1 = 0;  // warp 0: the served sequence numbers of slots lane, lane + 32
  int rot = 0;
  unsigned long long passes = 0, requests = 0, ph_input = 0;
  if (warp0) {
    if (lane < p.slots) served0 = p.served[lane];
    if (lane + 32 < p.slots) served1 = p.served[lane + 32];
    if (lane == 0) {  // read once: host reads are PCIe round trips; the writes below are posted
      passes = totals[kPasses / 2];
      requests = totals[kRequests / 2];
      ph_input = totals[kPhaseInput / 2];
    }
  }
  ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> finished(p.words[kFinishedWord]);
  const unsigned long long start = now_ns();
  // The same in every thread of the group: passes published, and completed passes waited for.
  unsigned published = 0, completed = 0;
  auto wait_completed = [&](unsigned c) {  // by the whole group
    for (; completed < c; ++completed) handoff_wait(kCompletedBarrier + static_cast<int>((completed + 1) & 1u));
  };
  for (unsigned pass = 1;; ++pass) {
    const int par = static_cast<int>(pass & 1u);
    if (pass > 2) wait_completed(pass - 2);  // this pass's buffers and lists are free
    float4* act4 = reinterpret_cast<float4*>(p.act[0] + par * p.max_batch * in0);
    int j = 0;  // requests in this pass so far
    unsigned long long first = 0, quiet_since = now_ns();
    for (;;) {
      // One iteration: (1) warp 0 reads the doorbells, the command and the compute blocks'
      // finished count, all loads in flight at once, and takes new requests; (2) the group copies
      // their inputs in;
      // (3) publishes this pass when the compute blocks are idle or the batch is full.
      if (warp0) {
        // Relaxed (volatile) loads: one PCIe round trip a poll; the acquire fence below orders
        // the input reads after the doorbells that rang.
        const unsigned d0 = lane < p.slots ? load_volatile(p.doorbell + lane * kWordStride) : served0;
        const unsigned d1 =
            lane + 32 < p.slots ? load_volatile(p.doorbell + (lane + 32) * kWordStride) : served1;
        unsigned command = 0, fin = 0;
        if (lane == 0) {
          command = load_volatile(p.control + kCommand);
          fin = finished.load(::cuda::memory_order_acquire);
        }
        command = __shfl_sync(kFull, command, 0);
        const unsigned long long pending =
            static_cast<unsigned long long>(__ballot_sync(kFull, d0 != served0)) |
            (static_cast<unsigned long long>(__ballot_sync(kFull, d1 != served1)) << 32);
        const unsigned long long t = __shfl_sync(kFull, now_ns(), 0);
        // Past max_run (or told to stop) the intake takes nothing more: what it holds is
        // published and completed, then the grid exits and waiting callers relaunch it.
        const bool ending = command == kStopCommand || t - start > p.max_run_ns;
        int n = 0;
        if (pending != 0 && j < p.max_batch && !ending) {
          ::cuda::atomic_thread_fence(::cuda::memory_order_acquire, ::cuda::thread_scope_system);
          // Round-robin: rotate so that the slot after the last one taken comes first.
          unsigned long long rest = rot == 0 ? pending : (pending >> rot) | (pending << (64 - rot));
          int last = rot;
          while (rest != 0 && j + n < p.max_batch) {
            const int slot = (__ffsll(static_cast<long long>(rest)) - 1 + rot) & 63;
            rest &= rest - 1;
            const unsigned q0 = __shfl_sync(kFull, d0, slot & 31);
            const unsigned q1 = __shfl_sync(kFull, d1, slot & 31);
            const unsigned seq = slot < 32 ? q0 : q1;
            if (lane == 0) {
              s.new_slot[n] = slot;
              s.new_seq[n] = seq;
            }
            if (lane == (slot & 31)) {
              if (slot < 32) served0 = seq;
              else served1 = seq;
            }
            last = slot;
            ++n;
          }
          rot = (last + 1) & 63;
          if (lane < p.slots) p.served[lane] = served0;
          if (lane + 32 < p.slots) p.served[lane + 32] = served1;
          if (first == 0) first = t;
        }
        if (pending != 0) quiet_since = t;
        // A formed pass that this poll added nothing to: wait for the compute blocks on the
        // finished counter alone (L2 loads) rather than on the next poll (a PCIe round trip), and
        // publish it the moment they are idle. Callers that ring meanwhile join the next pass.
        if (lane == 0 && j > 0 && n == 0 && j < p.max_batch) {
          while (fin < published * compute_blocks) fin = finished.load(::cuda::memory_order_acquire);
        }
        if (lane == 0) {
          s.n_new = n;
          s.finished_polled = fin;
          // Exit (only with nothing taken into this pass; once every pass is completed): on the
          // stop command, after max_run (callers relaunch), or when idle for idle_ns.
          s.exit = j + n == 0 && (ending || t - quiet_since > p.idle_ns);
        }
      }
      group_sync(kIntakeBarrier);
      const int n = s.n_new;
      // The new requests' inputs: from the slots (host memory, rewritten by the host between
      // passes: ld.cv).
      const float4* in4 = reinterpret_cast<const float4*>(p.in);
      copy_float4s(
          tid, kGroupThreads, n * q_in, [&](int i) { return act4 + (j + i / q_in) * q_in + i % q_in; },
          [&](int i) { return __ldcv(in4 + static_cast<size_t>(s.new_slot[i / q_in]) * q_in + i % q_in); });
      if (tid < n) {
        s.list[par][j + tid] = s.new_slot[tid];
        s.seq[par][j + tid] = s.new_seq[tid];
      }
      j += n;
      const bool exit_now = s.exit != 0;
      // After a copy (a PCIe round trip) the count read with the poll is stale: read it again.
      if (tid == 0) {
        s.finished_now = n > 0 ? finished.load(::cuda::memory_order_acquire) : s.finished_polled;
        // The forming pass's size, for the completion (this parity's previous pass is completed;
        // written before the group's bar.sync, as the lists are).
        s.count[par] = exit_now ? -1 : j;
      }
      group_sync(kIntakeBarrier);  // the inputs and lists are written; s.new_* may be rewritten
      // The compute blocks are idle once every published pass is finished.
      const bool publish =
          j > 0 && (s.finished_now >= published * compute_blocks || j == p.max_batch);
      if (tid == 0 && n > 0 && !publish && !exit_now) {
        // Order this iteration's input writes (the bar.sync above: the whole group's) before
        // the pass word now, while the compute blocks are busy, so that publishing it later is a
        // plain store.
        __threadfence();
      }
      if (exit_now) wait_completed(published);
      if (exit_now || publish) {
        if (tid == 0) {
          // The pass and its size in one store: a release store (cumulative over the group's
          // input writes, after the bar.sync above) if this iteration copied inputs; else the
          // fence of the iteration that copied the last ones already ordered them.
          const unsigned long long t_pub = now_ns();
          reinterpret_cast<volatile unsigned long long*>(p.words + kPublishedAt)[0] = t_pub;
          ::cuda::atomic_ref<unsigned long long, ::cuda::thread_scope_device> word(*pass_word(p));
          const unsigned long long value =
              static_cast<unsigned long long>(pass) << 8 | static_cast<unsigned>((exit_now ? -1 : j) + 1);
          word.store(value, n > 0 || exit_now ? ::cuda::memory_order_release : ::cuda::memory_order_relaxed);
          if (exit_now) {
            store_release_system(p.control + kExitedEpoch, p.epoch);
          } else {
            ++passes;
            requests += static_cast<unsigned long long>(j);
            ph_input += now_ns() - first;
            totals[kPasses / 2] = passes;
            totals[kRequests / 2] = requests;
            totals[kPhaseInput / 2] = ph_input;
          }
        }
        handoff_arrive(kPublishedBarrier + par);  // the list, seqs and count: to the completion
        if (exit_now) return;
        published = pass;
        break;
      }
    }
  }
}

// The completion (poller threads 128..255): for each published pass, once every compute block
// counted it finished, copies its outputs from act_out to the slots' mapped outputs, makes them
// visible with one system fence, then stores the done words (plain stores). It runs beside the
// intake, so completing a pass never delays a poll, and starts the moment the pass is finished.
__device__ void completion(const Params& p, unsigned compute_blocks, PollerShared& s) {
  const int tid = static_cast<int>(threadIdx.x) - kGroupThreads;
  const bool leader = tid == 0;
  const int out_last = p.layer[p.layers - 1].out, q_out = out_last / 4;
  auto* totals = reinterpret_cast<volatile unsigned long long*>(p.control);
  unsigned long long ph_completion = leader ? totals[kPhaseCompletion / 2] : 0;
  ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> finished(p.words[kFinishedWord]);
  for (unsigned c = 1;; ++c) {
    const int cp = static_cast<int>(c & 1u);
    handoff_wait(kPublishedBarrier + cp);
    const int b = s.count[cp];
    if (b < 0) return;  // the grid exits (every earlier pass was completed)
    if (leader) {
      while (finished.load(::cuda::memory_order_acquire) < c * compute_blocks) {
      }
    }
    group_sync(kCompletionBarrier);  // the leader's acquire: act_out of pass c is complete
    const unsigned long long t0 = leader ? now_ns() : 0;
    const float4* src = reinterpret_cast<const float4*>(p.act_out + cp * p.max_batch * out_last);
    float4* dst = reinterpret_cast<float4*>(p.out);
    copy_float4s(
        tid, kGroupThreads, b * q_out,
        [&](int i) { return dst + static_cast<size_t>(s.list[cp][i / q_out]) * q_out + i % q_out; },
        [&](int i) { return __ldcg(src + i); });
    group_sync(kCompletionBarrier);
    if (leader) {
      __threadfence_system();
      for (int k = 0; k < b; ++k) {
        *reinterpret_cast<volatile unsigned*>(p.done + s.list[cp][k] * kWordStride) = s.seq[cp][k];
      }
      ph_completion += now_ns() - t0;
      totals[kPhaseCompletion / 2] = ph_completion;
    }
    handoff_arrive(kCompletedBarrier + cp);  // pass c's buffers and lists are free
  }
}

// The poller (the grid's last block): the intake and the completion side by side.
__device__ void poller(const Params& p, unsigned compute_blocks) {
  __shared__ PollerShared s;
  if (threadIdx.x < static_cast<unsigned>(kGroupThreads)) {
    intake(p, compute_blocks, s);
  } else {
    completion(p, compute_blocks, s);
  }
}

// A compute block: its rows of every layer, pass after pass, until the poller publishes an exit.
__device__ void compute(const Params& p, unsigned compute_blocks) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* stage = smem + p.stage_off;
  __shared__ int s_count;
  __shared__ unsigned long long s_published_at;
  load_weights(p, smem);
  const bool timer = blockIdx.x == 0 && threadIdx.x == 0;
  auto* totals = reinterpret_cast<volatile unsigned long long*>(p.control);
  unsigned long long ph_layers = 0, ph_publish = 0;
  unsigned long long detail[kMaxLayers][3] = {};  // per layer: stage, compute, barrier
  if (timer) {
    ph_layers = totals[kPhaseLayers / 2];
    ph_publish = totals[kPhasePublish / 2];
    for (int l = 0; l < p.layers; ++l) {
      for (int k = 0; k < 3; ++k) detail[l][k] = totals[kPhaseDetail / 2 + 3 * l + k];
    }
  }
  unsigned barriers = 0;
  for (unsigned pass = 1;; ++pass) {
    const int par = static_cast<int>(pass & 1u);
    if (threadIdx.x == 0) {
      ::cuda::atomic_ref<unsigned long long, ::cuda::thread_scope_device> word(*pass_word(p));
      unsigned long long w;
      while (((w = word.load(::cuda::memory_order_acquire)) >> 8) < pass) {
      }
      s_count = static_cast<int>(w & 0xFF) - 1;
      if (timer) s_published_at = __ldcg(reinterpret_cast<unsigned long long*>(p.words + kPublishedAt));
    }
    __syncthreads();
    const unsigned long long t_published = timer ? now_ns() : 0;
    if (timer) ph_publish += t_published - s_published_at;
    const int b = s_count;
    if (b < 0) return;
    for (int l = 0; l < p.layers; ++l) {
      const bool last = l + 1 == p.layers;
      const float* x = p.act[l] + par * p.max_batch * p.layer[l].in;
      float* y = (last ? p.act_out : p.act[l + 1]) + par * p.max_batch * p.layer[l].out;
      unsigned long long marks[2] = {};
      const unsigned long long t0 = timer ? now_ns() : 0;
      run_layer(p.layer[l], smem, stage, x, b, y, timer ? marks : nullptr);
      if (!last) grid_barrier(p.words + kBarrierWord, ++barriers * compute_blocks);
      if (timer) {
        detail[l][0] += marks[0] - t0;
        detail[l][1] += marks[1] - marks[0];
        detail[l][2] += now_ns() - marks[1];
      }
    }
    if (threadIdx.x == 0) {  // after run_layer's bar.sync: publishes the block's outputs
      ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(p.words[kFinishedWord])
          .fetch_add(1, ::cuda::memory_order_release);
    }
    if (timer) {  // compute block 0's time per phase, summed over passes (ResidentStats)
      ph_layers += now_ns() - t_published;
      totals[kPhaseLayers / 2] = ph_layers;
      totals[kPhasePublish / 2] = ph_publish;
      for (int l = 0; l < p.layers; ++l) {
        for (int k = 0; k < 3; ++k) totals[kPhaseDetail / 2 + 3 * l + k] = detail[l][k];
      }
    }
  }
}

__global__ void __launch_bounds__(kBlockThreads, 1) resident_chain_kernel(Params p) {
  const unsigned compute_blocks = gridDim.x - 1;
  if (blockIdx.x == compute_blocks) {
    poller(p, compute_blocks);
  } else {
    compute(p, compute_blocks);
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
