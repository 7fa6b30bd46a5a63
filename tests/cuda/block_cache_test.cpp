// BlockCache (Note [Stream block cache] in src/backends/cuda/block_cache.h): its rules, with
// made-up addresses (no GPU needed), and many threads putting and taking at once.
#include "backends/cuda/block_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace tandem::backends::cuda {
namespace {

void* addr(std::uintptr_t i) { return reinterpret_cast<void*>(i * 4096); }

TEST(CudaBlockCacheRules, HandsBackOnlyABlockOfExactlyTheSizeAskedNewestFirst) {
  BlockCache c(true);
  EXPECT_EQ(c.take(256), nullptr);
  EXPECT_EQ(c.put(addr(1), 256).p, nullptr);
  EXPECT_EQ(c.put(addr(2), 512).p, nullptr);
  EXPECT_EQ(c.put(addr(3), 256).p, nullptr);
  EXPECT_EQ(c.cached_bytes(), 1024u);
  EXPECT_EQ(c.take(768), nullptr);
  EXPECT_EQ(c.take(255), nullptr);
  EXPECT_EQ(c.take(256), addr(3));
  EXPECT_EQ(c.take(256), addr(1));
  EXPECT_EQ(c.take(256), nullptr);
  EXPECT_EQ(c.take(512), addr(2));
  EXPECT_EQ(c.cached_bytes(), 0u);
}

TEST(CudaBlockCacheRules, AFullCacheGivesUpItsOldestBlock) {
  BlockCache c(true);
  for (std::uintptr_t i = 1; i <= BlockCache::kMaxBlocks; ++i)
    EXPECT_EQ(c.put(addr(i), i).p, nullptr);
  const BlockCache::Block out = c.put(addr(100), 100);
  EXPECT_EQ(out.p, addr(1));
  EXPECT_EQ(out.bytes, 1u);
  EXPECT_EQ(c.take(1), nullptr);
  EXPECT_EQ(c.take(100), addr(100));
  EXPECT_EQ(c.take(2), addr(2));
}

TEST(CudaBlockCacheRules, OffItCachesNothingAndOnAgainItHandsBackWhatItHeld) {
  BlockCache never(false);
  const BlockCache::Block back = never.put(addr(1), 64);
  EXPECT_EQ(back.p, addr(1));
  EXPECT_EQ(back.bytes, 64u);
  EXPECT_EQ(never.take(64), nullptr);

  BlockCache c(true);
  EXPECT_EQ(c.put(addr(1), 64).p, nullptr);
  c.set_enabled(false);  // a capture
  EXPECT_EQ(c.take(64), nullptr);
  EXPECT_EQ(c.put(addr(2), 64).p, addr(2));  // freed at once, not cached
  c.set_enabled(true);
  EXPECT_EQ(c.take(64), addr(1));
  EXPECT_EQ(c.take(64), nullptr);
}

TEST(CudaBlockCacheRules, DrainEmptiesIt) {
  BlockCache c(true);
  EXPECT_EQ(c.put(addr(1), 64).p, nullptr);
  EXPECT_EQ(c.put(addr(2), 128).p, nullptr);
  const auto blocks = c.drain();
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].p, addr(1));
  EXPECT_EQ(blocks[1].p, addr(2));
  EXPECT_EQ(c.cached_bytes(), 0u);
  EXPECT_EQ(c.take(64), nullptr);
  EXPECT_TRUE(c.drain().empty());
}

TEST(CudaBlockCacheRules, ReleaseFreesEverythingUnderItsLockButNotWhileCapturing) {
  BlockCache c(true);
  EXPECT_EQ(c.put(addr(1), 64).p, nullptr);
  EXPECT_EQ(c.put(addr(2), 128).p, nullptr);
  std::vector<void*> freed;
  const auto record = [&](const std::vector<BlockCache::Block>& blocks) {
    for (const auto& b : blocks) freed.push_back(b.p);
  };
  c.set_enabled(false);  // a capture: its stream must get no free
  EXPECT_EQ(c.release(record), 0u);
  EXPECT_TRUE(freed.empty());
  c.set_enabled(true);
  EXPECT_EQ(c.release(record), 192u);
  EXPECT_EQ(freed, (std::vector<void*>{addr(1), addr(2)}));
  EXPECT_EQ(c.cached_bytes(), 0u);
  EXPECT_EQ(c.release(record), 0u);
}

// Threads put blocks of their own and take blocks of a shared size; every block is owned by one
// party at a time: a block taken twice, or lost, fails the test.
class CudaBlockCacheThreads : public ::testing::TestWithParam<int> {};

TEST_P(CudaBlockCacheThreads, NoBlockIsHandedOutTwiceOrLost) {
  const int threads = GetParam();
  constexpr int kBlocksPerThread = 4, kRounds = 2000;
  const int blocks = threads * kBlocksPerThread;
  std::vector<std::atomic<int>> owner(static_cast<std::size_t>(blocks) + 1);  // by address / 4096
  BlockCache c(true);
  std::atomic<int> in_cache{0}, errors{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<void*> held;
      for (int b = 1; b <= kBlocksPerThread; ++b) {
        held.push_back(addr(static_cast<std::uintptr_t>(t * kBlocksPerThread + b)));
      }
      for (int r = 0; r < kRounds; ++r) {
        if (!held.empty() && (r % 3 != 2)) {
          void* p = held.back();
          held.pop_back();
          owner[reinterpret_cast<std::uintptr_t>(p) / 4096].store(-1);
          in_cache.fetch_add(1);
          const BlockCache::Block out = c.put(p, 4096);
          if (out.p != nullptr) {  // evicted to us: ours now
            in_cache.fetch_sub(1);
            if (owner[reinterpret_cast<std::uintptr_t>(out.p) / 4096].exchange(t) != -1) ++errors;
            held.push_back(out.p);
          }
        } else if (void* p = c.take(4096)) {
          in_cache.fetch_sub(1);
          if (owner[reinterpret_cast<std::uintptr_t>(p) / 4096].exchange(t) != -1) ++errors;
          held.push_back(p);
        }
      }
      for (void* p : held) owner[reinterpret_cast<std::uintptr_t>(p) / 4096].store(-2);
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(errors.load(), 0);
  const auto left = c.drain();
  EXPECT_EQ(static_cast<int>(left.size()), in_cache.load());
  EXPECT_LE(left.size(), BlockCache::kMaxBlocks);
  for (const auto& b : left) {
    EXPECT_EQ(owner[reinterpret_cast<std::uintptr_t>(b.p) / 4096].exchange(-2), -1);
  }
  for (int i = 1; i <= blocks; ++i) EXPECT_EQ(owner[static_cast<std::size_t>(i)].load(), -2) << i;
}

INSTANTIATE_TEST_SUITE_P(Threads, CudaBlockCacheThreads, ::testing::Values(1, 2, 8, 64));

}  // namespace
}  // namespace tandem::backends::cuda
