#include "backends/cuda/cuda_check.h"

#include <string>

namespace tandem::backends::cuda {

bool is_sticky(cudaError_t status) noexcept {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

void throw_cuda_error(cudaError_t status, const char* call, std::string_view where,
                      ErrorKind kind) {
  if (status == cudaErrorMemoryAllocation) kind = ErrorKind::kOutOfMemory;
  std::string msg = std::string(call) + " failed with " + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ") on " + std::string(where);
  if (is_sticky(status)) {
    msg += "; this error is sticky: the CUDA context of this process is unusable, restart the "
           "process (run it under compute-sanitizer to find the faulting kernel)";
  } else if (status == cudaErrorMemoryAllocation) {
    msg += "; free buffers or lower the batch size";
  } else if (status == cudaErrorInsufficientDriver || status == cudaErrorNoDevice) {
    msg += "; no usable GPU: use TANDEM_BACKEND=cpu";
  }
  throw Error(kind, msg);
}

void throw_cublas_error(cublasStatus_t status, const char* call, std::string_view where,
                        ErrorKind kind) {
  if (status == CUBLAS_STATUS_ALLOC_FAILED) kind = ErrorKind::kOutOfMemory;
  throw Error(kind, std::string(call) + " failed with " + cublasGetStatusName(status) + " (" +
                        cublasGetStatusString(status) + ") on " + std::string(where));
}

}  // namespace tandem::backends::cuda
