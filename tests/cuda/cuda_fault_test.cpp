// A device fault inside a replayed graph (its own executable, tests/cuda/CMakeLists.txt: a fault
// makes the process's CUDA context unusable, so nothing else may run in this process after it).
// With the graph completion signal (Note [Graph completion signal]) the signal kernel never runs
// after a fault, so synchronize() must fall back to cudaStreamSynchronize and report the fault:
// an Error(kKernel) naming the call and saying the context is lost, in bounded time, never a
// hang or a crash.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "gpu_test_util.h"
#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

class CudaFault : public testing::GpuTest<> {};

TEST_F(CudaFault, AFaultInAReplayedGraphIsReportedBySynchronizeNotAHang) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  Buffer y(dev, 1024 * sizeof(float), s);
  for (int i = 0; i < 3; ++i) {  // a good graph first: the signal path is armed and works
    run_graph(s, 1, [&] { fill(s, y, 1.0f); });
    s.synchronize();
  }
  // Not device memory: the fill faults when the replay runs (capturing it runs nothing).
  auto* bad = reinterpret_cast<float*>(std::uintptr_t{0x100});
  run_graph(s, 2, [&] {
    Encoder enc(s);
    dev->kernels().fill(enc, bad, std::size_t{1} << 20, 1.0f);
  });
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  ErrorKind kind = ErrorKind::kBackend;
  try {
    s.synchronize();
  } catch (const Error& e) {
    what = e.what();
    kind = e.kind();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(kind, ErrorKind::kKernel) << what;
  EXPECT_NE(what.find("cudaStreamSynchronize"), std::string::npos) << what;
  EXPECT_NE(what.find("sticky"), std::string::npos) << what;
  EXPECT_LT(seconds, 10.0) << "synchronize took " << seconds << " s to report the fault";
}

}  // namespace
}  // namespace tandem
