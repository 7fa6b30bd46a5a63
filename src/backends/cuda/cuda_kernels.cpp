#include "backends/cuda/cuda_kernels.h"

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/cuda_stream.h"
#include "backends/cuda/resident_chain.h"
#include "tandem/encoder.h"
#include "tandem/stream.h"

namespace tandem::backends::cuda {

void CudaKernels::fill(Encoder& enc, float* y, std::size_t n, float value) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::fill(s.get(), y, n, value), s.label());
}

void CudaKernels::scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::scale(s.get(), y, x, n, a), s.label());
}

void CudaKernels::add(Encoder& enc, float* y, const float* a, const float* b,
                      std::size_t n) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::add(s.get(), y, a, b, n), s.label());
}

void CudaKernels::copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const {
  if (bytes == 0) return;
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::copy(s.get(), dst, src, bytes, s.device().config().cuda_pdl),
                    s.label());
}

void CudaKernels::sum(Encoder& enc, float* out, const float* x, std::size_t n) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::sum(s.get(), out, x, n), s.label());
}

void CudaKernels::copy_from_host(Encoder& enc, void* dst, const void* host_src,
                                 std::size_t bytes) const {
  if (bytes == 0) return;
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s.get()),
                    s.label());
}

void CudaKernels::copy_to_host(Encoder& enc, void* host_dst, const void* src,
                               std::size_t bytes) const {
  if (bytes == 0) return;
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s.get()),
                    s.label());
}

void CudaKernels::empty(Encoder& enc) const {
  CudaStream& s = stream_of(enc);
  TANDEM_CUDA_CHECK(launch::empty(s.get()), s.label());
}

std::unique_ptr<ResidentChain> CudaKernels::start_resident_chain(
    Stream& stream, const std::vector<ResidentLayer>& layers, const ResidentConfig& config) const {
  // Only CudaDevice creates the streams of a cuda device, so this stream is a CudaStream.
  auto& cs = static_cast<CudaStream&>(stream.impl());
  return std::make_unique<CudaResidentChain>(cs.device(), layers, config);
}

}  // namespace tandem::backends::cuda
