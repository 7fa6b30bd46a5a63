// cuda_check.h (private) — TANDEM_CUDA_CHECK: the one checking macro for every CUDA runtime,
// cuBLAS and cuBLASLt call of the cuda backend.
//
//   TANDEM_CUDA_CHECK(cudaStreamSynchronize(s), where);
//
// On failure it throws tandem::Error naming the call (its source text), the error's name and
// description, and `where` — the device and stream ("cuda:0 stream 3"). The kind is
// kOutOfMemory for allocation failures (cudaErrorMemoryAllocation, CUBLAS_STATUS_ALLOC_FAILED),
// else kBackend; TANDEM_CUDA_CHECK_KIND picks another kind (kKernel for errors that a
// synchronize reports on behalf of earlier asynchronous work). Sticky errors (the CUDA context is
// lost, e.g. after an illegal address) say so and tell the user to restart the process.
// Cost on success: one compare.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string_view>

#include "tandem/error.h"

namespace tandem::backends::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, std::string_view where,
                                   ErrorKind kind);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call,
                                     std::string_view where, ErrorKind kind);

// check(status, call, where, kind): the macro's body, overloaded on the status type.
inline void check(cudaError_t status, const char* call, std::string_view where,
                  ErrorKind kind = ErrorKind::kBackend) {
  if (status != cudaSuccess) [[unlikely]] throw_cuda_error(status, call, where, kind);
}
inline void check(cublasStatus_t status, const char* call, std::string_view where,
                  ErrorKind kind = ErrorKind::kBackend) {
  if (status != CUBLAS_STATUS_SUCCESS) [[unlikely]] throw_cublas_error(status, call, where, kind);
}

// is_sticky(status): the CUDA context is corrupted; every later call fails the same way.
[[nodiscard]] bool is_sticky(cudaError_t status) noexcept;

}  // namespace tandem::backends::cuda

#define TANDEM_CUDA_CHECK(call, where) ::tandem::backends::cuda::check((call), #call, (where))
#define TANDEM_CUDA_CHECK_KIND(call, where, kind) \
  ::tandem::backends::cuda::check((call), #call, (where), (kind))
