// CUDA graphs (run_graph) and deferred releases (Encoder::defer) on the cuda backend.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

using testing::download_all;

class CudaGraphs : public testing::GpuTest<> {};

TEST_F(CudaGraphs, ADeferredReleaseRunsByTheNextSynchronizeAndMayFreeTheLastBuffer) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  std::atomic<bool> released{false};
  auto b = std::make_shared<Buffer>(dev, 1 << 20, s);
  {
    Encoder enc(s);
    dev->kernels().fill(enc, b->as<float>(), (1 << 20) / 4, 1.0f);
    enc.defer([b, &released] { released = true; });
  }
  b.reset();  // the deferred release holds the last reference
  s.synchronize();
  EXPECT_TRUE(released.load());
  EXPECT_EQ(dev->memory_stats().current_bytes, 0);
}

TEST_F(CudaGraphs, ReplaysTheCapturedWorkWithoutCallingTheBodyAgain) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::size_t n = 10'000;
  Buffer x(dev, n * sizeof(float), s), y(dev, n * sizeof(float), s);
  int calls = 0;
  std::atomic<int> host_hits{0};
  auto body = [&] {
    ++calls;
    Buffer tmp(dev, n * sizeof(float), s);  // from the graph's arena, freed inside the body
    Encoder enc(s);
    const Kernels& k = dev->kernels();
    k.scale(enc, tmp.as<float>(), x.as<float>(), n, 2.0f);
    k.add(enc, y.as<float>(), tmp.as<float>(), x.as<float>(), n);  // y = 3x
    enc.dispatch([&] { host_hits.fetch_add(1); });
  };
  for (int i = 1; i <= 5; ++i) {
    fill(s, x, static_cast<float>(i));
    fill(s, y, -1.0f);
    run_graph(s, 42, body);
    const auto hy = download_all(s, y);
    ASSERT_EQ(hy.front(), 3.0f * i);
    ASSERT_EQ(hy.back(), 3.0f * i);
  }
  EXPECT_EQ(calls, 2);             // captured twice on first use: to size the arena, then with it
  EXPECT_EQ(host_hits.load(), 5);  // the host node runs at every replay (the first capture's never)
  run_graph(s, 43, body);          // another key: another capture
  s.synchronize();
  EXPECT_EQ(calls, 4);
}

TEST_F(CudaGraphs, WithGraphsOffTheBodyRunsEveryTime) {
  RuntimeConfig c = RuntimeConfig::process();
  c.cuda_graphs = false;
  auto dev = testing::open_cuda(c);
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  Buffer x(dev, 64 * sizeof(float), s);
  int calls = 0;
  for (int i = 0; i < 3; ++i) run_graph(s, 1, [&] { ++calls; fill(s, x, 1.0f); });
  s.synchronize();
  EXPECT_EQ(calls, 3);
}

// Capture mode is thread-local: one thread capturing (a new graph per key, with allocations
// inside) never breaks the kernels, allocations and synchronizes of seven others.
TEST_F(CudaGraphs, OneThreadCapturesWhileSevenOthersRunKernels) {
  RuntimeConfig c = RuntimeConfig::process();
  c.stream_pool_wait_ms = -1;
  auto dev = testing::open_cuda(c);
  std::atomic<int> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 7; ++t) {
    workers.emplace_back(
        [&, t] { testing::run_eager_kernels(dev, t, [&] { return stop.load(); }, errors); });
  }
  try {
    auto lease = dev->streams().lease();
    Stream& s = lease.stream();
    const std::size_t n = 4096;
    Buffer x(dev, n * sizeof(float), s), y(dev, n * sizeof(float), s),
        out(dev, sizeof(float), s);
    for (int key = 0; key < 100; ++key) {
      fill(s, x, static_cast<float>(key));
      run_graph(s, static_cast<std::uint64_t>(key), [&] {
        Buffer tmp(dev, n * sizeof(float), s);
        scale(s, tmp, x, 2.0f);
        add(s, y, tmp, tmp);
        sum(s, out, y);
      });
      if (download_all(s, out)[0] != 4.0f * key * n) errors.fetch_add(1);
    }
  } catch (const std::exception& e) {
    std::printf("capturer: %s\n", e.what());
    errors.fetch_add(1);
  }
  stop = true;
  for (auto& w : workers) w.join();
  EXPECT_EQ(errors.load(), 0);
}

}  // namespace
}  // namespace tandem
