// cluster_sum.cuh (private, CUDA code) — the end of a split-K linear whose S blocks form a
// thread-block cluster (the cluster linear of nn_kernels.cu, the 3xTF32 linear of
// mma_linear.cu): the partial tiles summed through distributed shared memory.
#pragma once

#include <cooperative_groups.h>

#include <cstddef>

#include "backends/cuda/warp_reduce.cuh"

namespace tandem::backends::cuda::launch {

// cluster_sum_tile<R, C, Threads>(cluster, part, y, bias, row0, col0, rows, out, act): every
// block of `cluster` holds its partial R x C tile at `part` in its shared memory (row-major, C + 1
// floats a row); block `rank` writes rows [rank R / S, (rank + 1) R / S) of the sum into y
// (rows row0 + r < rows, columns col0 + c < out; y row-major with `out` columns) with bias (may
// be null) and activation. Brackets the reads with the cluster's barriers: the partial tiles are
// written before any block reads, and no block leaves (freeing its shared memory) while another
// still reads it. Every thread of every block calls it; blockDim.x == Threads.
template <int R, int C, int Threads>
__device__ __forceinline__ void cluster_sum_tile(cooperative_groups::cluster_group& cluster,
                                                 float* part, float* y, const float* bias, int row0,
                                                 int col0, int rows, int out, int act) {
  const int splits = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int tid = static_cast<int>(threadIdx.x);
  cluster.sync();  // every block's partial tile is written
  const int per = R / splits;
  for (int e = tid; e < per * C; e += Threads) {
    const int r = rank * per + e / C, c = e % C, o = col0 + c;
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += cluster.map_shared_rank(part, s)[r * (C + 1) + c];
    if (row0 + r < rows && o < out) {
      y[static_cast<std::size_t>(row0 + r) * out + o] =
          activate(sum + (bias ? bias[o] : 0.0f), act);
    }
  }
  cluster.sync();  // no block leaves (and frees its shared memory) while others read it
}

}  // namespace tandem::backends::cuda::launch
