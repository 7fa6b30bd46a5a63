// mma_tf32.cuh — fp32 products on Hopper's tensor cores with near-fp32 accuracy: 3xTF32.
//
// A float a is split into a TF32 high part h and a low part l = a - h (tf32_split.h); then
// a b = h_a h_b + h_a l_b + l_a h_b + l_a l_b, and the last term is dropped: three TF32 mma
// instructions per product (the "3xTF32" of CUTLASS), each product within 3 * 2^-20 of itself
// (tf32_split.h; one TF32 mma: 2^-10). The tensor cores add the products in their own order, so
// sums agree with an fp32 FMA loop to rounding, not bit for bit.
#pragma once

#include <cuda_runtime.h>

#include "backends/cuda/tf32_split.h"

namespace tandem::backends::cuda {

// mma_tf32(c, a, b): c += A . B for one m16n8k8 tile, A row-major (a: the lane's 4 elements),
// B column-major (b: its 2), fp32 accumulators c (its 4), in the fragment layouts of PTX's
// mma.m16n8k8 .tf32 (lane = 4 g + t: a = A[g][t], A[g + 8][t], A[g][t + 4], A[g + 8][t + 4];
// b = B[t][g], B[t + 4][g]; c = C[g][2 t], C[g][2 t + 1], C[g + 8][2 t], C[g + 8][2 t + 1]).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const unsigned (&a)[4],
                                         const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Tf32x3Acc: the accumulators of one m16n8 tile's 3xTF32 product: the high parts' products
// (big) and the two cross terms, each in its own chain (the tensor core's latency overlaps the
// three), summed in value() (the small terms first, so their bits survive).
struct Tf32x3Acc {
  float big[4] = {0.0f, 0.0f, 0.0f, 0.0f}, hl[4] = {0.0f, 0.0f, 0.0f, 0.0f},
        lh[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  __device__ __forceinline__ float value(int i) const { return big[i] + (hl[i] + lh[i]); }
};

// Tf32Split<N>: a lane's N fp32 fragment elements split into TF32 high and low parts
// (split_tf32), once for every mma that uses them.
template <int N>
struct Tf32Split {
  unsigned hi[N], lo[N];
};

template <int N>
__device__ __forceinline__ Tf32Split<N> split_fragment(const float (&v)[N]) {
  Tf32Split<N> s;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const Tf32Pair p = split_tf32(v[i]);
    s.hi[i] = p.hi;
    s.lo[i] = p.lo;
  }
  return s;
}

// mma_3xtf32(acc, a, b): one m16n8k8 step of an fp32 product by 3xTF32: big += h_a h_b,
// hl += h_a l_b, lh += l_a h_b (a, b: the lane's fragments, as mma_tf32 lays them out, split).
__device__ __forceinline__ void mma_3xtf32(Tf32x3Acc& acc, const Tf32Split<4>& a,
                                           const Tf32Split<2>& b) {
  mma_tf32(acc.hl, a.hi, b.lo);
  mma_tf32(acc.lh, a.lo, b.hi);
  mma_tf32(acc.big, a.hi, b.hi);
}

}  // namespace tandem::backends::cuda
