// The 3xTF32 split of the fused encoder's products (src/backends/cuda/tf32_split.h), on the
// host: the split is exact, its high part is a TF32 value, and a product by three TF32 products
// stays within the 3 * 2^-20 the kernel's accuracy rests on (a single TF32 product does not).
// (Suite names start with Cuda: CI runs the cuda preset's tests by `ctest -R '[Cc]uda'`.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "backends/cuda/tf32_split.h"

namespace tandem::backends::cuda {
namespace {

// tf32(v): v as the tensor core reads a .tf32 operand (its low 13 mantissa bits dropped).
float tf32(float v) { return bits_float(float_bits(v) & kTf32Mask); }

// Normal floats of both signs over exponents -40..40 with random mantissas, and the edge
// mantissas (all ones below the TF32 cut, all ones above it, none).
std::vector<float> samples() {
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<std::uint32_t> mantissa(0, (1u << 23) - 1);
  std::uniform_int_distribution<int> exponent(-40, 40);
  std::vector<float> v;
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t bits = (static_cast<std::uint32_t>(i % 2) << 31) |
                               (static_cast<std::uint32_t>(127 + exponent(rng)) << 23) |
                               mantissa(rng);
    v.push_back(bits_float(bits));
  }
  for (const std::uint32_t m : {0u, 0x1fffu, 0x7fe000u, 0x7fffffu}) {
    v.push_back(bits_float((127u << 23) | m));
    v.push_back(-bits_float((100u << 23) | m));
  }
  return v;
}

TEST(CudaTf32Split, IsExactWithATf32HighPartAndASmallLowPart) {
  for (const float v : samples()) {
    const Tf32Pair p = split_tf32(v);
    const float hi = bits_float(p.hi), lo = bits_float(p.lo);
    ASSERT_EQ(p.hi & ~kTf32Mask, 0u) << v;
    ASSERT_EQ(hi + lo, v) << v;
    ASSERT_LT(std::fabs(lo), std::ldexp(std::fabs(v), -10)) << v;
  }
  const Tf32Pair zero = split_tf32(0.0f);
  EXPECT_EQ(bits_float(zero.hi), 0.0f);
  EXPECT_EQ(bits_float(zero.lo), 0.0f);
}

TEST(CudaTf32Split, ThreeTf32ProductsStayWithinThreeTimesTwoToTheMinus20) {
  const std::vector<float> v = samples();
  double worst = 0.0, worst_one = 0.0;
  for (std::size_t i = 0; i + 1 < v.size(); i += 2) {
    const float a = v[i], b = v[i + 1];
    const Tf32Pair pa = split_tf32(a), pb = split_tf32(b);
    const double ha = bits_float(pa.hi), hb = bits_float(pb.hi);
    const double la = tf32(bits_float(pa.lo)), lb = tf32(bits_float(pb.lo));
    // Each term is a product of two 11-bit significands: exact in double, as is a * b.
    const double exact = static_cast<double>(a) * static_cast<double>(b);
    const double three = ha * hb + ha * lb + la * hb;
    const double one = static_cast<double>(tf32(a)) * static_cast<double>(tf32(b));
    worst = std::max(worst, std::fabs(three - exact) / std::fabs(exact));
    worst_one = std::max(worst_one, std::fabs(one - exact) / std::fabs(exact));
  }
  EXPECT_LE(worst, 3.0 * std::ldexp(1.0, -20));
  EXPECT_GT(worst_one, std::ldexp(1.0, -11));  // the bound is not loose: one TF32 product misses it
  RecordProperty("worst_3xtf32_error_in_2_to_minus_20", std::to_string(std::ldexp(worst, 20)));
}

}  // namespace
}  // namespace tandem::backends::cuda
