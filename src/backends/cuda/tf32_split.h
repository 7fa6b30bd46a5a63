// tf32_split.h — a float split into TF32 high and low parts, for 3xTF32 products
// (mma_tf32.cuh); host and device code, so the split's numerics are tested on the host
// (tests/cuda/tf32_split_test.cpp).
//
// v = hi + lo exactly, where hi is v with its low 13 mantissa bits cleared (a TF32 value: 10
// explicit mantissa bits) and lo the rest, an fp32 value the tensor core reads as TF32 (its own
// low 13 bits dropped). Then |lo| < 2^-10 |v| and lo's dropped bits are below 2^-10 |lo|, so
// hi + tf32(lo) is within 2^-20 |v| of v; a product a b by 3xTF32, h_a h_b + h_a l_b + l_a h_b
// (l_a l_b dropped), is within 3 * 2^-20 |a b| of a b (fp32's own rounding: 2^-24; one TF32
// product: 2^-10). Normal floats; zero splits into zeros.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TANDEM_HOST_DEVICE __host__ __device__
#else
#define TANDEM_HOST_DEVICE
#endif

namespace tandem::backends::cuda {

// Tf32Pair: a float's TF32 high and low parts as bit patterns (the .b32 form mma takes).
struct Tf32Pair {
  std::uint32_t hi, lo;
};

inline constexpr std::uint32_t kTf32Mask = 0xffffe000u;  // sign, exponent, 10 mantissa bits

TANDEM_HOST_DEVICE inline std::uint32_t float_bits(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

TANDEM_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// split_tf32(v): hi = v truncated to TF32 (one instruction, where cvt.rna.tf32.f32 costs the
// H100 four), lo = v - hi (exact).
TANDEM_HOST_DEVICE inline Tf32Pair split_tf32(float v) {
  const std::uint32_t hi = float_bits(v) & kTf32Mask;
  return {hi, float_bits(v - bits_float(hi))};
}

}  // namespace tandem::backends::cuda
