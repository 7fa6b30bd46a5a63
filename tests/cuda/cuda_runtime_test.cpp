// The cuda backend's runtime pieces on a GPU: streams, host functions, events, memory, errors.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/event.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

using testing::download_all;

class CudaRuntime : public testing::GpuTest<> {};

TEST_F(CudaRuntime, WorkerStreamsAreDistinctNonBlockingCudaStreamsWithTheGreatestPriority) {
  auto dev = testing::open_cuda();
  std::set<void*> handles;
  std::vector<StreamLease> leases;
  int least = 0, greatest = 0;
  ASSERT_EQ(cudaDeviceGetStreamPriorityRange(&least, &greatest), cudaSuccess);
  for (int i = 0; i < 5; ++i) {
    leases.push_back(dev->streams().lease());
    auto* cs = static_cast<cudaStream_t>(leases.back().stream().native_handle());
    ASSERT_NE(cs, nullptr);
    unsigned flags = 0;
    int prio = 0;
    ASSERT_EQ(cudaStreamGetFlags(cs, &flags), cudaSuccess);
    ASSERT_EQ(cudaStreamGetPriority(cs, &prio), cudaSuccess);
    EXPECT_EQ(flags & cudaStreamNonBlocking, cudaStreamNonBlocking);
    EXPECT_EQ(prio, greatest);
    handles.insert(cs);
  }
  EXPECT_EQ(handles.size(), 5u);
  int prio0 = 0;
  ASSERT_EQ(cudaStreamGetPriority(static_cast<cudaStream_t>(dev->default_stream().native_handle()),
                                  &prio0),
            cudaSuccess);
  EXPECT_EQ(prio0, least);
}

TEST_F(CudaRuntime, HostFunctionsRunInStreamOrderAfterTheKernelsBeforeThem) {
  auto dev = Device::get("cuda");
  Stream& s = dev->current_stream();
  const std::size_t n = 1 << 20;
  Buffer x(dev, n * sizeof(float));
  std::vector<float> host(n, 0.0f);
  std::atomic<float> seen{-1.0f};
  {
    Encoder enc(s);
    dev->kernels().fill(enc, x.as<float>(), n, 3.0f);
    dev->kernels().copy_to_host(enc, host.data(), x.data(), n * sizeof(float));
    enc.dispatch([&] { seen.store(host[n - 1]); });
  }
  s.synchronize();
  EXPECT_EQ(seen.load(), 3.0f);
}

TEST_F(CudaRuntime, AHostFunctionErrorFaultsTheStreamUntilSynchronizeRethrowsIt) {
  auto dev = Device::get("cuda");
  Stream& s = dev->current_stream();
  std::atomic<int> ran{0};
  {
    Encoder enc(s);
    enc.dispatch([] { throw Error(ErrorKind::kKernel, "planted failure"); });
    enc.dispatch([&] { ran.fetch_add(1); });  // skipped: the stream is faulted
  }
  try {
    s.synchronize();
    FAIL() << "synchronize did not rethrow";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kKernel);
    EXPECT_STREQ(e.what(), "planted failure");
  }
  EXPECT_EQ(ran.load(), 0);
  s.synchronize();  // cleared
  {
    Encoder enc(s);
    enc.dispatch([&] { ran.fetch_add(1); });
  }
  s.synchronize();
  EXPECT_EQ(ran.load(), 1);
}

TEST_F(CudaRuntime, AnEventOrdersWorkAcrossStreamsAndTimesIt) {
  auto dev = testing::open_cuda();
  auto a = dev->streams().lease();
  auto b = dev->streams().lease();
  const std::size_t n = 1 << 24;
  Buffer x(dev, n * sizeof(float), a.stream());
  Buffer y(dev, n * sizeof(float), b.stream());
  Event start(*dev, Event::Timing::kEnabled), done(*dev, Event::Timing::kEnabled);
  fill(b.stream(), y, 0.0f);
  b.stream().synchronize();
  start.record(a.stream());
  for (int i = 1; i <= 20; ++i) fill(a.stream(), x, static_cast<float>(i));  // keeps `a` busy
  done.record(a.stream());
  done.wait(b.stream());
  copy(b.stream(), y, x);  // must see the last fill
  const auto hy = download_all(b.stream(), y);
  EXPECT_EQ(hy.front(), 20.0f);
  EXPECT_EQ(hy.back(), 20.0f);
  done.wait();
  EXPECT_TRUE(done.query());
  const double ms = start.elapsed_ms(done);
  EXPECT_GT(ms, 0.0);
  EXPECT_LT(ms, 10'000.0);
  Event plain(*dev);
  plain.record(a.stream());
  plain.wait();
  EXPECT_THROW((void)plain.elapsed_ms(done), Error);
}

TEST_F(CudaRuntime, OutOfMemoryNamesTheSizeAndThePoolAndTheRuntimeKeepsServing) {
  RuntimeConfig c = RuntimeConfig::process();
  c.cuda_mempool_release_threshold = 0;  // give the card back at each synchronize
  auto dev = testing::open_cuda(c);
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::size_t huge = std::size_t{1} << 44;  // 16 TiB
  try {
    Buffer b(dev, huge, s);
    FAIL() << "a 16 TiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(huge)), std::string::npos) << msg;
    EXPECT_NE(msg.find("pool reserves"), std::string::npos) << msg;
    EXPECT_NE(msg.find("stream"), std::string::npos) << msg;
  }
  // Fill most of the card in 1 GiB pieces until it refuses, then free and serve again.
  std::vector<Buffer> hog;
  std::size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  bool refused = false;
  for (std::size_t i = 0; i < total_b / (std::size_t{1} << 30) + 4; ++i) {
    try {
      hog.emplace_back(dev, std::size_t{1} << 30, s);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
      refused = true;
      break;
    }
  }
  EXPECT_TRUE(refused) << "the card took " << hog.size() << " GiB";
  hog.clear();
  s.synchronize();
  Buffer x(dev, 1000 * sizeof(float), s), out(dev, sizeof(float), s);
  fill(s, x, 2.0f);
  sum(s, out, x);
  EXPECT_EQ(download_all(s, out)[0], 2000.0f);
}

TEST_F(CudaRuntime, MemoryStatsCountAllocationsAndFrees) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  {
    Buffer a(dev, 1000, s), b(dev, 3000, s);
    EXPECT_EQ(dev->memory_stats().current_bytes, 4000);
    EXPECT_EQ(dev->memory_stats().allocs, 2);
  }
  s.synchronize();
  const MemoryStats st = dev->memory_stats();
  EXPECT_EQ(st.current_bytes, 0);
  EXPECT_EQ(st.peak_bytes, 4000);
  EXPECT_EQ(st.frees, 2);
}

TEST_F(CudaRuntime, EveryEncodingLockPolicyRunsTheKernels) {
  for (auto policy : {EncodingLockPolicy::kNone, EncodingLockPolicy::kStream,
                      EncodingLockPolicy::kGlobal}) {
    RuntimeConfig c = RuntimeConfig::process();
    c.encoding_lock = policy;
    auto dev = testing::open_cuda(c);
    EXPECT_EQ(dev->encoding_lock_policy(), policy);
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        Stream& s = dev->current_stream();
        Buffer x(dev, 4096 * sizeof(float)), out(dev, sizeof(float));
        fill(s, x, static_cast<float>(t));
        sum(s, out, x);
        if (download_all(s, out)[0] == 4096.0f * static_cast<float>(t)) ok.fetch_add(1);
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok.load(), 4) << to_string(policy);
  }
}

TEST_F(CudaRuntime, AClosedDeviceRefusesWork) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Buffer x(dev, 64, lease.stream());
  fill(lease.stream(), x, 1.0f);
  dev->close();
  try {
    fill(lease.stream(), x, 2.0f);
    FAIL() << "work encoded on a closed device";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kDeviceClosed);
  }
}

}  // namespace
}  // namespace tandem
