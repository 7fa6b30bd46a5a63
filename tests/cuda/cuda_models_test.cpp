// Both reference models on cuda equal the cpu backend: within 1e-4 in fp32 and 1e-2 with TF32
// (TANDEM_CUDA_TF32), eager and replayed as a graph, at batch sizes that take the GEMV path
// (1..4 rows) and the cuBLASLt path.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"
#include "tandem/nn/models.h"

namespace tandem {
namespace {

using testing::max_rel;

class CudaModels : public testing::GpuTest<::testing::TestWithParam<bool>> {};  // param: TF32

TEST_P(CudaModels, MlpAndEncoderEqualTheCpuBackendEagerAndAsAGraph) {
  const bool tf32 = GetParam();
  const double tol = tf32 ? 1e-2 : 1e-4;
  RuntimeConfig c = RuntimeConfig::process();
  c.cuda_tf32 = tf32;
  auto gpu = testing::open_cuda(c);
  auto cpu = Device::get("cpu");
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u tf32 %d\n", seed, tf32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::uint64_t model_key = 0;
  for (const char* name : {"mlp", "encoder"}) {
    model_key += 100000;  // graph keys: one per (model, batch)
    auto m_cpu = nn::load_model(name, cpu, {std::nullopt, 7});
    auto m_gpu = nn::load_model(name, gpu, {std::nullopt, 7});
    for (std::size_t batch : {1, 3, 33}) {
      const nn::Shape shape = m_cpu->input_shape(batch);
      std::vector<float> host(shape.numel());
      for (auto& v : host) v = dist(rng);
      const auto ref = m_cpu->forward(nn::Tensor::from_host(cpu, shape, host)).to_host();
      const nn::Tensor x = nn::Tensor::from_host(gpu, shape, host);
      const auto eager = m_gpu->forward(x).to_host();
      EXPECT_LE(max_rel(eager, ref), tol) << name << " batch " << batch << " eager";
      // As a graph: the forward recorded once, replayed on a new input in the same buffer.
      Stream& s = gpu->current_stream();
      const nn::Tensor out = nn::Tensor::empty(gpu, m_gpu->output_shape(batch));
      for (int round = 0; round < 2; ++round) {
        for (auto& v : host) v = dist(rng);
        {
          Encoder enc(s);  // same buffer, new values (host stays alive until to_host syncs)
          gpu->kernels().copy_from_host(enc, x.data(), host.data(), x.size_bytes());
        }
        run_graph(s, model_key + batch, [&] {
          const nn::Tensor y = m_gpu->forward(x);
          Encoder enc(s);
          gpu->kernels().copy(enc, out.data(), y.data(), y.size_bytes());
        });
        const auto replayed = out.to_host();
        const auto ref2 = m_cpu->forward(nn::Tensor::from_host(cpu, shape, host)).to_host();
        EXPECT_LE(max_rel(replayed, ref2), tol) << name << " batch " << batch << " graph " << round;
      }
    }
  }
  gpu->close();  // releases the graphs (and the model references they keep)
}

INSTANTIATE_TEST_SUITE_P(Precision, CudaModels, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "tf32" : "fp32"; });

}  // namespace
}  // namespace tandem
