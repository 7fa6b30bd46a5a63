// warp_reduce.cuh (private, device code) — warp_sum / warp_max, and reduce_scatter: many
// per-lane partial sums of a warp reduced at once (the resident chain's layers, the small-batch
// linear of nn_kernels.cu); activate, the nn kernels' activation codes.
#pragma once

namespace tandem::backends::cuda {

// activate(v, act): act 0 none, 1 ReLU, 2 GELU in PyTorch's exact (erf) form.
__device__ __forceinline__ float activate(float v, int act) {
  if (act == 1) return fmaxf(v, 0.0f);
  if (act == 2) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  return v;
}

// warp_sum(v) / warp_max(v): the warp's total / maximum, in every lane (butterfly).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__host__ __device__ constexpr int log2_of(int n) { return n <= 1 ? 0 : 1 + log2_of(n / 2); }

// reduce_scatter<MB>(v, lane): the warp's MB per-lane partial sums v[0..MB) (MB a power of two,
// at most 32) reduced across the 32 lanes; returns, in lane l, the total of v[l >> (5 - log2 MB)].
// Each step halves the values a lane carries: the lanes with bit o set keep the upper half and
// send the lower, the others the reverse; once one value is left, plain butterfly steps.
// MB - 1 + 5 - log2(MB) shuffles in all (31 for MB = 32, 16 for 16) instead of 5 per value, and
// those of a step are independent.
// Clobbers v.
template <int N, int O>
__device__ inline void reduce_scatter_step(float* v, int lane) {
  if constexpr (O >= 1) {
    if constexpr (N >= 2) {
      constexpr int h = N / 2;
      const bool upper = (lane & O) != 0;
#pragma unroll
      for (int i = 0; i < h; ++i) {
        const float send = upper ? v[i] : v[i + h];
        const float keep = upper ? v[i + h] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
      }
      reduce_scatter_step<h, O / 2>(v, lane);
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], O);
      reduce_scatter_step<1, O / 2>(v, lane);
    }
  }
}

template <int MB>
__device__ inline float reduce_scatter(float* v, int lane) {
  reduce_scatter_step<MB, 16>(v, lane);
  return v[0];
}

}  // namespace tandem::backends::cuda
