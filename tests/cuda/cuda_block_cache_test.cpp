// Stream block caches on the GPU (Note [Stream block cache] in src/backends/cuda/block_cache.h):
// a stream reuses a block of the same size freed on it without the pool; not while it captures
// a graph; not with TANDEM_CUDA_BLOCK_CACHE=0; out of memory drains every stream's cache.
#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_stream.h"
#include "gpu_test_util.h"
#include "tandem/buffer.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"

namespace tandem {
namespace {

using backends::cuda::CudaDevice;
using backends::cuda::CudaStream;
using testing::download_all;

CudaStream& cuda_stream(Stream& s) { return static_cast<CudaStream&>(s.impl()); }

// fill_with(dev, s, b, v): b's floats set to v on s.
void fill_with(const std::shared_ptr<Device>& dev, Stream& s, const Buffer& b, float v) {
  Encoder enc(s);
  dev->kernels().fill(enc, static_cast<float*>(b.data()), b.size_bytes() / sizeof(float), v);
}

class CudaBlockCache : public testing::GpuTest<> {};

TEST_F(CudaBlockCache, AStreamReusesABlockOfTheSameSizeWithoutThePool) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  CudaDevice& cd = cuda_stream(s).device();
  constexpr std::size_t kBytes = std::size_t{3} << 20;
  void* first = nullptr;
  {
    Buffer b(dev, kBytes, s);
    first = b.data();
    fill_with(dev, s, b, 1.0f);
  }
  s.synchronize();
  EXPECT_GE(cd.cached_bytes(), kBytes);
  const std::uint64_t used = cd.pool_stats().used_current;
  const auto frees = dev->memory_stats().frees;
  {
    Buffer again(dev, kBytes, s);
    EXPECT_EQ(again.data(), first);
    EXPECT_EQ(cd.pool_stats().used_current, used);  // no new pool allocation
    fill_with(dev, s, again, 2.0f);
    for (float v : download_all(s, again)) ASSERT_EQ(v, 2.0f);
    Buffer other(dev, kBytes + 256, s);  // another size: from the pool
    EXPECT_NE(other.data(), first);
    EXPECT_EQ(cd.pool_stats().used_current, used + kBytes + 256);
  }
  EXPECT_EQ(dev->memory_stats().frees, frees + 2);  // tandem's stats count cached frees as frees
}

TEST_F(CudaBlockCache, OffItFreesIntoThePool) {
  RuntimeConfig config = RuntimeConfig::process();
  config.cuda_block_cache = false;
  auto dev = testing::open_cuda(config);
  Stream& s = dev->current_stream();
  CudaDevice& cd = cuda_stream(s).device();
  const std::uint64_t before = cd.pool_stats().used_current;
  { Buffer b(dev, std::size_t{1} << 20, s); }
  s.synchronize();
  EXPECT_EQ(cd.cached_bytes(), 0u);
  EXPECT_EQ(cd.pool_stats().used_current, before);
}

TEST_F(CudaBlockCache, AGraphTakesNoCachedBlockAndItsFreesAreNotCached) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  CudaStream& cs = cuda_stream(s);
  constexpr std::size_t kFloats = 4096, kBytes = kFloats * sizeof(float);
  const Buffer out(dev, kBytes, s);  // the graph's output, from the pool
  void* cached = nullptr;
  {
    const Buffer b(dev, kBytes, s);  // another block of the same size, cached when freed
    cached = b.data();
  }
  ASSERT_NE(cached, out.data());
  ASSERT_EQ(cs.block_cache().cached_bytes(), kBytes);
  for (int replay = 0; replay < 3; ++replay) {
    run_graph(s, 77, [&] {
      const Buffer tmp(dev, kBytes, s);  // from the graph's arena, not the cache
      EXPECT_NE(tmp.data(), cached);
      Encoder enc(s);
      dev->kernels().fill(enc, static_cast<float*>(tmp.data()), kFloats, 5.0f);
      dev->kernels().copy(enc, out.data(), tmp.data(), kBytes);
    });
    s.synchronize();
    const auto host = download_all(s, out);
    for (std::size_t i = 0; i < kFloats; ++i) ASSERT_EQ(host[i], 5.0f) << replay;
  }
  const auto info = cs.graph_info(77);
  ASSERT_TRUE(info.has_value());
  EXPECT_GE(info->arena_bytes, kBytes);
  EXPECT_EQ(info->memory_nodes, 0u);
  // The cache kept its blocks through the captures; eager work gets them back.
  EXPECT_EQ(cs.block_cache().cached_bytes(), kBytes);
  const Buffer back(dev, kBytes, s);
  EXPECT_EQ(back.data(), cached);
}

// Fills most of the card (runs alone: RUN_SERIAL in tests/cuda/CMakeLists.txt). Blocks cached on
// one stream hold pool memory no other stream may take: an allocation that needs them drains
// every stream's cache and succeeds.
TEST_F(CudaBlockCache, OutOfMemoryDrainsEveryStreamsCache) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();
  CudaDevice& cd = cuda_stream(s).device();
  std::size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  const std::size_t big = free_b / 10 * 4 / 256 * 256;  // two of them: 80% of what is free
  std::thread other([&] {  // its own stream: the blocks are cached there
    Stream& t = dev->current_stream();
    EXPECT_NE(&t, &s);
    Buffer a(dev, big, t);
    Buffer b(dev, big, t);
    fill_with(dev, t, a, 1.0f);
    fill_with(dev, t, b, 1.0f);
    t.synchronize();
  });
  other.join();
  ASSERT_GE(cd.cached_bytes(), 2 * big);
  try {
    Buffer mine(dev, big, s);  // only fits once the other stream's blocks are back in the pool
    fill_with(dev, s, mine, 3.0f);
    s.synchronize();
  } catch (const Error& e) {
    FAIL() << e.what();
  }
  EXPECT_LT(cd.cached_bytes(), 2 * big);
}

}  // namespace
}  // namespace tandem
