#include "backends/cpu/cpu_kernels.h"

#include <algorithm>
#include <cstring>

#include "tandem/encoder.h"

namespace tandem::backends {

void CpuKernels::fill(Encoder& enc, float* y, std::size_t n, float value) const {
  enc.dispatch([=] { std::fill(y, y + n, value); });
}

void CpuKernels::scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const {
  enc.dispatch([=] {
    for (std::size_t i = 0; i < n; ++i) y[i] = x[i] * a;
  });
}

void CpuKernels::add(Encoder& enc, float* y, const float* a, const float* b, std::size_t n) const {
  enc.dispatch([=] {
    for (std::size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  });
}

void CpuKernels::copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const {
  enc.dispatch([=] { std::memcpy(dst, src, bytes); });
}

void CpuKernels::sum(Encoder& enc, float* out, const float* x, std::size_t n) const {
  enc.dispatch([=] {
    double acc = 0.0;  // double accumulation: exact for the integer-valued sums tests use
    for (std::size_t i = 0; i < n; ++i) acc += x[i];
    out[0] = static_cast<float>(acc);
  });
}

void CpuKernels::copy_from_host(Encoder& enc, void* dst, const void* host_src,
                                std::size_t bytes) const {
  copy(enc, dst, host_src, bytes);
}

void CpuKernels::copy_to_host(Encoder& enc, void* host_dst, const void* src,
                              std::size_t bytes) const {
  copy(enc, host_dst, src, bytes);
}

void CpuKernels::empty(Encoder& enc) const {
  enc.dispatch([] {});
}

}  // namespace tandem::backends
