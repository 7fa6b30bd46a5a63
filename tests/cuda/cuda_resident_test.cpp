// Resident serving (Note [Resident serving] in tandem/resident.h): the mlp served by a persistent
// grid. What must hold: every forward returns its own sample's output (checked by content
// against the stream path, at 1..100 threads, with batches split by max_batch and more callers
// than slots); the grid exits and is relaunched (idle, max_run) without losing a request; it
// coexists with stream work on the same device; bad input is a clear error.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpu_test_util.h"
#include "tandem/nn/models.h"
#include "tandem/nn/resident.h"
#include "tandem/nn/tensor.h"

namespace tandem {
namespace {

using nn::ResidentModel;

class CudaResident : public testing::GpuTest<> {
 protected:
  void SetUp() override {
    testing::GpuTest<>::SetUp();
    if (IsSkipped()) return;
    device_ = Device::get("cuda");
    model_ = nn::load_model("mlp", device_, {std::nullopt, 7});
  }

  // inputs(n, seed): n distinct samples of 512 floats.
  static std::vector<std::vector<float>> inputs(int n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist;
    std::vector<std::vector<float>> xs(static_cast<std::size_t>(n), std::vector<float>(512));
    for (auto& x : xs) {
      for (auto& v : x) v = dist(rng);
    }
    return xs;
  }

  // reference(xs): the stream path's outputs for xs, one batched forward.
  std::vector<std::vector<float>> reference(const std::vector<std::vector<float>>& xs) const {
    std::vector<float> flat;
    for (const auto& x : xs) flat.insert(flat.end(), x.begin(), x.end());
    const nn::Tensor y =
        model_->forward(nn::Tensor::from_host(device_, model_->input_shape(xs.size()), flat));
    const std::vector<float> host = y.to_host();
    std::vector<std::vector<float>> out;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      out.emplace_back(host.begin() + static_cast<std::ptrdiff_t>(i * 512),
                       host.begin() + static_cast<std::ptrdiff_t>((i + 1) * 512));
    }
    return out;
  }

  // hammer(rm, threads, rounds, pause): each thread alternates between two samples of its own
  // and checks every output against the reference; returns the failed checks. pause: sleep
  // after every 16th forward (lets the grid idle out).
  int hammer(ResidentModel& rm, int threads, int rounds, std::chrono::microseconds pause) {
    const auto xs = inputs(2 * threads, 1000u + static_cast<unsigned>(threads));
    const auto refs = reference(xs);
    std::atomic<int> bad{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::vector<float> y(512);
        try {
          for (int i = 0; i < rounds; ++i) {
            const std::size_t k = static_cast<std::size_t>(2 * t + i % 2);
            rm.forward(xs[k], y);
            const double err = testing::max_rel(y, refs[k]);
            if (err > 1e-5) {
              if (bad.fetch_add(1) < 5) {
                std::printf("thread %d round %d: max rel error %g\n", t, i, err);
              }
            }
            if (pause.count() > 0 && i % 16 == 15) std::this_thread::sleep_for(pause);
          }
        } catch (const std::exception& e) {
          std::printf("thread %d: %s\n", t, e.what());
          bad.fetch_add(1);
        }
      });
    }
    for (auto& th : pool) th.join();
    return bad.load();
  }

  std::shared_ptr<Device> device_;
  std::shared_ptr<const nn::Model> model_;
};

TEST_F(CudaResident, MatchesTheStreamPathOneThread) {
  ResidentModel rm(model_);
  const auto xs = inputs(20, 1);
  const auto refs = reference(xs);
  std::vector<float> y(512);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    rm.forward(xs[i], y);
    EXPECT_LT(testing::max_rel(y, refs[i]), 1e-5) << "sample " << i;
  }
  const ResidentStats st = rm.stats();
  EXPECT_EQ(st.forwards, 20u);
  EXPECT_GE(st.launches, 1u);
  EXPECT_GE(st.passes, 1u);
  EXPECT_GT(st.blocks, 0);
  // Every pass was published, seen and computed: each phase's clock advanced.
  EXPECT_GT(st.input_ns, 0u);
  EXPECT_GT(st.publish_ns, 0u);
  EXPECT_GT(st.layers_ns, 0u);
  EXPECT_GT(st.completion_ns, 0u);
  std::printf("blocks %d, shared %zu bytes, launches %llu, passes %llu\n", st.blocks,
              st.shared_bytes, static_cast<unsigned long long>(st.launches),
              static_cast<unsigned long long>(st.passes));
}

class CudaResidentThreads : public CudaResident, public ::testing::WithParamInterface<int> {};

// Every forward's output is its own sample's, at many threads; with max_batch 4 a pass cannot
// take every pending slot, so batches are split and the round-robin must reach every slot; 100
// threads are more callers than the 64 slots.
TEST_P(CudaResidentThreads, EveryCallerGetsItsOwnOutput) {
  const int threads = GetParam();
  for (int max_batch : {16, 4}) {
    ResidentConfig config;
    config.max_batch = max_batch;
    ResidentModel rm(model_, config);
    EXPECT_EQ(hammer(rm, threads, 300, std::chrono::microseconds(0)), 0)
        << threads << " threads, max_batch " << max_batch;
    const ResidentStats st = rm.stats();
    EXPECT_EQ(st.forwards, static_cast<std::uint64_t>(threads) * 300u);
    EXPECT_LE(st.passes, st.forwards);
    const double passes = static_cast<double>(st.passes);
    std::printf("%d threads, max_batch %d: %llu forwards in %llu passes (%.2f a pass), %llu "
                "launches; block 0 per pass: input %.2f us, layers %.2f us, completion %.2f us\n",
                threads, max_batch, static_cast<unsigned long long>(st.forwards),
                static_cast<unsigned long long>(st.passes),
                static_cast<double>(st.forwards) / passes,
                static_cast<unsigned long long>(st.launches), st.input_ns / passes / 1e3,
                st.layers_ns / passes / 1e3, st.completion_ns / passes / 1e3);
    for (int l = 0; l < 3; ++l) {
      std::printf("  layer %d: stage %.2f us, compute %.2f us, barrier %.2f us\n", l,
                  st.layer_ns[l][0] / passes / 1e3, st.layer_ns[l][1] / passes / 1e3,
                  st.layer_ns[l][2] / passes / 1e3);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, CudaResidentThreads, ::testing::Values(1, 2, 8, 31, 64, 100));

// A grid that exits after 20 us idle or 100 us of serving is relaunched by waiting callers;
// no request is lost or answered twice.
TEST_F(CudaResident, RelaunchesAfterIdleAndMaxRun) {
  ResidentConfig config;
  config.idle_us = 20;
  config.max_run_us = 100;
  ResidentModel rm(model_, config);
  EXPECT_EQ(hammer(rm, 8, 400, std::chrono::microseconds(300)), 0);
  const ResidentStats st = rm.stats();
  EXPECT_EQ(st.forwards, 8u * 400u);
  EXPECT_GT(st.launches, 10u) << "the grid should have exited and been relaunched many times";
  std::printf("launches %llu, passes %llu\n", static_cast<unsigned long long>(st.launches),
              static_cast<unsigned long long>(st.passes));
}

// Stream work of other threads on the same device runs to completion while the grid serves.
TEST_F(CudaResident, CoexistsWithStreamWork) {
  ResidentModel rm(model_);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> others;
  for (int t = 0; t < 4; ++t) {
    others.emplace_back([&, t] {
      testing::run_eager_kernels(device_, t, [&] { return stop.load(); }, errors);
    });
  }
  others.emplace_back([&] {  // model forwards on a stream, checked against a fixed reference
    const auto xs = inputs(1, 5);
    const auto ref = reference(xs);
    for (int i = 0; !stop.load() || i < 50; ++i) {
      const nn::Tensor y = model_->forward(nn::Tensor::from_host(device_, model_->input_shape(1), xs[0]));
      if (testing::max_rel(y.to_host(), ref[0]) > 1e-6) errors.fetch_add(1);
    }
  });
  EXPECT_EQ(hammer(rm, 4, 2000, std::chrono::microseconds(0)), 0);
  stop = true;
  for (auto& th : others) th.join();
  EXPECT_EQ(errors.load(), 0);
}

TEST_F(CudaResident, StartStopRepeatedly) {
  for (int i = 0; i < 5; ++i) {
    ResidentModel rm(model_);
    EXPECT_EQ(hammer(rm, 2, 20, std::chrono::microseconds(0)), 0) << "round " << i;
  }
}

TEST_F(CudaResident, BadInputIsAClearError) {
  ResidentModel rm(model_);
  std::vector<float> x(511), y(512);
  try {
    rm.forward(x, y);
    ADD_FAILURE() << "a 511-float input was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("512"), std::string::npos) << e.what();
  }
  auto expect_invalid = [&](const ResidentConfig& c, const char* what) {
    try {
      ResidentModel bad(model_, c);
      ADD_FAILURE() << what << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << what << ": " << e.what();
    }
  };
  ResidentConfig c;
  c.slots = 0;
  expect_invalid(c, "slots 0");
  c = {};
  c.max_batch = kResidentMaxBatch + 1;
  expect_invalid(c, "max_batch 33");
  c = {};
  c.blocks = 1;  // 8.4 MB of weights in one block's shared memory
  expect_invalid(c, "blocks 1");
  const auto encoder = nn::load_model("encoder", device_);
  try {
    ResidentModel bad(encoder);
    ADD_FAILURE() << "the encoder was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
  }
  // The good chain still serves after all that.
  const auto xs = inputs(1, 3);
  rm.forward(xs[0], y);
  EXPECT_LT(testing::max_rel(y, reference(xs)[0]), 1e-5);
}

}  // namespace
}  // namespace tandem
