// elementwise.cu — the runtime kernels of the cuda backend (fill, scale, add, copy, sum, empty, signal).
#include <algorithm>
#include <cstdint>

#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/pdl.cuh"

namespace tandem::backends::cuda::launch {
namespace {

constexpr int kThreads = 256;
constexpr std::size_t kMaxBlocks = 65535;

unsigned blocks_for(std::size_t n) {
  return static_cast<unsigned>(std::min<std::size_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

__global__ void fill_kernel(float* __restrict__ y, std::size_t n, float value) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    y[i] = value;
  }
}

__global__ void scale_kernel(float* y, const float* x, std::size_t n, float a) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    y[i] = x[i] * a;
  }
}

__global__ void add_kernel(float* y, const float* a, const float* b, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    y[i] = a[i] + b[i];
  }
}

// copy_kernel: n elements of T, then the `tail` (< sizeof(T)) bytes after them, by block 0.
template <class T>
__global__ void copy_kernel(T* __restrict__ dst, const T* __restrict__ src, std::size_t n,
                            unsigned char* __restrict__ dst_tail,
                            const unsigned char* __restrict__ src_tail, unsigned tail) {
  pdl_wait_then_release();
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    dst[i] = src[i];
  }
  if (blockIdx.x == 0 && threadIdx.x < tail) dst_tail[threadIdx.x] = src_tail[threadIdx.x];
}

template <class T>
cudaError_t launch_copy(cudaStream_t stream, void* dst, const void* src, std::size_t bytes,
                        bool pdl) {
  const std::size_t n = bytes / sizeof(T);
  const auto tail = static_cast<unsigned>(bytes % sizeof(T));
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  return launch_ex(stream, {dim3(std::max(blocks_for(n), 1u)), dim3(kThreads), 0, pdl},
                   copy_kernel<T>, static_cast<T*>(dst), static_cast<const T*>(src), n,
                   d + n * sizeof(T), s + n * sizeof(T), tail);
}

constexpr int kSumThreads = 1024;

__global__ void sum_kernel(float* out, const float* __restrict__ x, std::size_t n) {
  __shared__ double partial[kSumThreads];
  double acc = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kSumThreads) acc += x[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(partial[0]);
}

__global__ void empty_kernel() {}

__global__ void signal_kernel(unsigned* counter, volatile unsigned* host_word) {
  const unsigned v = ++*counter;
  __threadfence_system();  // every earlier write of this thread, and of the kernels before it
                           // (they completed before this kernel started), precede the store
  *host_word = v;
}

}  // namespace

cudaError_t fill(cudaStream_t stream, float* y, std::size_t n, float value) {
  if (n == 0) return cudaSuccess;
  fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, n, value);
  return cudaGetLastError();
}

cudaError_t scale(cudaStream_t stream, float* y, const float* x, std::size_t n, float a) {
  if (n == 0) return cudaSuccess;
  scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, x, n, a);
  return cudaGetLastError();
}

cudaError_t add(cudaStream_t stream, float* y, const float* a, const float* b, std::size_t n) {
  if (n == 0) return cudaSuccess;
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, a, b, n);
  return cudaGetLastError();
}

cudaError_t copy(cudaStream_t stream, void* dst, const void* src, std::size_t bytes, bool pdl) {
  if (bytes == 0) return cudaSuccess;
  const auto both = reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src);
  if (both % 16 == 0) return launch_copy<uint4>(stream, dst, src, bytes, pdl);
  if (both % 4 == 0) return launch_copy<unsigned>(stream, dst, src, bytes, pdl);
  return launch_copy<unsigned char>(stream, dst, src, bytes, pdl);
}

cudaError_t sum(cudaStream_t stream, float* out, const float* x, std::size_t n) {
  sum_kernel<<<1, kSumThreads, 0, stream>>>(out, x, n);  // n == 0 writes 0
  return cudaGetLastError();
}

cudaError_t signal(cudaStream_t stream, unsigned* counter, unsigned* host_word) {
  signal_kernel<<<1, 1, 0, stream>>>(counter, host_word);
  return cudaGetLastError();
}

cudaError_t empty(cudaStream_t stream) {
  empty_kernel<<<1, 1, 0, stream>>>();
  return cudaGetLastError();
}

}  // namespace tandem::backends::cuda::launch
