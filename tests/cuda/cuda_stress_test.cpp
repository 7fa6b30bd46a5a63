// Many threads on one GPU: churn with real kernels at 1..64 threads, the seed workload, and the
// pool's exhaustion policies — the cpu backend's stress cases, run on the cuda backend.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "gpu_test_util.h"

namespace tandem {
namespace {

using testing::download_all;

class CudaChurn : public testing::GpuTest<::testing::TestWithParam<int>> {};

// Each thread, many times: lease a stream, allocate, fill/scale/add/sum with values of its own,
// download, check exactly, release. Threads exceed the pool's 63 workers at 64, so leases wait.
TEST_P(CudaChurn, ThreadsLeaseComputeAndReleaseWithoutCrossTalk) {
  const int threads = GetParam();
  RuntimeConfig c = RuntimeConfig::process();
  c.stream_pool_size = 64;
  c.stream_pool_wait_ms = -1;
  auto dev = testing::open_cuda(c);
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u threads %d\n", seed, threads);
  std::atomic<int> failures{0};
  std::atomic<long> checks{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(seed + static_cast<std::uint32_t>(t));
      for (int round = 0; round < 40; ++round) {
        auto lease = dev->streams().lease();
        Stream& s = lease.stream();
        const std::size_t n = 1 + rng() % 50'000;
        const float v = static_cast<float>(t * 1000 + round);
        Buffer x(dev, n * sizeof(float), s), y(dev, n * sizeof(float), s),
            out(dev, sizeof(float), s);
        fill(s, x, v);
        scale(s, y, x, 2.0f);
        add(s, y, y, x);  // 3v
        sum(s, out, x);
        const auto hy = download_all(s, y);
        const auto hs = download_all(s, out);
        if (hy.front() != 3 * v || hy.back() != 3 * v || hy[n / 2] != 3 * v) failures.fetch_add(1);
        if (hs[0] != static_cast<float>(static_cast<double>(v) * static_cast<double>(n))) {
          failures.fetch_add(1);
        }
        checks.fetch_add(1);
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(checks.load(), threads * 40L);
  EXPECT_EQ(dev->streams().leased(), 0);
  dev->synchronize();
  EXPECT_EQ(dev->memory_stats().current_bytes, 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, CudaChurn, ::testing::Values(1, 2, 4, 8, 64));

class CudaSeed : public testing::GpuTest<> {};

// The seed's workload: 8 threads, each `y = t * 2.0; synchronize()` between two barriers, 1000
// iterations, results exact. Every thread uses its own (thread-local) stream.
TEST_F(CudaSeed, EightThreadsScaleAndSynchronizeAThousandTimesExactly) {
  constexpr int kThreads = 8;
  constexpr int kIters = 1000;
  auto dev = Device::get("cuda");
  std::barrier sync_point(kThreads);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Stream& s = dev->current_stream();
      const std::size_t n = 4096;
      Buffer x(dev, n * sizeof(float)), y(dev, n * sizeof(float));
      std::vector<float> host(n);
      for (int i = 0; i < kIters; ++i) {
        const float tv = static_cast<float>(t + i);
        fill(s, x, tv);
        sync_point.arrive_and_wait();  // barrier 1
        scale(s, y, x, 2.0f);
        download(s, host, y);
        s.synchronize();
        sync_point.arrive_and_wait();  // barrier 2
        if (host[0] != tv * 2.0f || host[n - 1] != tv * 2.0f) wrong.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

class CudaExhaustion : public testing::GpuTest<> {
 protected:
  static std::shared_ptr<Device> small_pool(std::int64_t wait_ms) {
    RuntimeConfig c = RuntimeConfig::process();
    c.stream_pool_size = 4;  // 3 worker streams
    c.stream_pool_wait_ms = wait_ms;
    return testing::open_cuda(c);
  }
};

TEST_F(CudaExhaustion, FailsAtOnceWhenWaitIsZero) {
  auto dev = small_pool(0);
  std::vector<StreamLease> held;
  for (int i = 0; i < 3; ++i) held.push_back(dev->streams().lease());
  const auto t0 = std::chrono::steady_clock::now();
  try {
    auto extra = dev->streams().lease();
    FAIL() << "a fourth lease of three worker streams succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kPoolExhausted);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
}

TEST_F(CudaExhaustion, TimesOutAfterTheWaitWhenNothingIsReleased) {
  auto dev = small_pool(50);
  std::vector<StreamLease> held;
  for (int i = 0; i < 3; ++i) held.push_back(dev->streams().lease());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW((void)dev->streams().lease(), Error);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
}

TEST_F(CudaExhaustion, WaitsForAReleaseWhenWaitIsUnbounded) {
  auto dev = small_pool(-1);
  std::vector<StreamLease> held;
  for (int i = 0; i < 3; ++i) held.push_back(dev->streams().lease());
  // The holder of one stream runs GPU work, then releases it; the waiter gets that stream.
  std::thread releaser([&] {
    Stream& s = held.back().stream();
    Buffer x(dev, 1 << 20, s);
    fill(s, x, 1.0f);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    held.pop_back();
  });
  auto lease = dev->streams().lease();  // blocks until the release
  releaser.join();
  Buffer x(dev, 256 * sizeof(float), lease.stream()), out(dev, sizeof(float), lease.stream());
  fill(lease.stream(), x, 1.0f);
  sum(lease.stream(), out, x);
  EXPECT_EQ(download_all(lease.stream(), out)[0], 256.0f);
}

}  // namespace
}  // namespace tandem
