// resident_probe.cu — can a batch-1 forward reach the GPU without the driver? (issue 3 scaling)
//
// Every launch path through the CUDA driver flattens at ~450-500k forwards/s from 8 threads on,
// whatever the wait (bench/sync_probe.cu, docs/benchmarks.md "How a forward waits"). Here each
// host thread owns a *resident* kernel instead: a persistent grid of --blocks blocks, launched
// once on the thread's own stream, that serves one forward of the reference MLP
// (512-1024-1024-512, ReLU, fp32, batch 1) per doorbell:
//   host:   copy the input into page-locked mapped memory; store seq into the doorbell
//           (release); spin until the done word reads seq (acquire); read the output.
//   device: block 0 polls the doorbell (acquire, system scope), copies the input to device
//           memory; a grid barrier (a counter in device memory) releases every block; each block
//           computes its share of a layer's output rows (input staged in shared memory), barrier, next layer; the last layer writes straight into the mapped output;
//           the last block to finish stores seq into the done word (release, system scope).
// No driver call per forward. Each warp computes 4 rows per round trip (-DRESIDENT_ROWS=N),
// its weight loads in flight at once through cp.async into shared memory.
// Every block of every thread's grid must be resident at once (the barriers spin): the probe
// refuses a thread count x blocks that the occupancy API says does not fit, and more grids than
// the 32 hardware queues (it sets CUDA_DEVICE_MAX_CONNECTIONS=32 unless set: with the default 8,
// a 9th grid waits behind a spinning one forever). All allocation happens before the grids are
// launched and all freeing after they exit: a cudaMalloc/cudaMemset/cudaHostAlloc while grids
// spin hung the first version at 16 threads. Waits time out after 2 s (exit 3), never hang.
// --layers 0 is the pure round trip (doorbell -> done, no compute).
// Prints forwards/s and scaling per (blocks, threads), the largest error against a
// double-precision host forward (first and last forward of every thread), and thread 0's grid
// time per phase from block 0's %globaltimer (input copy + barrier, each layer + its barrier,
// completion). Progress lines go to stderr, unbuffered.
//
//   resident_probe [--threads 1,8,16] [--blocks 8,16,32] [--block-threads 256] [--seconds 1]
//                  [--layers 3|0]
#include <cuda/atomic>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "probe_args.h"

namespace {

constexpr int kThreads = 256;  // 8 warps per block (the launch bound; --block-threads may use fewer)
constexpr int kMaxWidth = 1024;
constexpr int kDims[4] = {512, 1024, 1024, 512};
constexpr unsigned kStop = 0xFFFFFFFFu;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "resident_probe: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct Mailbox {  // page-locked, mapped; one per thread
  alignas(64) unsigned doorbell;
  alignas(64) unsigned done;
  alignas(64) float in[kMaxWidth];
  alignas(64) float out[kMaxWidth];
};

struct Layer {
  const float* w;  // out x in, row-major
  const float* b;
  int in, out, relu;
};

struct Params {
  Mailbox* mb;                   // device alias of the mailbox
  unsigned* barrier;             // device counter, monotonic
  unsigned* finished;            // device counter, monotonic
  unsigned* command;             // device word: the doorbell value block 0 saw
  float* act[3];                 // device activations: input, hidden 1, hidden 2
  unsigned long long* phase_ns;  // device [6]: block 0's time per phase, summed (see kernel)
  Layer layer[3];
  int layers;
};

__device__ void grid_barrier(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    cuda::atomic_ref<unsigned, cuda::thread_scope_device> c(*counter);
    c.fetch_add(1, cuda::memory_order_acq_rel);
    while (static_cast<int>(c.load(cuda::memory_order_acquire) - target) < 0) {
    }
  }
  __syncthreads();
}

// A warp computes kRows output rows at a time. A row is exactly 32 x U float4 (U = 4 for the
// MLP's 512 inputs, 8 for 1024); every lane issues all its U copies for all kRows rows before
// the first FMA: one L2 round trip per kRows rows. (Measured: a block still streams only
// ~30-40 GB/s of weights from L2, with cp.async, __ldg or more rows in flight alike.)
#ifndef RESIDENT_ROWS
#define RESIDENT_ROWS 4  // rows per warp and round trip (-DRESIDENT_ROWS=8: twice the bytes in flight)
#endif
constexpr int kRows = RESIDENT_ROWS;
constexpr int kStageFloat4PerWarp = kRows * (kMaxWidth / 4);  // kRows rows of the widest layer

__device__ inline float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

// 16-byte asynchronous copy global -> shared (bypassing L1): all of a lane's copies for kRows
// rows are in flight at once without holding registers; the lane then waits for its own copies
// only (it reads back exactly what it copied).
__device__ inline void copy_async16(float4* smem, const float4* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem));
}
__device__ inline void copy_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
}

// stage: this warp's kRows x U x 32 float4 of shared memory.
template <int U>
__device__ void rows_fixed(const Layer& L, const float4* x4, float* y, int o, int lane,
                           float4* stage) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = min(o + r, L.out - 1);
    const float4* w4 = reinterpret_cast<const float4*>(L.w + static_cast<size_t>(row) * L.in);
#pragma unroll
    for (int u = 0; u < U; ++u) copy_async16(stage + (r * U + u) * 32 + lane, w4 + lane + 32 * u);
  }
  copy_async_wait_all();
  float acc[kRows] = {};
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const float4 xv = x4[lane + 32 * u];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] += dot4(stage[(r * U + u) * 32 + lane], xv);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int s = 16; s > 0; s /= 2) acc[r] += __shfl_xor_sync(0xFFFFFFFFu, acc[r], s);
    if (lane == 0 && o + r < L.out) {
      const float v = acc[r] + L.b[o + r];
      y[o + r] = L.relu && v < 0.0f ? 0.0f : v;
    }
  }
}

__device__ void run_layer(const Layer& L, const float* x, float* y, float* xs) {
  for (int i = threadIdx.x; i < L.in; i += blockDim.x) xs[i] = x[i];
  __syncthreads();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int stride = gridDim.x * warps * kRows;
  const float4* x4 = reinterpret_cast<const float4*>(xs);
  extern __shared__ float4 staging[];
  float4* stage = staging + warp * kStageFloat4PerWarp;
  for (int o = (blockIdx.x * warps + warp) * kRows; o < L.out; o += stride) {
    if (L.in == 512) rows_fixed<4>(L, x4, y, o, lane, stage);
    else rows_fixed<8>(L, x4, y, o, lane, stage);  // 1024: the probe's only other width
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) resident_kernel(Params p) {
  __shared__ float xs[kMaxWidth];
  __shared__ unsigned seen;
  const unsigned B = gridDim.x;
  unsigned barriers = 0, forwards = 0, last = 0;
  const bool timer = blockIdx.x == 0 && threadIdx.x == 0;
  unsigned long long t_prev = 0;
  auto mark = [&](int k) {  // block 0, thread 0: adds the time since the last mark to phase k
    if (!timer) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (k >= 0 && t_prev) p.phase_ns[k] += t - t_prev;
    t_prev = t;
  };
  for (;;) {
    if (blockIdx.x == 0) {
      if (threadIdx.x == 0) {
        cuda::atomic_ref<unsigned, cuda::thread_scope_system> bell(p.mb->doorbell);
        unsigned d;
        while ((d = bell.load(cuda::memory_order_acquire)) == last) {
        }
        seen = d;
        mark(-1);
        *reinterpret_cast<volatile unsigned*>(p.command) = d;
      }
      __syncthreads();
      if (seen != kStop && p.layers > 0) {
        for (int i = threadIdx.x; i < p.layer[0].in; i += blockDim.x) p.act[0][i] = p.mb->in[i];
      }
    }
    grid_barrier(p.barrier, ++barriers * B);
    mark(0);
    const unsigned cmd = *reinterpret_cast<volatile unsigned*>(p.command);
    if (cmd == kStop) return;
    last = cmd;
    for (int l = 0; l < p.layers; ++l) {
      float* y = l + 1 < p.layers ? p.act[l + 1] : p.mb->out;
      run_layer(p.layer[l], p.act[l], y, xs);
      if (l + 1 < p.layers) grid_barrier(p.barrier, ++barriers * B);
      mark(1 + l);
    }
    ++forwards;
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence_system();  // this block's output rows reach the host before it counts
      cuda::atomic_ref<unsigned, cuda::thread_scope_device> f(*p.finished);
      if (f.fetch_add(1, cuda::memory_order_acq_rel) == forwards * B - 1) {
        __threadfence_system();
        cuda::atomic_ref<unsigned, cuda::thread_scope_system> done(p.mb->done);
        done.store(cmd, cuda::memory_order_release);
      }
      mark(4);
      if (timer) ++p.phase_ns[5];
    }
  }
}

struct Weights {
  std::vector<float> host[3], bias[3];
  float* dev_w[3]{};
  float* dev_b[3]{};
};

Weights make_weights() {
  Weights W;
  std::mt19937 rng(7);
  for (int l = 0; l < 3; ++l) {
    const int in = kDims[l], out = kDims[l + 1];
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(in)), 1.0f / std::sqrt(float(in)));
    W.host[l].resize(size_t(in) * out);
    W.bias[l].resize(out);
    for (auto& v : W.host[l]) v = u(rng);
    for (auto& v : W.bias[l]) v = u(rng);
    check(cudaMalloc(&W.dev_w[l], W.host[l].size() * 4), "cudaMalloc w");
    check(cudaMalloc(&W.dev_b[l], W.bias[l].size() * 4), "cudaMalloc b");
    check(cudaMemcpy(W.dev_w[l], W.host[l].data(), W.host[l].size() * 4, cudaMemcpyHostToDevice),
          "copy w");
    check(cudaMemcpy(W.dev_b[l], W.bias[l].data(), W.bias[l].size() * 4, cudaMemcpyHostToDevice),
          "copy b");
  }
  return W;
}

std::vector<double> reference(const Weights& W, const float* x) {
  std::vector<double> a(x, x + kDims[0]);
  for (int l = 0; l < 3; ++l) {
    std::vector<double> y(kDims[l + 1]);
    for (int o = 0; o < kDims[l + 1]; ++o) {
      double s = W.bias[l][o];
      for (int i = 0; i < kDims[l]; ++i) s += double(W.host[l][size_t(o) * kDims[l] + i]) * a[i];
      y[o] = l < 2 && s < 0 ? 0 : s;
    }
    a = std::move(y);
  }
  return a;
}

// The host's view of a mailbox word the GPU also reads or writes (C++17: no std::atomic_ref; a
// lock-free std::atomic<unsigned> has unsigned's layout, as bench/sync_probe.cu relies on too).
std::atomic<unsigned>& host_word(unsigned& w) { return *reinterpret_cast<std::atomic<unsigned>*>(&w); }

struct Resident {
  cudaStream_t stream{};
  Mailbox* mb = nullptr;  // host
  Params p{};
  unsigned seq = 0;
  int blocks = 0, block_threads = 0;
};

void start(Resident& r, const Weights& W, int blocks, int block_threads, int layers) {
  check(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaHostAlloc(&r.mb, sizeof(Mailbox), cudaHostAllocMapped | cudaHostAllocPortable),
        "cudaHostAlloc");
  std::memset(r.mb, 0, sizeof(Mailbox));
  check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&r.p.mb), r.mb, 0), "device pointer");
  unsigned* words = nullptr;
  check(cudaMalloc(&words, 3 * 64), "cudaMalloc counters");
  check(cudaMemset(words, 0, 3 * 64), "cudaMemset");
  r.p.barrier = words;
  r.p.finished = words + 16;
  r.p.command = words + 32;
  check(cudaMalloc(&r.p.phase_ns, 8 * sizeof(unsigned long long)), "cudaMalloc phases");
  check(cudaMemset(r.p.phase_ns, 0, 8 * sizeof(unsigned long long)), "cudaMemset phases");
  for (int i = 0; i < 3; ++i) check(cudaMalloc(&r.p.act[i], kMaxWidth * 4), "cudaMalloc act");
  for (int l = 0; l < 3; ++l) r.p.layer[l] = {W.dev_w[l], W.dev_b[l], kDims[l], kDims[l + 1], l < 2};
  r.p.layers = layers;
  r.blocks = blocks;
  r.block_threads = block_threads;
}

size_t stage_bytes(int block_threads) {
  return size_t(block_threads / 32) * kStageFloat4PerWarp * sizeof(float4);
}

// After every start(): no allocation, memset or free runs while resident grids spin.
void launch(Resident& r) {
  resident_kernel<<<r.blocks, r.block_threads, stage_bytes(r.block_threads), r.stream>>>(r.p);
  check(cudaGetLastError(), "launch resident_kernel");
}

void forward(Resident& r, const float* x, float* y, int layers) {
  if (layers > 0) std::memcpy(r.mb->in, x, kDims[0] * sizeof(float));
  const unsigned want = ++r.seq;
  host_word(r.mb->doorbell).store(want, std::memory_order_release);
  const auto t0 = std::chrono::steady_clock::now();
  for (long spins = 0; host_word(r.mb->done).load(std::memory_order_acquire) != want;
       ++spins) {
    if (spins % 4096 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) {
      std::fprintf(stderr, "resident_probe: forward %u not done after 2 s (a resident grid that "
                   "never started? more resident kernels than CUDA_DEVICE_MAX_CONNECTIONS)\n", want);
      std::_Exit(3);
    }
  }
  if (layers > 0) std::memcpy(y, r.mb->out, kDims[3] * sizeof(float));
}

void ring_stop(Resident& r) {
  host_word(r.mb->doorbell).store(kStop, std::memory_order_release);
}

// After every ring_stop(): waits for the grid to exit (2 s at most), then frees.
void stop(Resident& r, bool report) {
  const auto t0 = std::chrono::steady_clock::now();
  cudaError_t e;
  while ((e = cudaStreamQuery(r.stream)) == cudaErrorNotReady) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) {
      std::fprintf(stderr, "resident_probe: a resident grid did not exit within 2 s of kStop\n");
      std::_Exit(3);
    }
  }
  check(e, "resident kernel exit");
  unsigned long long ph[8];
  check(cudaMemcpy(ph, r.p.phase_ns, sizeof ph, cudaMemcpyDeviceToHost), "copy phases");
  if (report && ph[5] > 0) {
    std::fprintf(stderr, "    phases (block 0, us per forward): input+barrier %.2f, layer1+barrier %.2f, "
                 "layer2+barrier %.2f, layer3 %.2f, completion %.2f\n",
                 ph[0] / 1e3 / ph[5], ph[1] / 1e3 / ph[5], ph[2] / 1e3 / ph[5], ph[3] / 1e3 / ph[5],
                 ph[4] / 1e3 / ph[5]);
  }
  cudaFree(r.p.phase_ns);
  cudaFree(r.p.barrier);
  for (auto* a : r.p.act) cudaFree(a);
  cudaFreeHost(r.mb);
  cudaStreamDestroy(r.stream);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 8, 16}, blocks = {8, 16, 32};
  double seconds = 1.0;
  int layers = 3, block_threads = kThreads;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = probe::parse_list(argv[i + 1]);
    else if (a == "--blocks") blocks = probe::parse_list(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--block-threads") block_threads = std::clamp(std::atoi(argv[i + 1]) / 32 * 32, 32, kThreads);
    else if (a == "--layers") layers = std::atoi(argv[i + 1]) > 0 ? 3 : 0;
    else {
      std::fprintf(stderr, "usage: resident_probe [--threads 1,8,16] [--blocks 8,16,32] "
                           "[--block-threads 512] [--seconds 1] [--layers 3|0]\n");
      return 2;
    }
  }
  // A resident grid occupies its stream's hardware queue for good: with more streams than
  // queues (CUDA_DEVICE_MAX_CONNECTIONS, default 8), a later grid would wait behind an earlier
  // one forever. 32 is the maximum.
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0);
  check(cudaFree(nullptr), "context");
  check(cudaFuncSetAttribute(resident_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(stage_bytes(block_threads))),
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  int sms = 0, per_sm = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, resident_kernel, block_threads, stage_bytes(block_threads)),
        "occupancy");
  std::printf("# %d SMs, %d resident blocks of %d threads per SM, %d rows per warp, layers %d, "
              "CUDA_DEVICE_MAX_CONNECTIONS=%s\n",
              sms, per_sm, block_threads, kRows, layers, std::getenv("CUDA_DEVICE_MAX_CONNECTIONS"));
  std::printf("%6s %7s %12s %10s %12s\n", "blocks", "threads", "forwards/s", "scaling", "max_err");
  const Weights W = make_weights();
  for (int b : blocks) {
    double one = 0;
    for (int n : threads) {
      if (n > 32) {
        std::printf("%6d %7d %12s (more resident grids than the 32 hardware queues)\n", b, n, "-");
        continue;
      }
      if (n * b > sms * per_sm) {
        std::printf("%6d %7d %12s (%d blocks do not fit %d x %d resident)\n", b, n, "-", n * b, sms,
                    per_sm);
        continue;
      }
      std::vector<Resident> rs(static_cast<size_t>(n));
      std::fprintf(stderr, "[blocks %d threads %d] allocate\n", b, n);
      for (auto& r : rs) start(r, W, b, block_threads, layers);
      check(cudaDeviceSynchronize(), "setup");
      std::fprintf(stderr, "[blocks %d threads %d] launch\n", b, n);
      for (auto& r : rs) launch(r);
      std::atomic<int> ready{0};
      std::atomic<bool> go{false}, halt{false};
      std::vector<long long> counts(size_t(n), 0);
      std::vector<double> err(size_t(n), 0);
      std::vector<std::thread> ts;
      for (int i = 0; i < n; ++i) {
        ts.emplace_back([&, i] {
          Resident& r = rs[size_t(i)];
          std::vector<float> x(kDims[0]), y(kDims[3]);
          std::mt19937 rng(100 + i);
          std::uniform_real_distribution<float> u(-1, 1);
          for (auto& v : x) v = u(rng);
          for (int w = 0; w < 200; ++w) forward(r, x.data(), y.data(), layers);
          if (layers > 0) {
            const auto ref = reference(W, x.data());
            for (int o = 0; o < kDims[3]; ++o)
              err[size_t(i)] = std::max(err[size_t(i)], std::abs(double(y[o]) - ref[o]));
          }
          ready.fetch_add(1);
          while (!go.load()) std::this_thread::yield();
          long long c = 0;
          while (!halt.load(std::memory_order_relaxed)) {
            x[size_t(c) % kDims[0]] += 1e-3f;  // a fresh input every forward
            forward(r, x.data(), y.data(), layers);
            ++c;
          }
          if (layers > 0) {  // the last forward's output, checked too
            const auto ref = reference(W, x.data());
            for (int o = 0; o < kDims[3]; ++o)
              err[size_t(i)] = std::max(err[size_t(i)], std::abs(double(y[o]) - ref[o]));
          }
          counts[size_t(i)] = c;
        });
      }
      while (ready.load() != n) std::this_thread::yield();
      std::fprintf(stderr, "[blocks %d threads %d] warm, checked\n", b, n);
      go = true;
      const auto t0 = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      halt = true;
      for (auto& t : ts) t.join();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      long long total = 0;
      for (auto c : counts) total += c;
      double max_err = 0;
      for (auto e : err) max_err = std::max(max_err, e);
      const double rate = double(total) / dt;
      if (n == 1) one = rate;
      std::printf("%6d %7d %12.0f %9.0f%% %12.2e\n", b, n, rate,
                  one > 0 ? 100.0 * rate / (one * n) : 0.0, max_err);
      std::fflush(stdout);
      std::fprintf(stderr, "[blocks %d threads %d] stop\n", b, n);
      for (auto& r : rs) ring_stop(r);
      for (auto& r : rs) stop(r, &r == &rs[0]);
    }
  }
  return 0;
}
