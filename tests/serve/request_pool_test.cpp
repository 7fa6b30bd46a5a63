// Tests of the per-thread block caches behind requests (Note [Request pool] in
// src/serve/request_pool.h): reuse on the same thread, frees from other threads, caches that
// outlive their thread, and a many-thread hand-off with content checks (run under tsan/asan).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "serve/request_pool.h"

namespace tandem::serve::detail {
namespace {

TEST(RequestPool, ReusesABlockFreedOnTheSameThread) {
  void* a = pool_allocate(200);
  pool_deallocate(a, 200);
  void* b = pool_allocate(200);  // the same size class: the block just freed
  EXPECT_EQ(a, b);
  pool_deallocate(b, 200);
}

TEST(RequestPool, AlignsEveryBlockAndServesLargeSizesFromOperatorNew) {
  for (std::size_t bytes : {1u, 16u, 128u, 129u, 700u, 1024u, 1025u, 100000u}) {
    void* p = pool_allocate(bytes);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kPoolAlign, 0u) << bytes;
    std::memset(p, 0xab, bytes);  // the whole size is usable (asan checks)
    pool_deallocate(p, bytes);
  }
}

TEST(RequestPool, TakesBackBlocksThatOtherThreadsFreed) {
  constexpr int kBlocks = 64;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(pool_allocate(512));
  std::thread([&] {
    for (void* p : blocks) pool_deallocate(p, 512);  // remote frees
  }).join();
  // This thread's local list (at most 256 blocks a class) is used up first, then the remote
  // list is taken back: every freed block comes back within 256 + kBlocks allocations.
  std::set<void*> freed(blocks.begin(), blocks.end());
  std::vector<void*> again;
  for (int i = 0; i < 256 + kBlocks && !freed.empty(); ++i) {
    again.push_back(pool_allocate(512));
    freed.erase(again.back());
  }
  EXPECT_TRUE(freed.empty()) << freed.size() << " freed blocks did not come back";
  for (void* p : again) pool_deallocate(p, 512);
}

TEST(RequestPool, BlocksOutliveTheThreadThatAllocatedThem) {
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 32; ++i) {
      void* p = pool_allocate(256);
      std::memset(p, i, 256);
      blocks.push_back(p);
    }
  }).join();  // its cache is now an orphan
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(static_cast<unsigned char*>(blocks[i])[255], static_cast<unsigned char>(i));
    pool_deallocate(blocks[i], 256);  // frees into the orphan
  }
  // A new thread adopts a cache (perhaps that one) and allocates from it.
  std::thread([] {
    std::vector<void*> mine;
    for (int i = 0; i < 64; ++i) mine.push_back(pool_allocate(256));
    for (void* p : mine) pool_deallocate(p, 256);
  }).join();
}

#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_TEST_ASAN 1
#endif
#endif
#ifdef TANDEM_TEST_ASAN
TEST(RequestPool, AddressSanitizerReportsAUseOfACachedBlock) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<volatile char*>(pool_allocate(200));
        pool_deallocate(const_cast<char*>(p), 200);
        p[8] = 1;
      },
      "use-after-poison");
}
#endif

TEST(RequestPool, WorksWithAllocateShared) {
  struct Big {
    std::array<std::uint64_t, 80> v{};
  };
  std::weak_ptr<Big> weak;
  {
    auto p = std::allocate_shared<Big>(PoolAllocator<Big>{});
    p->v[79] = 7;
    weak = p;
    std::thread([p] { EXPECT_EQ(p->v[79], 7u); }).join();
  }
  EXPECT_TRUE(weak.expired());
}

// Producers allocate blocks, fill them with a pattern and hand them to random consumers through
// mailboxes; consumers check the pattern and free them (remote frees). Producers exit and new
// ones start (adopting orphaned caches) while blocks are in flight.
void hand_off(int threads, std::uint64_t seed) {
  SCOPED_TRACE("threads " + std::to_string(threads) + ", seed " + std::to_string(seed));
  struct Mailbox {
    std::mutex mu;
    std::vector<std::pair<unsigned char*, std::size_t>> items;
  };
  std::vector<Mailbox> boxes(static_cast<std::size_t>(threads));
  std::atomic<int> producing{threads};
  std::atomic<long> bad{0};
  auto drain = [&](Mailbox& box) {
    std::vector<std::pair<unsigned char*, std::size_t>> got;
    {
      std::lock_guard<std::mutex> lock(box.mu);
      got.swap(box.items);
    }
    for (auto [p, n] : got) {
      const unsigned char want = static_cast<unsigned char>(n * 31);
      if (p[0] != want || p[n - 1] != want) bad.fetch_add(1);
      pool_deallocate(p, n);
    }
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int generation = 0; generation < 3; ++generation) {
        // A fresh thread per generation: its cache is given up at exit and adopted.
        std::thread([&, t, generation] {
          std::mt19937_64 rng(seed + static_cast<std::uint64_t>(t * 16 + generation));
          const int per_thread = std::clamp(48000 / threads, 500, 4000);
          for (int i = 0; i < per_thread; ++i) {
            const std::size_t n = 1 + rng() % 1100;
            auto* p = static_cast<unsigned char*>(pool_allocate(n));
            std::memset(p, static_cast<unsigned char>(n * 31), n);
            auto& box = boxes[rng() % boxes.size()];
            {
              std::lock_guard<std::mutex> lock(box.mu);
              box.items.emplace_back(p, n);
            }
            if (i % 64 == 0) drain(boxes[static_cast<std::size_t>(t)]);
          }
        }).join();
      }
      producing.fetch_sub(1);
      while (producing.load() > 0) {
        drain(boxes[static_cast<std::size_t>(t)]);
        std::this_thread::yield();
      }
      drain(boxes[static_cast<std::size_t>(t)]);
    });
  }
  for (auto& t : ts) t.join();
  for (auto& box : boxes) drain(box);
  EXPECT_EQ(bad.load(), 0);
}

TEST(RequestPool, HandsBlocksBetweenThreadsIntact) {
  const std::uint64_t seed = std::random_device{}();
  std::printf("RequestPool seed %llu\n", static_cast<unsigned long long>(seed));
  for (int threads : {1, 2, 4, 8, 64}) hand_off(threads, seed);
}

}  // namespace
}  // namespace tandem::serve::detail
