// gpu_test_util.h — helpers of the GPU tests: skip with the reason when there is no GPU.
#pragma once

#include <gtest/gtest.h>

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
