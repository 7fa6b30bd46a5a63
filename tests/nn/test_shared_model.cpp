// Many threads sharing one model: forward from up to 64 threads at once, and 256 threads over
// four devices (stress label; run under the tsan preset too).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tandem/device.h"
#include "tandem/nn/models.h"
#include "test_util.h"

namespace tandem::nn {
namespace {

using test_util::random_input;

// same_bits(y, expected): the two results are equal bit for bit.
bool same_bits(const std::vector<float>& y, const std::vector<float>& expected) {
  return y.size() == expected.size() &&
         std::memcmp(y.data(), expected.data(), y.size() * sizeof(float)) == 0;
}

// expect_each_thread_exact(threads, body): runs body(t) on `threads` threads at once; body returns
// how many of its results differed from the expected ones. Fails the test for every thread that
// saw a mismatch or threw.
template <class Body>
void expect_each_thread_exact(int threads, Body body) {
  std::vector<int> mismatches(threads, 0);
  std::vector<std::string> errors(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        mismatches[t] = body(t);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) {
    EXPECT_EQ(errors[t], "") << "thread " << t;
    EXPECT_EQ(mismatches[t], 0) << "thread " << t << " of " << threads;
  }
}

// Many threads call forward on one shared model at once; every result must equal, bit for bit,
// the single-threaded result for the same input (same kernels, no shared mutable state).
class SharedModel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(SharedModel, ConcurrentForwardsEqualSingleThreadedResultsExactly) {
  const auto [name, threads] = GetParam();
  RuntimeConfig cfg;
  cfg.stream_pool_size = 64;      // 63 worker streams
  cfg.stream_pool_wait_ms = -1;   // the 64th thread waits for a lease
  const auto dev = Device::open("cpu", cfg);
  const auto model = load_model(name, dev, {std::nullopt, 11});
  constexpr int kInputs = 4, kRounds = 3;
  const std::size_t batch = 2;
  std::vector<std::vector<float>> inputs, expected;
  for (int i = 0; i < kInputs; ++i) {
    inputs.push_back(random_input(model->input_shape(batch).numel(), 100 + i));
    expected.push_back(
        model->forward(Tensor::from_host(dev, model->input_shape(batch), inputs.back())).to_host());
  }
  expect_each_thread_exact(threads, [&](int t) {
    int mismatches = 0;
    for (int r = 0; r < kRounds; ++r) {
      const int i = (t + r) % kInputs;
      const auto y =
          model->forward(Tensor::from_host(dev, model->input_shape(batch), inputs[i])).to_host();
      if (!same_bits(y, expected[i])) ++mismatches;
    }
    return mismatches;
  });
  dev->close();
}

// 256 threads, each on its own stream (four devices: a pool has at most 63 worker streams, so the
// last 4 threads wait for one of the first to finish), run batch-1 MLP forwards at once: four
// times OpenBLAS's own thread limit inside OpenBLAS, which corrupted its heap before the cpu
// backend capped its callers (Note [BLAS callers] in cpu_nn_kernels.cpp; `tandem bench
// --batching` crashed in cblas_sgemv at 256 direct clients). Every result must still equal the
// single-threaded one bit for bit.
TEST(SharedModelManyThreads, MoreThreadsThanOpenBLASsLimitRunForwardsCorrectly) {
  constexpr int kThreads = 256, kDevices = 4, kRounds = 6;
  RuntimeConfig cfg;
  cfg.stream_pool_size = 64;
  cfg.stream_pool_wait_ms = -1;
  std::vector<std::shared_ptr<Device>> devs;
  std::vector<std::shared_ptr<const Model>> models;
  for (int d = 0; d < kDevices; ++d) {
    devs.push_back(Device::open("cpu", cfg));
    models.push_back(load_model("mlp", devs.back(), {std::nullopt, 11}));
  }
  const auto input = random_input(models[0]->input_shape(1).numel(), 7);
  const auto expected =
      models[0]->forward(Tensor::from_host(devs[0], models[0]->input_shape(1), input)).to_host();
  expect_each_thread_exact(kThreads, [&](int t) {
    const auto& dev = devs[t % kDevices];
    const auto& model = models[t % kDevices];
    int mismatches = 0;
    for (int r = 0; r < kRounds; ++r) {
      const auto y = model->forward(Tensor::from_host(dev, model->input_shape(1), input)).to_host();
      if (!same_bits(y, expected)) ++mismatches;
    }
    return mismatches;
  });
  for (auto& dev : devs) dev->close();
}

INSTANTIATE_TEST_SUITE_P(ThreadCounts, SharedModel,
                         ::testing::Combine(::testing::Values(std::string("mlp"), std::string("encoder")),
                                            ::testing::Values(1, 2, 4, 8, 64)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "_threads";
                         });

}  // namespace
}  // namespace tandem::nn
