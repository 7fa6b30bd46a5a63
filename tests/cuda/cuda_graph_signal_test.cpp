// The graph completion signal (Note [Graph completion signal] in
// src/backends/cuda/completion_signal.h): a synchronize right after a kernel-only graph replay
// waits on a word the graph's last kernel stores, not in cudaStreamSynchronize. What must hold:
// when synchronize() returns, every piece of work enqueued before it has completed (query() is
// true, results are in place) — for signalling replays, for graphs that may not signal (host
// nodes), for eager work enqueued after a replay (it disarms), for graphs longer than the spin,
// with the signal off, and at many threads.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_stream.h"
#include "gpu_test_util.h"
#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

using backends::cuda::CudaStream;

CudaStream& cuda_stream(Stream& s) { return static_cast<CudaStream&>(s.impl()); }

class CudaGraphSignal : public testing::GpuTest<> {};

// expect_graph(s, key, kernels, host_nodes, ends_with_signal, signalling): the cached graph of
// `key` on s holds that many body kernels and host nodes and has those signal flags.
void expect_graph(Stream& s, std::uint64_t key, std::size_t kernels, std::size_t host_nodes,
                  bool ends_with_signal, bool signalling) {
  const auto info = cuda_stream(s).graph_info(key);
  ASSERT_TRUE(info.has_value()) << "no graph cached for key " << key;
  EXPECT_EQ(info->kernel_nodes, kernels) << "key " << key;  // the signal kernel is not counted
  EXPECT_EQ(info->host_nodes, host_nodes) << "key " << key;
  EXPECT_EQ(info->ends_with_signal, ends_with_signal) << "key " << key;
  EXPECT_EQ(info->signalling, signalling) << "key " << key;
}

// peek(b, i): element i of b read with a plain cudaMemcpy on the legacy default stream, which
// does not wait for tandem's non-blocking streams: it sees what is in memory now, so a
// synchronize that returned before the work that writes b completed shows as a stale value.
float peek(const Buffer& b, std::size_t i) {
  float v = 0;
  EXPECT_EQ(
      cudaMemcpy(&v, static_cast<const float*>(b.data()) + i, sizeof v, cudaMemcpyDeviceToHost),
      cudaSuccess);
  return v;
}

// replay_scale_loop(dev, s, iterations, key, n): each iteration fills x with i eagerly, replays
// the graph y = 2x (n floats), synchronizes, and checks — without the stream's ordering — that
// y's first, middle and last values are 2i, and that query() says the stream is idle. Returns
// the number of failed checks.
int replay_scale_loop(const std::shared_ptr<Device>& dev, Stream& s, int iterations,
                      std::uint64_t key, std::size_t n) {
  Buffer x(dev, n * sizeof(float), s);
  Buffer y(dev, n * sizeof(float), s);
  int failures = 0;
  for (int i = 0; i < iterations; ++i) {
    fill(s, x, static_cast<float>(i));
    run_graph(s, key, [&] { scale(s, y, x, 2.0f); });
    s.synchronize();
    if (!s.query()) ++failures;
    const float want = 2.0f * static_cast<float>(i);
    for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
      if (peek(y, at) != want) ++failures;  // synchronize returned before the replay completed
    }
  }
  return failures;
}

TEST_F(CudaGraphSignal, KernelOnlyGraphsSignalAndSynchronizeReturnsOnlyWhenTheyCompleted) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  // 1M floats: a replay of some microseconds, inside the spin.
  EXPECT_EQ(replay_scale_loop(dev, s, 1000, 1, std::size_t{1} << 20), 0);
  expect_graph(s, 1, /*kernels=*/1, /*host_nodes=*/0,
               /*ends_with_signal=*/true, /*signalling=*/true);
}

TEST_F(CudaGraphSignal, AGraphLongerThanTheSpinFallsBackAndStillWaits) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  // sum runs in one block: 16M floats take milliseconds, far longer than the 100 us spin.
  const std::size_t n = std::size_t{1} << 24;
  Buffer x(dev, n * sizeof(float), s);
  Buffer out(dev, sizeof(float), s);
  fill(s, x, 1.0f);
  for (int i = 0; i < 5; ++i) {
    fill(s, out, -1.0f);
    run_graph(s, 2, [&] { sum(s, out, x); });
    s.synchronize();
    EXPECT_TRUE(s.query()) << "replay " << i;
    EXPECT_EQ(peek(out, 0), static_cast<float>(n)) << "replay " << i;
  }
  expect_graph(s, 2, /*kernels=*/1, /*host_nodes=*/0,
               /*ends_with_signal=*/true, /*signalling=*/true);
}

TEST_F(CudaGraphSignal, EagerWorkAfterAReplayIsWaitedFor) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  const std::size_t n = std::size_t{1} << 20;
  const std::size_t big = std::size_t{1} << 26;  // 256 MiB: a fill of tens of microseconds
  Buffer x(dev, n * sizeof(float), s);
  Buffer y(dev, n * sizeof(float), s);
  Buffer z(dev, big * sizeof(float), s);
  fill(s, x, 3.0f);
  for (int i = 0; i < 20; ++i) {
    run_graph(s, 3, [&] { scale(s, y, x, 2.0f); });  // arms the signal
    fill(s, z, static_cast<float>(i));               // an encoder after it: disarms
    s.synchronize();
    EXPECT_TRUE(s.query()) << "iteration " << i << ": synchronize returned before the fill";
    EXPECT_EQ(peek(z, big - 1), static_cast<float>(i)) << "iteration " << i;
  }
}

TEST_F(CudaGraphSignal,
       GraphsWithHostFunctionsDoNotSignalAndTheirFunctionsRunBeforeSynchronizeReturns) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  Buffer y(dev, 1024 * sizeof(float), s);
  std::atomic<int> ran{0};
  for (int i = 1; i <= 50; ++i) {
    run_graph(s, 4, [&] {
      fill(s, y, 1.0f);
      Encoder enc(s);
      enc.dispatch([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
    });
    s.synchronize();
    EXPECT_EQ(ran.load(std::memory_order_relaxed), i);
  }
  expect_graph(s, 4, /*kernels=*/1, /*host_nodes=*/1,
               /*ends_with_signal=*/true, /*signalling=*/false);
}

TEST_F(CudaGraphSignal, OffCapturesNoSignalKernel) {
  RuntimeConfig config = RuntimeConfig::process();
  config.cuda_graph_signal = false;
  auto dev = testing::open_cuda(config);
  Stream& s = dev->current_stream();
  EXPECT_EQ(replay_scale_loop(dev, s, 200, 5, 4096), 0);
  expect_graph(s, 5, /*kernels=*/1, /*host_nodes=*/0,
               /*ends_with_signal=*/false, /*signalling=*/false);
}

TEST_F(CudaGraphSignal, ManyThreadsReplayAndSynchronizeOnTheirOwnStreams) {
  auto dev = testing::open_cuda();
  for (int threads : {2, 8, 31}) {  // 31: every worker stream of the default pool of 32
    std::atomic<int> failures{0};
    std::atomic<int> errors{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        try {
          Stream& s = dev->current_stream();
          // A key per (round, thread): a stream leased again in a later round still caches the
          // graphs of its earlier thread, whose buffers are gone.
          const auto key = static_cast<std::uint64_t>(1000 * threads + t);
          failures += replay_scale_loop(dev, s, 200, key, std::size_t{1} << 14);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "thread %d: %s\n", t, e.what());
          ++errors;
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(failures.load(), 0) << threads << " threads";
    EXPECT_EQ(errors.load(), 0) << threads << " threads";
  }
}

}  // namespace
}  // namespace tandem
