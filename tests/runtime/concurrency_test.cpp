// Multi-threaded stress tests of the runtime (label: stress; also run under tsan and asan).
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <numeric>
#include <thread>

#include "tandem/encoder.h"
#include "tandem/event.h"
#include "test_util.h"

namespace tandem {
namespace {
using testing::open_cpu;

// 10,000 thread lifetimes in all, at most 64 alive at once: each leases its stream on first use,
// encodes real work, and exits (returning the stream). An owner table detects any moment at which
// two live threads hold the same worker stream.
TEST(StreamPoolStress, SixtyFourThreadsChurnTenThousandTimesWithExclusiveOwnership) {
  constexpr int kTotal = 10'000, kLive = 64;
  auto d = open_cpu(/*pool_size=*/64, /*wait_ms=*/-1);  // 63 workers for 64 threads: some wait
  std::array<std::atomic<int>, 64> owner{};
  std::atomic<int> violations{0}, wrong{0}, started{0};
  auto body = [&](int id) {
    Stream& s = d->current_stream();
    int expected = 0;
    if (!owner[static_cast<std::size_t>(s.index())].compare_exchange_strong(expected, id + 1)) {
      ++violations;
    }
    Buffer t(d, 16 * sizeof(float), s), y(d, 16 * sizeof(float), s);
    fill(s, t, static_cast<float>(id));
    scale(s, y, t, 2.0f);
    std::vector<float> out(16);
    download(s, out, y);
    s.synchronize();
    for (float v : out) wrong += v != 2.0f * static_cast<float>(id);
    owner[static_cast<std::size_t>(s.index())].store(0);  // before the thread-exit release
  };
  std::vector<std::thread> live;
  while (started < kTotal) {
    for (auto& t : live) t.join();
    live.clear();
    for (int i = 0; i < kLive && started < kTotal; ++i) live.emplace_back(body, started++);
  }
  for (auto& t : live) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(d->streams().leased(), 0);  // every lease returned
  d->synchronize();
  const MemoryStats m = d->memory_stats();
  EXPECT_EQ(m.current_bytes, 0);  // nothing leaked
  EXPECT_EQ(m.allocs, 2 * kTotal);
  EXPECT_EQ(m.frees, 2 * kTotal);
}

// The seed workload: N threads, barrier 1, each loops y = t * 2.0; synchronize() 1,000 times,
// barrier 2; every result exact. Under every encoding-lock policy.
class SeedWorkload
    : public ::testing::TestWithParam<std::tuple<int, EncodingLockPolicy>> {};

TEST_P(SeedWorkload, EveryThreadGetsExactResults) {
  const auto [threads, policy] = GetParam();
  constexpr int kIters = 1000, kN = 64;
  auto d = open_cpu(/*pool_size=*/64, /*wait_ms=*/0, policy);
  std::barrier barrier1(threads), barrier2(threads);
  std::atomic<int> wrong{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      Stream& s = d->current_stream();
      std::vector<float> tv(kN);
      std::iota(tv.begin(), tv.end(), static_cast<float>(i));
      Buffer t(d, kN * sizeof(float), s), y(d, kN * sizeof(float), s);
      upload(s, t, tv);
      barrier1.arrive_and_wait();
      std::vector<float> out(kN);
      for (int k = 0; k < kIters; ++k) {
        scale(s, y, t, 2.0f);
        s.synchronize();
      }
      download(s, out, y);
      s.synchronize();
      barrier2.arrive_and_wait();
      for (int j = 0; j < kN; ++j) wrong += out[static_cast<std::size_t>(j)] != 2.0f * tv[static_cast<std::size_t>(j)];
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    ThreadCountsAndPolicies, SeedWorkload,
    ::testing::Combine(::testing::Values(1, 2, 4, 8, 32),
                       ::testing::Values(EncodingLockPolicy::kNone, EncodingLockPolicy::kStream,
                                         EncodingLockPolicy::kGlobal)),
    [](const auto& info) {
      return std::to_string(std::get<0>(info.param)) + "threads_" +
             std::string(to_string(std::get<1>(info.param)));
    });

// Many threads encode onto the shared default stream (serialized by its stream mutex) while
// others use their own streams; events order producer and consumers.
TEST(StreamStress, DefaultStreamAndEventsUnderContention) {
  for (int threads : {2, 8, 64}) {
    auto d = open_cpu(/*pool_size=*/64, /*wait_ms=*/-1);
    Stream& shared = d->default_stream();
    Buffer x(d, 8 * sizeof(float), shared);
    fill(shared, x, 3.0f);
    Event ready(*d);
    ready.record(shared);
    std::atomic<int> wrong{0};
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&] {
        Stream& s = d->current_stream();
        ready.wait(s);
        Buffer y(d, 8 * sizeof(float), s);
        for (int k = 0; k < 50; ++k) {
          scale(s, y, x, 2.0f);  // reads x, written on the default stream before `ready`
          Buffer tmp(d, 8 * sizeof(float), shared);
          fill(shared, tmp, 1.0f);  // contended default stream
        }
        std::vector<float> out(8);
        download(s, out, y);
        s.synchronize();
        for (float v : out) wrong += v != 6.0f;
      });
    }
    for (auto& t : pool) t.join();
    d->synchronize();
    EXPECT_EQ(wrong.load(), 0) << threads << " threads";
  }
}

// Leases through the explicit pool API from many threads at once, with waiting: the count of
// simultaneously held leases never exceeds the worker count, and all return.
TEST(StreamPoolStress, ExplicitLeasesUnderContentionNeverExceedTheWorkers) {
  for (int threads : {1, 2, 4, 8, 64}) {
    auto d = open_cpu(/*pool_size=*/4, /*wait_ms=*/-1);  // 3 workers
    std::atomic<int> held{0}, max_held{0};
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&] {
        for (int k = 0; k < 50; ++k) {
          auto lease = d->streams().lease();
          const int now = ++held;
          int m = max_held.load();
          while (now > m && !max_held.compare_exchange_weak(m, now)) {
          }
          --held;
        }
      });
    }
    for (auto& t : pool) t.join();
    EXPECT_LE(max_held.load(), 3) << threads << " threads";
    EXPECT_EQ(d->streams().leased(), 0);
  }
}

}  // namespace
}  // namespace tandem
