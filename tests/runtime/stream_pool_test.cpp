#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tandem/encoder.h"
#include "test_util.h"

namespace tandem {
namespace {
using testing::open_cpu;
using testing::throws_error;
using Clock = std::chrono::steady_clock;

TEST(StreamPool, LeasesTheLowestFreeWorkerStreamAndNeverStreamZero) {
  auto d = open_cpu(/*pool_size=*/4);
  auto a = d->streams().lease();
  auto b = d->streams().lease();
  EXPECT_EQ(a.index(), 1);
  EXPECT_EQ(b.index(), 2);
  EXPECT_EQ(d->streams().leased(), 2);
  EXPECT_EQ(d->default_stream().index(), 0);
}

TEST(StreamPool, AReturnedLeaseIsLeasableAgain) {
  auto d = open_cpu(/*pool_size=*/2);
  { auto a = d->streams().lease(); EXPECT_EQ(d->streams().leased(), 1); }
  EXPECT_EQ(d->streams().leased(), 0);
  auto again = d->streams().lease();
  EXPECT_EQ(again.index(), 1);
}

TEST(StreamPool, FailsAtOnceWhenExhaustedAndWaitIsZero) {
  auto d = open_cpu(/*pool_size=*/3, /*wait_ms=*/0);
  auto a = d->streams().lease();
  auto b = d->streams().lease();
  EXPECT_TRUE(throws_error([&] { (void)d->streams().lease(); }, ErrorKind::kPoolExhausted,
                           {"all 2 worker streams", "2 leased", "TANDEM_STREAM_POOL_WAIT_MS=-1",
                            "TANDEM_STREAM_POOL_SIZE"}));
  // No wait happened (a timed wait names its duration in the message).
  try {
    (void)d->streams().lease();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("waited"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(d->streams().try_lease().has_value());
}

TEST(StreamPool, WaitsUpToTheTimeoutThenFailsNamingTheWait) {
  auto d = open_cpu(/*pool_size=*/2, /*wait_ms=*/80);
  auto a = d->streams().lease();
  const auto t0 = Clock::now();
  EXPECT_TRUE(throws_error([&] { (void)d->streams().lease(); }, ErrorKind::kPoolExhausted,
                           {"waited 80 ms"}));
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(80));
}

TEST(StreamPool, ATimedWaitSucceedsWhenAStreamReturnsInTime) {
  auto d = open_cpu(/*pool_size=*/2, /*wait_ms=*/5000);
  std::optional<StreamLease> held = d->streams().lease();
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    held.reset();
  });
  auto got = d->streams().lease();
  EXPECT_EQ(got.index(), 1);
  releaser.join();
}

TEST(StreamPool, WaitsForALeaseWhenWaitIsUnbounded) {
  auto d = open_cpu(/*pool_size=*/2, /*wait_ms=*/-1);
  // A thread holds the only worker stream through current_stream() and exits later: its
  // thread-exit hook returns the stream, which wakes the waiter. The lease can only succeed
  // after the holder's body has finished (the stream is returned after it), whatever the timing.
  std::atomic<bool> leased{false}, holder_done{false};
  std::thread holder([&] {
    (void)d->current_stream();
    leased = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    holder_done = true;
  });
  while (!leased) std::this_thread::yield();
  auto got = d->streams().lease();
  EXPECT_TRUE(holder_done.load());
  EXPECT_EQ(got.index(), 1);
  holder.join();
}

TEST(StreamPool, CurrentStreamIsCachedPerThreadAndDistinctAcrossThreads) {
  auto d = open_cpu();
  Stream& mine = d->current_stream();
  EXPECT_EQ(&mine, &d->current_stream());
  Stream* other = nullptr;
  std::thread t([&] { other = &d->current_stream(); });
  t.join();
  EXPECT_NE(other, &mine);
  EXPECT_EQ(d->streams().leased(), 1);  // the exited thread returned its stream
}

TEST(StreamPool, ThreadExitSynchronizesItsStreamBeforeReturningIt) {
  auto d = open_cpu();
  std::atomic<bool> ran{false};
  std::thread t([&] {
    Encoder enc(d->current_stream());
    enc.dispatch([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      ran = true;
    });
  });
  t.join();
  EXPECT_TRUE(ran.load());
  EXPECT_EQ(d->streams().leased(), 0);
}

TEST(StreamPool, PoolSizeSixtyFourLeasesSixtyThreeWorkers) {
  auto d = open_cpu(/*pool_size=*/64);
  std::vector<StreamLease> leases;
  for (int i = 0; i < 63; ++i) leases.push_back(d->streams().lease());
  EXPECT_EQ(leases.back().index(), 63);
  EXPECT_EQ(d->streams().leased(), 63);
  EXPECT_FALSE(d->streams().try_lease().has_value());
}

}  // namespace
}  // namespace tandem
