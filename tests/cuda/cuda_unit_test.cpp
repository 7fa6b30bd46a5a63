// The cuda backend without a GPU: registration, device count, reason, config.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "tandem/config.h"
#include "tandem/device.h"
#include "tandem/error.h"

namespace tandem {
namespace {

TEST(CudaBackend, IsCompiledIn) {
  const auto names = Device::backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "cuda"), names.end());
}

TEST(CudaBackend, AGetWithoutAGpuNamesTheReasonAndWithAGpuGivesANonHostDevice) {
  const auto avail = Device::available();
  const bool has_gpu = std::find(avail.begin(), avail.end(), "cuda:0") != avail.end();
  if (has_gpu) {
    auto dev = Device::get("cuda");
    EXPECT_EQ(dev->backend(), "cuda");
    EXPECT_FALSE(dev->host_visible());
    EXPECT_EQ(dev->encoding_lock_policy(), RuntimeConfig::process().encoding_lock.value_or(
                                               EncodingLockPolicy::kNone));
    EXPECT_EQ(Device::get_default()->backend(), RuntimeConfig::process().backend.empty()
                                                    ? "cuda"
                                                    : Device::get_default()->backend());
  } else {
    try {
      (void)Device::get("cuda");
      FAIL() << "Device::get(\"cuda\") succeeded without a GPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
      EXPECT_NE(std::string(e.what()).find("cudaGetDeviceCount"), std::string::npos) << e.what();
    }
    if (RuntimeConfig::process().backend.empty()) {
      EXPECT_EQ(Device::get_default()->backend(), "cpu");  // falls back when no GPU
    }
  }
}

TEST(CudaConfig, ReleaseThresholdParsesMaxAndBytesAndRejectsTheRest) {
  ::setenv("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD", "max", 1);
  EXPECT_EQ(RuntimeConfig::from_environment().cuda_mempool_release_threshold, UINT64_MAX);
  ::setenv("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD", "1048576", 1);
  EXPECT_EQ(RuntimeConfig::from_environment().cuda_mempool_release_threshold, 1048576u);
  for (const char* bad : {"-1", "lots", "1e9", ""}) {
    ::setenv("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD", bad, 1);
    try {
      (void)RuntimeConfig::from_environment();
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kConfig);
      EXPECT_NE(std::string(e.what()).find("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD"),
                std::string::npos);
    }
  }
  ::unsetenv("TANDEM_CUDA_MEMPOOL_RELEASE_THRESHOLD");
}

}  // namespace
}  // namespace tandem
