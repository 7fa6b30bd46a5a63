// sync_probe.cu — how a host thread best waits for one tiny piece of GPU work, at 1..N threads:
// the ceiling under issue 3's batch-1 targets (docs/benchmarks.md, "How a forward waits").
//
// Each thread owns a non-blocking stream and loops { launch; wait } for --seconds. Launch: one
// empty kernel (cudaLaunchKernel) or a one-kernel graph (cudaGraphLaunch). Wait:
//   stream: cudaStreamSynchronize(stream);
//   event:  cudaEventRecord + cudaEventSynchronize (event without timing);
//   query:  spin on cudaStreamQuery(stream) until it stops answering cudaErrorNotReady;
//   flag:   the kernel itself stores a sequence number into page-locked, mapped host memory
//           (volatile store + __threadfence_system); the host spins on that word;
//   memop:  cuStreamWriteValue32 after the kernel writes the sequence number into a registered
//           host word; the host spins on it.
// Prints forwards/s per (wait, launch, threads).
//
//   sync_probe [--threads 1,8,16] [--seconds 1] [--waits stream,event,query,flag,memop]
//              [--kernels N]   (kernels per forward; in flag mode the last stores the flag)
//              [--schedule auto|spin|yield|blocking]   (cudaSetDeviceFlags before the context)
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "probe_args.h"

namespace {

int g_kernels = 1;  // kernels per forward (--kernels); in flag mode the last one stores the flag

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "sync_probe: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void check(CUresult e, const char* what) {
  if (e != CUDA_SUCCESS) {
    const char* s = nullptr;
    cuGetErrorString(e, &s);
    std::fprintf(stderr, "sync_probe: %s failed: %s\n", what, s ? s : "?");
    std::exit(1);
  }
}

__global__ void empty_kernel() {}

__global__ void flag_kernel(volatile unsigned* flag, unsigned value) {
  __threadfence_system();
  *flag = value;
}

// incr_kernel: the graph form of flag_kernel (a replay cannot be told a new sequence number):
// counts replays in device memory and publishes the count to the host word.
__global__ void incr_kernel(unsigned* counter, volatile unsigned* flag) {
  const unsigned v = ++*counter;
  __threadfence_system();
  *flag = v;
}

struct PerThread {
  cudaStream_t stream{};
  cudaEvent_t event{};
  cudaGraphExec_t graph{};
  unsigned* host_flag = nullptr;  // page-locked, mapped
  unsigned* dev_flag = nullptr;   // its device alias
  unsigned* counter = nullptr;    // device memory, incr_kernel's replay count
  unsigned seq = 0;
};

// One forward: launch, then wait the chosen way.
void step(PerThread& t, const std::string& wait, bool graph) {
  const unsigned want = ++t.seq;
  if (wait == "flag") {
    if (graph) {
      check(cudaGraphLaunch(t.graph, t.stream), "cudaGraphLaunch");
    } else {
      for (int k = 1; k < g_kernels; ++k) empty_kernel<<<1, 1, 0, t.stream>>>();
      flag_kernel<<<1, 1, 0, t.stream>>>(t.dev_flag, want);
    }
  } else if (graph) {
    check(cudaGraphLaunch(t.graph, t.stream), "cudaGraphLaunch");
  } else {
    for (int k = 0; k < g_kernels; ++k) empty_kernel<<<1, 1, 0, t.stream>>>();
  }
  if (wait == "stream") {
    check(cudaStreamSynchronize(t.stream), "cudaStreamSynchronize");
  } else if (wait == "event") {
    check(cudaEventRecord(t.event, t.stream), "cudaEventRecord");
    check(cudaEventSynchronize(t.event), "cudaEventSynchronize");
  } else if (wait == "query") {
    cudaError_t e;
    while ((e = cudaStreamQuery(t.stream)) == cudaErrorNotReady) {
    }
    check(e, "cudaStreamQuery");
  } else if (wait == "flag" || wait == "memop") {
    if (wait == "memop") {
      check(cuStreamWriteValue32(t.stream, reinterpret_cast<CUdeviceptr>(t.dev_flag), want, 0),
            "cuStreamWriteValue32");
    }
    while (reinterpret_cast<std::atomic<unsigned>*>(t.host_flag)->load(std::memory_order_acquire) !=
           want) {
    }
  }
}

void setup(PerThread& t, const std::string& wait, bool graph) {
  check(cudaStreamCreateWithFlags(&t.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaEventCreateWithFlags(&t.event, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaHostAlloc(&t.host_flag, 64, cudaHostAllocMapped | cudaHostAllocPortable),
        "cudaHostAlloc");
  *t.host_flag = 0;
  check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&t.dev_flag), t.host_flag, 0),
        "cudaHostGetDevicePointer");
  check(cudaMalloc(&t.counter, sizeof(unsigned)), "cudaMalloc");
  check(cudaMemset(t.counter, 0, sizeof(unsigned)), "cudaMemset");
  if (graph) {
    cudaGraph_t g;
    check(cudaStreamBeginCapture(t.stream, cudaStreamCaptureModeThreadLocal), "BeginCapture");
    if (wait == "flag") {
      for (int k = 1; k < g_kernels; ++k) empty_kernel<<<1, 1, 0, t.stream>>>();
      incr_kernel<<<1, 1, 0, t.stream>>>(t.counter, t.dev_flag);
    } else {
      for (int k = 0; k < g_kernels; ++k) empty_kernel<<<1, 1, 0, t.stream>>>();
    }
    check(cudaStreamEndCapture(t.stream, &g), "EndCapture");
    check(cudaGraphInstantiate(&t.graph, g, 0), "cudaGraphInstantiate");
    check(cudaGraphDestroy(g), "cudaGraphDestroy");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 8, 16};
  double seconds = 1.0;
  std::vector<std::string> waits = {"stream", "event", "query", "flag", "memop"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads")
      threads = probe::parse_list(argv[i + 1]);
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--waits")
      waits = probe::parse_words(argv[i + 1]);
    else if (a == "--kernels")
      g_kernels = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--schedule") {
      const std::string v = argv[i + 1];
      const unsigned flags = v == "spin"       ? cudaDeviceScheduleSpin
                             : v == "yield"    ? cudaDeviceScheduleYield
                             : v == "blocking" ? cudaDeviceScheduleBlockingSync
                                               : cudaDeviceScheduleAuto;
      check(cudaSetDeviceFlags(flags), "cudaSetDeviceFlags");
    } else {
      std::fprintf(
          stderr,
          "usage: sync_probe [--threads 1,8,16] [--seconds 1] [--waits ...] [--schedule ...]\n");
      return 2;
    }
  }
  check(cudaFree(nullptr), "cudaFree(nullptr) (context)");
  std::printf("%-7s %-6s %7s %12s %10s\n", "wait", "launch", "threads", "forwards/s", "scaling");
  for (const auto& wait : waits) {
    for (bool graph : {false, true}) {
      double one = 0;
      for (int n : threads) {
        std::vector<PerThread> per(static_cast<std::size_t>(n));
        for (auto& t : per) setup(t, wait, graph);
        std::atomic<int> ready{0};
        std::atomic<bool> go{false}, stop{false};
        std::vector<long long> counts(static_cast<std::size_t>(n), 0);
        std::vector<std::thread> ts;
        for (int i = 0; i < n; ++i) {
          ts.emplace_back([&, i] {
            PerThread& t = per[static_cast<std::size_t>(i)];
            for (int w = 0; w < 200; ++w) step(t, wait, graph);  // warm up
            ready.fetch_add(1);
            while (!go.load()) std::this_thread::yield();
            long long c = 0;
            while (!stop.load(std::memory_order_relaxed)) {
              step(t, wait, graph);
              ++c;
            }
            counts[static_cast<std::size_t>(i)] = c;
          });
        }
        while (ready.load() != n) std::this_thread::yield();
        go = true;
        const auto t0 = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
        stop = true;
        for (auto& th : ts) th.join();
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        long long total = 0;
        for (long long c : counts) total += c;
        const double rate = static_cast<double>(total) / dt;
        if (n == 1) one = rate;
        std::printf("%-7s %-6s %7d %12.0f %9.0f%%\n", wait.c_str(), graph ? "graph" : "kernel", n,
                    rate, one > 0 ? 100.0 * rate / (one * n) : 0.0);
        std::fflush(stdout);
        for (auto& t : per) {
          if (t.graph) cudaGraphExecDestroy(t.graph);
          cudaEventDestroy(t.event);
          cudaStreamDestroy(t.stream);
          cudaFreeHost(t.host_flag);
          cudaFree(t.counter);
        }
      }
    }
  }
  return 0;
}
