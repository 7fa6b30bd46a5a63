// Stress tests of BatchQueue (label `stress`; also run under the tsan and asan presets): every
// request completes exactly once, with its own output rows checked against a direct forward,
// under many submitting threads, a queue 10x over capacity, timeouts expiring while batches run,
// stop() racing submissions, and a model that fails some batches; the counts always add up.
// Thread counts 1..256; seeds printed (replay with SERVE_TEST_SEED=...).
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <future>
#include <map>
#include <random>
#include <thread>

#include "test_model.h"
#include "tandem/serve/batch_queue.h"

namespace tandem::serve {
namespace {

using testing::TestModel;
using namespace std::chrono_literals;

std::shared_ptr<Device> cpu() { return Device::get("cpu"); }

// Requests per submitting thread: enough for ~`total` in all, at least `min_each`.
int per_thread(int threads, int total, int min_each) {
  const int t = testing::under_sanitizer() ? total / 4 : total;
  return std::max(min_each, t / threads);
}

// One slot per request id: how it ended, checked for exactly-once delivery.
struct Slot {
  std::atomic<int> deliveries{0};
  std::int64_t rows = 0;
  bool submitted = false;
  bool ok = false;
  std::optional<ErrorKind> kind;
  std::string what;
  nn::HostTensor out;
};

class Ledger {
 public:
  explicit Ledger(std::size_t n) : slots_(n) {}
  Slot& operator[](std::int64_t id) { return slots_[static_cast<std::size_t>(id)]; }
  std::size_t size() const { return slots_.size(); }

  void record(std::int64_t id, Result<nn::HostTensor>&& r) {
    Slot& s = (*this)[id];
    if (s.deliveries.fetch_add(1) != 0) return;  // counted; checked later
    if (r.ok()) {
      s.ok = true;
      s.out = std::move(r.value);
    } else {
      try {
        std::rethrow_exception(r.error);
      } catch (const Error& e) {
        s.kind = e.kind();
        s.what = e.what();
      } catch (const std::exception& e) {
        s.what = e.what();
      }
    }
  }

  // submit(q, m, id, rows, options, pending): odd ids by callback, even ids by future (kept in
  // `pending`, resolved by drain()).
  void submit(BatchQueue& q, const TestModel& m, std::int64_t id, std::int64_t rows,
              SubmitOptions so, std::vector<std::pair<std::int64_t, std::future<nn::HostTensor>>>& pending,
              std::atomic<int>& callbacks_in_flight) {
    (*this)[id].rows = rows;
    (*this)[id].submitted = true;
    if (id % 2 == 1) {
      callbacks_in_flight.fetch_add(1);
      q.submit(m.input(id, rows), [this, id, &callbacks_in_flight](Result<nn::HostTensor> r) {
        record(id, std::move(r));
        callbacks_in_flight.fetch_sub(1);
      }, so);
    } else {
      pending.emplace_back(id, q.submit(m.input(id, rows), so));
    }
  }

  void drain(std::vector<std::pair<std::int64_t, std::future<nn::HostTensor>>>& pending,
             std::atomic<int>& callbacks_in_flight) {
    for (auto& [id, f] : pending) {
      if (f.wait_for(60s) != std::future_status::ready) {
        ADD_FAILURE() << "request " << id << " never completed";
        continue;
      }
      Result<nn::HostTensor> r;
      try {
        r.value = f.get();
      } catch (...) {
        r.error = std::current_exception();
      }
      record(id, std::move(r));
    }
    pending.clear();
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (callbacks_in_flight.load() > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50us);
    }
    EXPECT_EQ(callbacks_in_flight.load(), 0) << "callbacks never called";
  }

  // run_client(q, m, t, each, window, request): client thread t's loop. Submits ids t * each ..
  // t * each + each - 1, request(id) giving {rows, options}; drains whenever `window` requests
  // are outstanding (0: open loop, everything at once), and at the end.
  template <class Request>
  void run_client(BatchQueue& q, const TestModel& m, int t, int each, int window,
                  Request request) {
    std::vector<std::pair<std::int64_t, std::future<nn::HostTensor>>> pending;
    std::atomic<int> in_flight{0};
    for (int j = 0; j < each; ++j) {
      const std::int64_t id = static_cast<std::int64_t>(t) * each + j;
      const auto [rows, options] = request(id);
      submit(q, m, id, rows, options, pending, in_flight);
      if (window > 0 && static_cast<int>(pending.size()) + in_flight.load() >= window) {
        drain(pending, in_flight);
      }
    }
    drain(pending, in_flight);
  }

  // check(): every submitted request delivered exactly once; completed ones carry their own rows
  // (checked against a direct forward of their input); returns outcome counts by kind.
  std::map<std::string, int> check(const TestModel& m) {
    TestModel ref(m.in(), m.out());
    auto dev = cpu();
    std::map<std::string, int> counts;
    for (std::size_t id = 0; id < slots_.size(); ++id) {
      Slot& s = slots_[id];
      if (!s.submitted) continue;
      EXPECT_EQ(s.deliveries.load(), 1) << "request " << id << " delivered "
                                        << s.deliveries.load() << " times";
      if (s.ok) {
        ++counts["completed"];
        const auto in = m.input(static_cast<std::int64_t>(id), s.rows);
        const auto want = testing::direct_forward(ref, dev, in);
        EXPECT_EQ(s.out.shape, (nn::Shape{static_cast<std::size_t>(s.rows),
                                          static_cast<std::size_t>(m.out())}))
            << "request " << id;
        EXPECT_EQ(s.out.values, want) << "request " << id << " got rows that are not its own";
      } else if (s.kind) {
        ++counts[std::string(to_string(*s.kind))];
      } else {
        ADD_FAILURE() << "request " << id << " ended with a non-tandem error: " << s.what;
      }
    }
    return counts;
  }

 private:
  std::vector<Slot> slots_;
};

void expect_counts_add_up(const BatchQueueMetrics& mt, const std::map<std::string, int>& seen) {
  EXPECT_EQ(mt.submitted, mt.completed + mt.rejected + mt.timed_out + mt.failed + mt.cancelled);
  auto get = [&](const char* k) {
    auto it = seen.find(k);
    return it == seen.end() ? 0u : static_cast<std::uint64_t>(it->second);
  };
  EXPECT_EQ(mt.completed, get("completed"));
  EXPECT_EQ(mt.timed_out, get("timeout"));
  EXPECT_EQ(mt.cancelled, get("cancelled"));
  EXPECT_EQ(mt.rejected, get("queue_full") + get("invalid_argument"));
  EXPECT_EQ(mt.failed, get("kernel"));
  std::printf("  submitted %llu: completed %llu, rejected %llu, timed out %llu, failed %llu, "
              "cancelled %llu; %llu batches, avg batch %.2f rows; queue p50/p99 %.3f/%.3f ms\n",
              (unsigned long long)mt.submitted, (unsigned long long)mt.completed,
              (unsigned long long)mt.rejected, (unsigned long long)mt.timed_out,
              (unsigned long long)mt.failed, (unsigned long long)mt.cancelled,
              (unsigned long long)mt.batches, mt.avg_batch_size(), mt.queue_time.p50_ms,
              mt.queue_time.p99_ms);
}

// run_clients(threads, each, body): `threads` threads, each calling body(thread, rng).
template <class Body>
void run_clients(int threads, std::uint64_t seed, Body body) {
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<std::uint64_t>(t) * 7919);
      body(t, rng);
    });
  }
  for (auto& t : ts) t.join();
}

// Each stress test runs on one queue (shards = 1) and on a sharded one (Note [Batch queue shards]:
// the same guarantees per shard; sharded() gives every shard an executor).
struct StressParam {
  int threads;
  int shards;
};
BatchQueueOptions sharded(BatchQueueOptions o, int shards) {
  o.shards = shards;
  o.instances = std::max(o.instances, shards);
  return o;
}
// queue_for(m, o, graphs): a queue over m's forward function, or, with `graphs`, over m as a
// model with graph batching (Note [Graph batching]: batches gathered into fixed staging, each a
// replay of its bucket's graph).
std::unique_ptr<BatchQueue> queue_for(TestModel& m, BatchQueueOptions o, bool graphs) {
  if (!graphs) return std::make_unique<BatchQueue>(m.fn(), cpu(), std::move(o));
  o.graphs = true;
  return std::make_unique<BatchQueue>(std::make_shared<testing::TestModelAsModel>(cpu(), m),
                                      std::move(o));
}

std::string stress_name(const ::testing::TestParamInfo<StressParam>& info) {
  return std::to_string(info.param.threads) + "threads" +
         (info.param.shards > 1 ? std::to_string(info.param.shards) + "shards" : "");
}

class BatchQueueStress : public ::testing::TestWithParam<StressParam> {};
INSTANTIATE_TEST_SUITE_P(Threads, BatchQueueStress,
                         ::testing::Values(StressParam{1, 1}, StressParam{2, 1}, StressParam{4, 1},
                                           StressParam{8, 1}, StressParam{64, 1},
                                           StressParam{256, 1}),
                         stress_name);
INSTANTIATE_TEST_SUITE_P(Shards, BatchQueueStress,
                         ::testing::Values(StressParam{4, 3}, StressParam{64, 3},
                                           StressParam{256, 4}),
                         stress_name);

void every_request_completes_exactly_once(const StressParam& param, bool graphs) {
  const int threads = param.threads;
  const auto seed = testing::test_seed();
  const int each = per_thread(threads, 4000, 8);
  TestModel m(16, 8);
  auto q = queue_for(m,
                     sharded({.max_batch_size = 32, .preferred_batch_sizes = {8, 16, 32},
                              .max_queue_delay = 100us, .priority_levels = 3, .instances = 2},
                             param.shards),
                     graphs);
  Ledger ledger(static_cast<std::size_t>(threads * each));
  run_clients(threads, seed, [&](int t, std::mt19937_64& rng) {
    const int window = 1 + static_cast<int>(rng() % 8);  // closed loop: 1..8 in flight
    ledger.run_client(*q, m, t, each, window, [&](std::int64_t) {
      const auto rows = 1 + static_cast<std::int64_t>(rng() % 3);
      return std::pair{rows, SubmitOptions{.priority = static_cast<int>(rng() % 3)}};
    });
  });
  q->stop();
  const auto counts = ledger.check(m);
  EXPECT_EQ(counts.size(), 1u) << "only completions expected";
  const auto mt = q->metrics();
  EXPECT_EQ(mt.completed, static_cast<std::uint64_t>(threads * each));
  expect_counts_add_up(mt, counts);
}

TEST_P(BatchQueueStress, EveryRequestCompletesExactlyOnceWithItsOwnRows) {
  every_request_completes_exactly_once(GetParam(), /*graphs=*/false);
}

TEST_P(BatchQueueStress, WithGraphBatchingEveryRequestCompletesExactlyOnceWithItsOwnRows) {
  every_request_completes_exactly_once(GetParam(), /*graphs=*/true);
}

// Bursts separated by idle gaps: the executors go to sleep between bursts, and each burst's
// fast-path pushes must wake one (Note [Batch queue intake]: one submitter per round takes the
// wake token; executors give it back before every look at the intake). A lost wake-up leaves a
// request in the intake with every executor asleep: its future never becomes ready (30 s is
// not a latency bound, it is "never"; a burst normally completes in well under a millisecond).
// A smoke test: the one lost wake-up found so far (a token kept across a re-wait) needs a
// submitter preempted between its push and its read of the idle count, which this test did not
// hit in 6 runs with that bug put back; specs/batch_queue.pml catches it
// (BUG_WAKE_TOKEN_KEPT_ON_REWAIT).
TEST_P(BatchQueueStress, BurstsAfterIdleGapsAllComplete) {
  const int threads = GetParam().threads;
  const auto seed = testing::test_seed();
  const int rounds = per_thread(threads, 1200, 4);
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), sharded({.max_batch_size = 8, .instances = 4}, GetParam().shards));
  std::atomic<int> stranded{0}, wrong{0};
  run_clients(threads, seed, [&](int t, std::mt19937_64& rng) {
    for (int round = 0; round < rounds; ++round) {
      const int burst = 1 + static_cast<int>(rng() % 4);
      std::vector<std::pair<nn::HostTensor, std::future<nn::HostTensor>>> fs;
      for (int k = 0; k < burst; ++k) {
        const std::int64_t id = (static_cast<std::int64_t>(t) * 100000 + round) * 4 + k;
        nn::HostTensor in = m.input(id, 1);
        auto f = q.submit(in);
        fs.emplace_back(std::move(in), std::move(f));
      }
      for (auto& [in, f] : fs) {
        if (f.wait_for(30s) != std::future_status::ready) {
          ++stranded;
          return;  // the queue's stop() below completes it (drain), so the test ends
        }
        if (f.get().values != m.reference(in.values)) ++wrong;
      }
      // Idle gap: long enough for the executors to go back to sleep, sometimes none at all.
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    }
  });
  q.stop();
  EXPECT_EQ(stranded.load(), 0) << "requests stranded in the intake (lost wake-up)";
  EXPECT_EQ(wrong.load(), 0);
  const auto mt = q.metrics();
  EXPECT_EQ(mt.submitted, mt.completed);
}

TEST_P(BatchQueueStress, QueueTenTimesOverCapacityRejectsTheRestAndLosesNothing) {
  const int threads = GetParam().threads;
  const auto seed = testing::test_seed();
  constexpr std::size_t kCapacity = 16;
  const int total = static_cast<int>(kCapacity) * 10 * std::max(1, threads / 8);
  const int each = std::max(1, total / threads);
  TestModel m(16, 8);
  m.delay = 500us;  // each batch takes a while: the queue fills
  BatchQueue q(m.fn(), cpu(),
               sharded({.max_batch_size = 4, .max_queue_size = kCapacity,
                        .overflow = Overflow::kReject},
                       GetParam().shards));
  Ledger ledger(static_cast<std::size_t>(threads * each));
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> max_queued{0};
  std::thread monitor([&] {
    while (!done.load()) {
      max_queued = std::max<std::uint64_t>(max_queued.load(), q.metrics().queued);
      std::this_thread::sleep_for(100us);
    }
  });
  run_clients(threads, seed, [&](int t, std::mt19937_64& rng) {
    ledger.run_client(q, m, t, each, /*window=*/0, [&](std::int64_t) {  // open loop: all at once
      return std::pair{1 + static_cast<std::int64_t>(rng() % 2), SubmitOptions{}};
    });
  });
  done = true;
  monitor.join();
  q.stop();
  const auto counts = ledger.check(m);
  EXPECT_GT(counts.count("queue_full") ? counts.at("queue_full") : 0, 0);
  EXPECT_LE(max_queued.load(), kCapacity);
  expect_counts_add_up(q.metrics(), counts);
}

TEST_P(BatchQueueStress, TimeoutsExpireWhileBatchesRunAndExpiredRequestsNeverRun) {
  const int threads = GetParam().threads;
  const auto seed = testing::test_seed();
  const int each = per_thread(threads, 1500, 6);
  TestModel m(16, 8);
  m.delay = 1ms;
  BatchQueue q(m.fn(), cpu(),
               sharded({.max_batch_size = 8, .max_queue_delay = 200us}, GetParam().shards));
  Ledger ledger(static_cast<std::size_t>(threads * each));
  run_clients(threads, seed, [&](int t, std::mt19937_64& rng) {
    ledger.run_client(q, m, t, each, /*window=*/4, [&](std::int64_t) {
      const auto timeout = std::chrono::microseconds(100 + rng() % 5000);
      return std::pair{std::int64_t{1}, SubmitOptions{.timeout = timeout}};
    });
  });
  q.stop();
  const auto counts = ledger.check(m);
  const auto ran = m.ran_ids();
  for (std::size_t id = 0; id < ledger.size(); ++id) {
    const Slot& s = ledger[static_cast<std::int64_t>(id)];
    if (s.kind == ErrorKind::kTimeout) {
      EXPECT_EQ(ran.count(static_cast<std::int64_t>(id)), 0u) << "timed-out request " << id << " ran";
    }
    if (s.ok) {
      EXPECT_EQ(ran.count(static_cast<std::int64_t>(id)), 1u);
    }
  }
  if (threads >= 8) {
    EXPECT_GT(counts.count("timeout") ? counts.at("timeout") : 0, 0) << "load too light to test";
  }
  expect_counts_add_up(q.metrics(), counts);
}

class BatchQueueStopRace : public ::testing::TestWithParam<std::tuple<StressParam, StopMode>> {};
INSTANTIATE_TEST_SUITE_P(
    Threads, BatchQueueStopRace,
    ::testing::Combine(::testing::Values(StressParam{1, 1}, StressParam{4, 1}, StressParam{8, 1},
                                         StressParam{64, 1}, StressParam{256, 1},
                                         StressParam{8, 2}, StressParam{64, 3}),
                       ::testing::Values(StopMode::kDrain, StopMode::kCancel)),
    [](const auto& info) {
      const StressParam p = std::get<0>(info.param);
      return std::to_string(p.threads) + "threads" +
             (p.shards > 1 ? std::to_string(p.shards) + "shards" : "") +
             (std::get<1>(info.param) == StopMode::kDrain ? "Drain" : "Cancel");
    });

TEST_P(BatchQueueStopRace, StopRacingSubmissionsLeavesNoFutureUnfulfilled) {
  const int threads = std::get<0>(GetParam()).threads;
  const int shards = std::get<0>(GetParam()).shards;
  const StopMode mode = std::get<1>(GetParam());
  const auto seed = testing::test_seed();
  const int each = per_thread(threads, 2000, 10);
  TestModel m(16, 8);
  m.delay = 200us;
  BatchQueue q(m.fn(), cpu(),
               sharded({.max_batch_size = 8, .max_queue_size = 64, .overflow = Overflow::kBlock,
                        .instances = 2},
                       shards));
  Ledger ledger(static_cast<std::size_t>(threads * each));
  std::mt19937_64 rng(seed);
  const auto stop_after = std::chrono::microseconds(500 + rng() % 20000);
  std::thread stopper([&] {
    std::this_thread::sleep_for(stop_after);
    q.stop(mode);
  });
  run_clients(threads, seed, [&](int t, std::mt19937_64& r) {
    ledger.run_client(q, m, t, each, /*window=*/8, [&](std::int64_t) {
      return std::pair{1 + static_cast<std::int64_t>(r() % 2), SubmitOptions{}};
    });
  });
  stopper.join();
  const auto counts = ledger.check(m);
  for (const auto& [kind, n] : counts) {
    EXPECT_TRUE(kind == "completed" || kind == "cancelled") << n << " x " << kind;
  }
  expect_counts_add_up(q.metrics(), counts);
  std::printf("  stop after %lld us\n", static_cast<long long>(stop_after.count()));
}

// With `graphs` every batch size is a bucket (preferred sizes 1..16): no padding rows, whose
// stale ids would show in the model's record of a failed batch.
void a_model_that_throws_fails_exactly_those_batches(const StressParam& param, bool graphs) {
  const int threads = param.threads;
  const auto seed = testing::test_seed();
  const int each = per_thread(threads, 3000, 8);
  TestModel m(16, 8);
  m.fault = threads % 2 ? TestModel::Fault::kThrowInKernel : TestModel::Fault::kThrowInForward;
  m.poisoned = [](std::int64_t id) { return id % 23 == 5; };
  BatchQueueOptions o{.max_batch_size = 16, .instances = 2};
  if (graphs) {
    for (std::int64_t b = 1; b <= o.max_batch_size; ++b) o.preferred_batch_sizes.push_back(b);
  }
  auto q = queue_for(m, sharded(std::move(o), param.shards), graphs);
  Ledger ledger(static_cast<std::size_t>(threads * each));
  run_clients(threads, seed, [&](int t, std::mt19937_64& rng) {
    ledger.run_client(*q, m, t, each, /*window=*/4, [&](std::int64_t) {
      return std::pair{1 + static_cast<std::int64_t>(rng() % 2), SubmitOptions{}};
    });
  });
  q->stop();
  const auto counts = ledger.check(m);
  std::set<std::int64_t> in_failed_batch;
  for (const auto& b : m.failed_batches()) in_failed_batch.insert(b.begin(), b.end());
  for (std::size_t id = 0; id < ledger.size(); ++id) {
    const Slot& s = ledger[static_cast<std::int64_t>(id)];
    const bool poison = m.poisoned(static_cast<std::int64_t>(id));
    if (poison) {
      EXPECT_EQ(s.kind, ErrorKind::kKernel) << "poisoned request " << id;
    }
    if (s.kind == ErrorKind::kKernel) {
      EXPECT_EQ(in_failed_batch.count(static_cast<std::int64_t>(id)), 1u) << id;
      EXPECT_NE(s.what.find("poisoned batch"), std::string::npos) << s.what;
    }
    if (s.ok) {
      EXPECT_EQ(in_failed_batch.count(static_cast<std::int64_t>(id)), 0u) << id;
    }
  }
  EXPECT_GT(counts.count("completed") ? counts.at("completed") : 0, 0);
  expect_counts_add_up(q->metrics(), counts);
}

TEST_P(BatchQueueStress, AModelThatThrowsOnSomeBatchesFailsExactlyThoseBatches) {
  a_model_that_throws_fails_exactly_those_batches(GetParam(), /*graphs=*/false);
}

// The same through graph batching: a batch that fails in its replay fails alone, and the
// executor's staging and graphs serve the next batch.
TEST_P(BatchQueueStress, WithGraphBatchingAModelThatThrowsOnSomeBatchesFailsExactlyThoseBatches) {
  a_model_that_throws_fails_exactly_those_batches(GetParam(), /*graphs=*/true);
}

TEST(BatchQueuePriorities, UnderLoadHighPriorityWaitsLessThanLowPriority) {
  // 14 low-priority clients keep 4 requests each in flight: the queue is always full of them.
  // 2 high-priority clients send one request at a time. Strict priority puts each high request
  // into the next batch; the low ones wait behind ~56 others.
  const auto seed = testing::test_seed();
  const int threads = 16, high_clients = 2;
  const int each = testing::under_sanitizer() ? 30 : 100;
  TestModel m(16, 8);
  m.delay = 300us;
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 4, .priority_levels = 2});
  std::vector<std::vector<double>> latency_ms(2);
  std::mutex mu;
  run_clients(threads, seed, [&](int t, std::mt19937_64&) {
    const int prio = t < high_clients ? 0 : 1;
    const std::size_t window = prio == 0 ? 1 : 4;
    std::vector<double> mine;
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::future<nn::HostTensor>>> pending;
    auto collect = [&] {
      (void)pending.front().second.get();
      mine.push_back(std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - pending.front().first).count());
      pending.pop_front();
    };
    for (int j = 0; j < each; ++j) {  // the highs finish well before the lows
      pending.emplace_back(std::chrono::steady_clock::now(),
                           q.submit(m.input(t * 100000 + j, 1), {.priority = prio}));
      if (pending.size() >= window) collect();
    }
    while (!pending.empty()) collect();
    std::lock_guard<std::mutex> l(mu);
    auto& v = latency_ms[static_cast<std::size_t>(prio)];
    v.insert(v.end(), mine.begin(), mine.end());
  });
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const double hi = median(latency_ms[0]), lo = median(latency_ms[1]);
  const auto mt = q.metrics();
  std::printf("  median latency: high %.3f ms (%zu requests), low %.3f ms (%zu requests)\n", hi,
              latency_ms[0].size(), lo, latency_ms[1].size());
  EXPECT_LT(hi * 2, lo) << "high-priority requests should wait far less";
  EXPECT_EQ(mt.completed, mt.submitted);
}

}  // namespace
}  // namespace tandem::serve
