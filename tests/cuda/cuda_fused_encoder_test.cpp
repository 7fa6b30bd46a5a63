// The fused encoder (Note [Fused encoder], src/backends/cuda/encoder_kernel.cu): the reference
// encoder's forward with it and without it equals
// the cpu backend within 1e-4, over sequence lengths 1..32 and batches 1..3, eager and as a graph;
// Kernels::encoder_stack takes exactly the stacks it has a kernel for.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"
#include "tandem/nn/models.h"

namespace tandem {
namespace {

using testing::max_rel;

class CudaFusedEncoder : public testing::GpuTest<::testing::TestWithParam<bool>> {};

TEST_P(CudaFusedEncoder, EqualsTheCpuBackendOverSequenceLengthsAndBatchesEagerAndAsAGraph) {
  RuntimeConfig c = RuntimeConfig::process();
  c.cuda_fused_encoder = GetParam();
  auto gpu = testing::open_cuda(c);
  auto cpu = Device::get("cpu");
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u fused %d\n", seed, GetParam());
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  auto m_cpu = nn::load_model("encoder", cpu, {std::nullopt, 11});
  auto m_gpu = nn::load_model("encoder", gpu, {std::nullopt, 11});
  for (std::size_t seq : {1, 2, 5, 17, 31, 32}) {
    for (std::size_t batch : {1, 2, 3}) {  // 3: op by op either way
      const nn::Shape shape{batch, seq, 256};
      std::vector<float> host(shape.numel());
      for (auto& v : host) v = dist(rng);
      const auto ref = m_cpu->forward(nn::Tensor::from_host(cpu, shape, host)).to_host();
      const nn::Tensor x = nn::Tensor::from_host(gpu, shape, host);
      EXPECT_LE(max_rel(m_gpu->forward(x).to_host(), ref), 1e-4)
          << "seq " << seq << " batch " << batch << " eager";
      // forward_into, twice into the same output (the kernel keeps no state between calls).
      const nn::Tensor y = nn::Tensor::empty(gpu, shape);
      for (int round = 0; round < 2; ++round) {
        m_gpu->forward_into(x, y);
        EXPECT_LE(max_rel(y.to_host(), ref), 1e-4)
            << "seq " << seq << " batch " << batch << " forward_into " << round;
      }
      if (seq != 32 && seq != 5) continue;
      // As a graph, replayed on new inputs in the same buffer.
      Stream& s = gpu->current_stream();
      for (int round = 0; round < 2; ++round) {
        for (auto& v : host) v = dist(rng);
        {
          Encoder enc(s);
          gpu->kernels().copy_from_host(enc, x.data(), host.data(), x.size_bytes());
        }
        run_graph(s, 1000 + seq * 10 + batch, [&] { m_gpu->forward_into(x, y); });
        const auto ref2 = m_cpu->forward(nn::Tensor::from_host(cpu, shape, host)).to_host();
        EXPECT_LE(max_rel(y.to_host(), ref2), 1e-4)
            << "seq " << seq << " batch " << batch << " graph " << round;
      }
    }
  }
  gpu->close();
}

INSTANTIATE_TEST_SUITE_P(Path, CudaFusedEncoder, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "fused" : "op_by_op"; });

// Kernels::encoder_stack: true (and the forward encoded) for the sizes the kernel has, false
// (nothing encoded) for any other size, and false when the configuration turns it off.
TEST(CudaFusedEncoderDispatch, TakesExactlyTheStacksItHasAKernelFor) {
  TANDEM_REQUIRE_GPU();
  for (bool setting : {false, true}) {
    RuntimeConfig c = RuntimeConfig::process();
    c.cuda_fused_encoder = setting;
    auto gpu = testing::open_cuda(c);
    const std::size_t d = 256, ff = 1024, batch = 2, seq = 32, rows = batch * seq;
    // Zero weights and unit norms: every layer's output is 0 (the norm of a constant row).
    const nn::Tensor w = nn::Tensor::zeros(gpu, nn::Shape{3 * d * d + d * d + 2 * d * ff + 16 * d});
    const nn::Tensor x = nn::Tensor::zeros(gpu, nn::Shape{rows * d});
    const nn::Tensor y = nn::Tensor::zeros(gpu, nn::Shape{rows * d});
    const nn::Tensor ws = nn::Tensor::zeros(gpu, nn::Shape{rows * (4 * d + ff)});
    float* p = w.data();
    EncoderLayerParams layer{p, p, p, p, p, p, p, p, p, p, p, p};
    const EncoderLayerParams layers[2] = {layer, layer};
    Stream& s = gpu->current_stream();
    const auto run = [&](EncoderStackArgs a) {
      Encoder enc(s);
      const bool taken = gpu->kernels().encoder_stack(enc, a);
      enc.commit();
      s.synchronize();
      return taken;
    };
    const EncoderStackArgs fits{y.data(), x.data(), ws.data(), batch, seq, d, 4, ff,
                                Activation::kRelu, 1e-5f, layers, 2};
    EXPECT_EQ(run(fits), setting);
    for (int change = 0; change < 7; ++change) {
      EncoderStackArgs a = fits;
      switch (change) {
        case 0: a.batch = 3; break;
        case 1: a.seq = 33; break;
        case 2: a.d_model = 128; break;
        case 3: a.heads = 8; break;
        case 4: a.feed_forward = 2048; break;
        case 5: a.act = Activation::kGelu; break;
        case 6: a.n_layers = 9; break;
      }
      EXPECT_FALSE(run(a)) << "change " << change;
    }
    gpu->close();
  }
}

}  // namespace
}  // namespace tandem
