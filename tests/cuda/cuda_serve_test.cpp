// GPU tests of what the batching path uses on cuda: page-locked HostBuffers, programmatic
// dependent launch of the batch-1 GEMVs (TANDEM_CUDA_PDL) changing no result, and a BatchQueue
// on cuda handing every host request its own output rows from many threads (plain batches and
// graph batching, whose graphs are gone with the queue).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_stream.h"
#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/host_buffer.h"
#include "tandem/kernels.h"
#include "tandem/nn/models.h"
#include "tandem/serve/batch_queue.h"

namespace tandem {
namespace {

TEST(CudaHostBuffer, IsPageLockedAndRoundTripsThroughTheDevice) {
  TANDEM_REQUIRE_GPU();
  auto gpu = testing::open_cuda();
  constexpr std::size_t kN = 1 << 20;
  HostBuffer in(gpu, kN * sizeof(float)), out(gpu, kN * sizeof(float));
  ASSERT_NE(in.data(), nullptr);
  cudaPointerAttributes attr{};
  ASSERT_EQ(cudaPointerGetAttributes(&attr, in.data()), cudaSuccess);
  EXPECT_EQ(attr.type, cudaMemoryTypeHost);  // page-locked (pageable memory reads Unregistered)
  for (std::size_t i = 0; i < kN; ++i) in.floats()[i] = static_cast<float>(i % 9973) - 17.0f;
  std::memset(out.data(), 0xff, out.size_bytes());  // NaN poison: every float must be written
  Buffer d(gpu, kN * sizeof(float));
  Stream& s = gpu->current_stream();
  {
    Encoder enc(s);
    gpu->kernels().copy_from_host(enc, d.data(), in.data(), in.size_bytes());
    gpu->kernels().copy_to_host(enc, out.data(), d.data(), out.size_bytes());
  }
  s.synchronize();
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size_bytes()), 0);
  HostBuffer moved = std::move(in);
  EXPECT_EQ(in.data(), nullptr);
  EXPECT_EQ(moved.size_bytes(), kN * sizeof(float));
}

// The same batch-1 MLP forward on two private devices, PDL on and off: bitwise equal outputs,
// eager and replayed as a graph (PDL changes when kernels are scheduled, never what they compute
// or the order of their memory effects).
TEST(CudaPdl, MlpBatch1IsBitwiseEqualWithAndWithoutPdlEagerAndAsAGraph) {
  TANDEM_REQUIRE_GPU();
  RuntimeConfig on = RuntimeConfig::process(), off = on;
  on.cuda_pdl = true;
  off.cuda_pdl = false;
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<std::vector<float>> results[2];
  std::vector<std::vector<float>> inputs(8);
  for (auto& in : inputs) {
    in.resize(512 * 2);
    for (auto& v : in) v = dist(rng);
  }
  for (int variant = 0; variant < 2; ++variant) {
    auto gpu = testing::open_cuda(variant == 0 ? on : off);
    auto m = nn::load_model("mlp", gpu, {std::nullopt, 11});
    Stream& s = gpu->current_stream();
    for (std::size_t batch : {1, 2}) {
      const nn::Shape shape = m->input_shape(batch);
      const nn::Tensor x = nn::Tensor::empty(gpu, shape);
      const nn::Tensor out = nn::Tensor::empty(gpu, m->output_shape(batch));
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        {
          Encoder enc(s);
          gpu->kernels().copy_from_host(enc, x.data(), inputs[i].data(), x.size_bytes());
        }
        results[variant].push_back(m->forward(x).to_host());
        run_graph(s, 7000 + batch, [&] {
          const nn::Tensor y = m->forward(x);
          Encoder enc(s);
          gpu->kernels().copy(enc, out.data(), y.data(), y.size_bytes());
        });
        results[variant].push_back(out.to_host());
      }
    }
    gpu->close();
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  for (std::size_t i = 0; i < results[0].size(); ++i) {
    ASSERT_EQ(results[0][i].size(), results[1][i].size());
    EXPECT_EQ(std::memcmp(results[0][i].data(), results[1][i].data(),
                          results[0][i].size() * sizeof(float)),
              0)
        << "result " << i << " differs between TANDEM_CUDA_PDL=1 and 0";
    // Graph and eager results of one input agree too.
    if (i % 2 == 1) {
      EXPECT_EQ(results[0][i], results[0][i - 1]) << "graph != eager at result " << i;
    }
  }
}

// Clients at several thread counts submit distinct host requests of 1..3 rows; every future
// completes with exactly the rows a direct cpu forward gives for its own input (within 1e-4), and
// the counters add up. Batches vary in size, so the executors' staging memory grows and is reused.
// (The cpu references are computed up front on this thread: 64 client threads would exceed the
// cpu device's stream pool.)
TEST(CudaBatchQueue, EveryHostRequestGetsItsOwnRowsFromManyThreads) {
  TANDEM_REQUIRE_GPU();
  auto gpu = testing::open_cuda();
  auto cpu = Device::get("cpu");
  auto m_gpu = nn::load_model("mlp", gpu, {std::nullopt, 5});
  auto m_cpu = nn::load_model("mlp", cpu, {std::nullopt, 5});
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  constexpr int kMaxThreads = 64, kPerThread = 24;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<std::vector<nn::HostTensor>> ins(kMaxThreads);
  std::vector<std::vector<std::vector<float>>> refs(kMaxThreads);
  for (int t = 0; t < kMaxThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::size_t rows = 1 + static_cast<std::size_t>((t + i) % 3);
      nn::HostTensor in{"x", m_gpu->input_shape(rows), {}};
      in.values.resize(in.shape.numel());
      for (auto& v : in.values) v = dist(rng);
      const auto ti = static_cast<std::size_t>(t);
      refs[ti].push_back(m_cpu->forward(nn::Tensor::from_host(cpu, in.shape, in.values)).to_host());
      ins[ti].push_back(std::move(in));
    }
  }
  for (const bool graphs : {false, true})
  for (const int shards : {1, 4})
  for (int threads : {1, 8, kMaxThreads}) {
    SCOPED_TRACE(graphs ? "graph batching" : "plain batches");
    SCOPED_TRACE(std::to_string(shards) + " shard(s)");
    serve::BatchQueueOptions options;
    options.max_batch_size = 256;
    options.instances = 4;
    options.shards = shards;
    options.max_queue_size = 1 << 20;
    options.graphs = graphs;
    auto queue_ptr = std::make_unique<serve::BatchQueue>(m_gpu, options);
    serve::BatchQueue& queue = *queue_ptr;
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::vector<std::future<nn::HostTensor>> futures;
        for (const auto& in : ins[static_cast<std::size_t>(t)]) futures.push_back(queue.submit(in));
        for (int i = 0; i < kPerThread; ++i) {
          const auto& in = ins[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)];
          const auto& ref = refs[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)];
          try {
            const nn::HostTensor got = futures[static_cast<std::size_t>(i)].get();
            bool ok = got.shape == m_gpu->output_shape(in.shape[0]) && got.values.size() == ref.size();
            for (std::size_t j = 0; ok && j < ref.size(); ++j) {
              ok = std::fabs(got.values[j] - ref[j]) <= 1e-4 * (1.0 + std::fabs(ref[j]));
            }
            if (!ok) bad.fetch_add(1);
          } catch (const std::exception& e) {
            std::printf("request %d of thread %d failed: %s\n", i, t, e.what());
            bad.fetch_add(1);
          }
        }
      });
    }
    for (auto& t : ts) t.join();
    queue.stop();
    EXPECT_EQ(bad.load(), 0) << threads << " threads";
    const auto mt = queue.metrics();
    EXPECT_EQ(mt.submitted, static_cast<std::uint64_t>(threads) * kPerThread);
    EXPECT_EQ(mt.completed, mt.submitted);
    EXPECT_EQ(mt.failed + mt.rejected + mt.timed_out + mt.cancelled, 0u);
    queue_ptr.reset();
    // The executors forgot their graphs (Note [Graph batching]): no stream keeps one.
    for (Stream* s : gpu->streams().created_streams()) {
      EXPECT_EQ(static_cast<backends::cuda::CudaStream&>(s->impl()).graphs_cached(), 0u);
    }
  }
  gpu->close();
}

}  // namespace
}  // namespace tandem
