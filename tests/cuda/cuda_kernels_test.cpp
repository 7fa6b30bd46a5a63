// The runtime kernels on the GPU, checked element by element against host arithmetic.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

using testing::download_all;

class CudaKernelsTest : public testing::GpuTest<::testing::TestWithParam<std::size_t>> {};

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST_P(CudaKernelsTest, FillScaleAddCopyMatchTheHostExactly) {
  const std::size_t n = GetParam();
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u n %zu\n", seed, n);
  auto dev = Device::get("cuda");
  Stream& s = dev->current_stream();
  const auto hx = random_floats(n, seed);
  const auto hb = random_floats(n, seed + 1);
  Buffer x(dev, n * sizeof(float)), b(dev, n * sizeof(float)), y(dev, n * sizeof(float));
  upload(s, x, hx);
  upload(s, b, hb);
  fill(s, y, 1234.5f);  // poison: every element must be overwritten below
  scale(s, y, x, -2.5f);
  auto hy = download_all(s, y);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hy[i], hx[i] * -2.5f) << "i=" << i;
  add(s, y, x, b);
  hy = download_all(s, y);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hy[i], hx[i] + hb[i]) << "i=" << i;
  add(s, y, y, y);  // aliasing
  hy = download_all(s, y);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hy[i], (hx[i] + hb[i]) * 2.0f) << "i=" << i;
  fill(s, y, 7.0f);
  copy(s, x, y);
  const auto hc = download_all(s, x);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hc[i], 7.0f) << "i=" << i;
}

TEST_P(CudaKernelsTest, SumOfIntegersIsExact) {
  const std::size_t n = GetParam();
  auto dev = Device::get("cuda");
  Stream& s = dev->current_stream();
  std::vector<float> h(n);
  double expect = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    h[i] = static_cast<float>(static_cast<int>(i % 17) - 8);
    expect += h[i];
  }
  Buffer x(dev, n * sizeof(float)), out(dev, sizeof(float));
  upload(s, x, h);
  fill(s, out, -99.0f);
  sum(s, out, x);
  EXPECT_EQ(download_all(s, out)[0], static_cast<float>(expect));
}

INSTANTIATE_TEST_SUITE_P(Sizes, CudaKernelsTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1}, std::size_t{1000},
                                           std::size_t{(1 << 20) + 3},
                                           std::size_t{(1 << 24) + 17}));

}  // namespace
}  // namespace tandem
