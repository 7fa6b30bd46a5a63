// gpu_test_util.h — helpers of the GPU tests: skip with the reason when there is no GPU.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::testing {

// no_gpu_reason(): "" when a CUDA device is present, else why not (the runtime's message).
inline std::string no_gpu_reason() {
  static const std::string reason = [] {
    try {
      (void)Device::get("cuda");
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  }();
  return reason;
}

// open_cuda(config): a private cuda device with its own pool and policy.
inline std::shared_ptr<Device> open_cuda(RuntimeConfig config = RuntimeConfig::process()) {
  return Device::open("cuda", config);
}

// download_all(stream, buffer): the buffer's floats, after a synchronize.
inline std::vector<float> download_all(Stream& stream, const Buffer& b) {
  std::vector<float> host(b.size_bytes() / sizeof(float));
  download(stream, host, b);
  stream.synchronize();
  return host;
}

// max_rel(a, b): max |a - b| / (1 + |b|) elementwise; infinity when a holds a NaN.
inline double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]) / (1.0 + std::fabs(b[i])));
  }
  return m;
}

// run_eager_kernels(dev, t, done, errors): thread t's load beside a capture: on a leased stream,
// fill / scale / sum with checked results (1000+ floats each), at least 50 rounds and until
// done() is true. A wrong sum or an exception (printed) adds one to `errors`.
template <class Done>
void run_eager_kernels(const std::shared_ptr<Device>& dev, int t, Done done,
                       std::atomic<int>& errors) {
  try {
    auto lease = dev->streams().lease();
    Stream& s = lease.stream();
    for (int i = 0; !done() || i < 50; ++i) {
      const std::size_t n = 1000 + static_cast<std::size_t>(t * 37 + i % 100);
      Buffer x(dev, n * sizeof(float), s), out(dev, sizeof(float), s);
      fill(s, x, 1.0f);
      scale(s, x, x, static_cast<float>(t + 1));
      sum(s, out, x);
      if (download_all(s, out)[0] != static_cast<float>((t + 1) * n)) errors.fetch_add(1);
    }
  } catch (const std::exception& e) {
    std::printf("eager worker %d: %s\n", t, e.what());
    errors.fetch_add(1);
  }
}

}  // namespace tandem::testing

#define TANDEM_REQUIRE_GPU()                                                            \
  do {                                                                                  \
    if (const std::string why = ::tandem::testing::no_gpu_reason(); !why.empty()) {     \
      GTEST_SKIP() << "no CUDA GPU on this machine, GPU test skipped: " << why;         \
    }                                                                                   \
  } while (0)

namespace tandem::testing {

// GpuTest<Base>: a fixture whose tests skip, with the reason, on a machine without a CUDA GPU.
// Base is ::testing::Test or a ::testing::TestWithParam<T>.
template <class Base = ::testing::Test>
class GpuTest : public Base {
 protected:
  void SetUp() override { TANDEM_REQUIRE_GPU(); }
};

}  // namespace tandem::testing
