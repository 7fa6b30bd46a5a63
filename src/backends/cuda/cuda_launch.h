// cuda_launch.h (private) — host-side launchers of the cuda backend's own kernels (*.cu).
//
// Each launcher enqueues its kernel on `stream` and returns cudaGetLastError() (the launch
// status; errors while the kernel runs surface at the next synchronize). They never block, never
// allocate, and may be called during stream capture. n == 0 launches nothing. Pointers are device
// pointers of the stream's device. Plain C++ signatures so that only the .cu files meet nvcc.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace tandem::backends::cuda::launch {

// y[i] = value
cudaError_t fill(cudaStream_t stream, float* y, std::size_t n, float value);
// y[i] = x[i] * a  (y may alias x)
cudaError_t scale(cudaStream_t stream, float* y, const float* x, std::size_t n, float a);
// y[i] = a[i] + b[i]  (y may alias a or b)
cudaError_t add(cudaStream_t stream, float* y, const float* a, const float* b, std::size_t n);
// out[0] = sum of x[0..n): one block, double accumulators, a fixed tree order (deterministic and
// exact for integer-valued data below 2^53).
cudaError_t sum(cudaStream_t stream, float* out, const float* x, std::size_t n);
// An empty kernel: the launch+sync ceiling of `tandem bench`.
cudaError_t empty(cudaStream_t stream);

}  // namespace tandem::backends::cuda::launch
