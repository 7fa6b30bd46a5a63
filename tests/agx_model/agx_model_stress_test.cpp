// agx_model stress tests (label stress; run under tsan and asan, where they must be clean): the
// seed loop on the agx_model backend under its default `global` encoding lock, where the modelled
// race is impossible by construction (Note [The AGX context race]).
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/stream.h"

namespace tandem::backends::agx {
namespace {

std::shared_ptr<Device> open_agx(EncodingLockPolicy policy, int window_us) {
  RuntimeConfig c;
  c.encoding_lock = policy;
  c.agx_model_window_us = window_us;
  c.stream_pool_size = 64;
  return Device::open("agx_model", c);
}

// The seed loop under the global lock: N threads, barrier, y = t * 2.0; synchronize() each,
// barrier, every result exact. With a widened window too: the window lies inside the global lock,
// so it only slows the encoders down. A run of the racy table here would crash (see
// agx_model_race_test.cpp); under `global` it must not, and tsan/asan must stay quiet.
// At most 63 threads: the largest pool has 63 worker streams, and all threads hold theirs at once
// (at the barriers).
class AgxGlobalLock : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(AgxGlobalLock, SeedLoopNeverCrashesAndComputesExactResults) {
  const auto [threads, window_us] = GetParam();
  auto d = open_agx(EncodingLockPolicy::kGlobal, window_us);
  const int iterations = window_us > 0 ? 50 : 300;
  constexpr std::size_t n = 64;
  std::barrier sync_point(threads);
  std::atomic<int> wrong{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      Stream& s = d->current_stream();
      Buffer t(d, n * sizeof(float), s), y(d, n * sizeof(float), s);
      fill(s, t, static_cast<float>(i + 1));
      s.synchronize();
      sync_point.arrive_and_wait();
      for (int k = 0; k < iterations; ++k) {
        scale(s, y, t, 2.0f);
        s.synchronize();
      }
      sync_point.arrive_and_wait();
      const auto* out = static_cast<const float*>(y.host_data());
      for (std::size_t j = 0; j < n; ++j) wrong += out[j] != 2.0f * static_cast<float>(i + 1);
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, AgxGlobalLock,
                         ::testing::Combine(::testing::Values(1, 2, 4, 8, 63),
                                            ::testing::Values(0, 20)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "threads_window" +
                                  std::to_string(std::get<1>(info.param)) + "us";
                         });

}  // namespace
}  // namespace tandem::backends::agx
