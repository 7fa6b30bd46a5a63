// Unit tests of BatchQueue: merging, shapes, preferred sizes, delay, priorities, timeouts,
// overflow, stop, errors, callbacks, metrics. Executors are held with a Gate where a test needs
// a queue to fill up deterministically.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <future>
#include <random>
#include <thread>

#include "serve/graph_batch.h"
#include "serve/histogram.h"
#include "test_model.h"
#include "tandem/serve/batch_queue.h"
#include "tandem/nn/models.h"

namespace tandem::serve {
namespace {

using testing::TestModel;
using namespace std::chrono_literals;

std::shared_ptr<Device> cpu() { return Device::get("cpu"); }

void expect_rows(const TestModel& m, const nn::HostTensor& in, const nn::HostTensor& out) {
  TestModel ref(m.in(), m.out());
  const auto want = testing::direct_forward(ref, cpu(), in);
  ASSERT_EQ(out.shape, (nn::Shape{in.shape[0], static_cast<std::size_t>(m.out())}));
  ASSERT_EQ(out.values, want);  // same arithmetic, same order: bit-exact
}

// hold(q, m): submits one request and waits until its batch sits in the gate, so the next
// requests queue up behind it. Returns the held request's future.
std::future<nn::HostTensor> hold(BatchQueue& q, TestModel& m, std::int64_t id = 1000000,
                           std::int64_t rows = 1) {
  m.gate.arm();
  auto f = q.submit(m.input(id, rows));
  m.gate.wait_for_waiters(1);
  return f;
}

TEST(BatchQueue, MergesQueuedRequestsIntoOneForwardAndSlicesRowsBack) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 64});
  auto held = hold(q, m);
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(q.submit(m.input(i, 1 + i % 3)));
  m.gate.open();
  expect_rows(m, m.input(1000000, 1), held.get());
  for (int i = 0; i < 10; ++i) expect_rows(m, m.input(i, 1 + i % 3), fs[static_cast<std::size_t>(i)].get());
  const auto batches = m.batches();
  ASSERT_EQ(batches.size(), 2u);  // the held one, then all ten merged
  EXPECT_EQ(batches[1].size(), 19u);  // 4x1 + 3x2 + 3x3 rows
  const auto mt = q.metrics();
  EXPECT_EQ(mt.batches, 2u);
  EXPECT_EQ(mt.batch_rows, 20u);
  EXPECT_DOUBLE_EQ(mt.avg_batch_size(), 10.0);
  EXPECT_EQ(mt.completed, 11u);
}

TEST(BatchQueue, TensorsInTensorsOut) {
  TestModel m(8, 4);
  auto dev = cpu();
  BatchQueue q(m.fn(), dev, {});
  auto held = hold(q, m);
  std::vector<std::future<nn::Tensor>> fs;
  std::vector<nn::HostTensor> inputs;
  for (int i = 0; i < 5; ++i) {
    inputs.push_back(m.input(i, 2));
    // Computed on this thread's stream and submitted before it ran: the queue orders after it.
    nn::Tensor x = nn::Tensor::empty(dev, inputs.back().shape);
    Encoder enc(dev->current_stream());
    const auto* src = inputs.back().values.data();
    float* dst = x.data();
    const std::size_t n = x.numel();
    enc.dispatch([src, dst, n] {
      std::this_thread::sleep_for(2ms);
      std::copy(src, src + n, dst);
    });
    enc.commit();
    fs.push_back(q.submit(std::move(x)));
  }
  m.gate.open();
  (void)held.get();
  for (int i = 0; i < 5; ++i) {
    nn::Tensor out = fs[static_cast<std::size_t>(i)].get();
    expect_rows(m, inputs[static_cast<std::size_t>(i)], {"", out.shape(), out.to_host()});
  }
  // A lone tensor request runs without merge copies and still gets its own output.
  auto in = m.input(77, 3);
  nn::Tensor out = q.submit(nn::Tensor::from_host(dev, in.shape, in.values)).get();
  expect_rows(m, in, {"", out.shape(), out.to_host()});
}

TEST(BatchQueue, MixesHostAndTensorRequestsInOneBatch) {
  TestModel m(8, 4);
  auto dev = cpu();
  BatchQueue q(m.fn(), dev, {});
  auto held = hold(q, m);
  // Runs of host requests between tensor requests: H H T H T T H.
  const std::string pattern = "HHTHTTH";
  std::vector<std::future<nn::HostTensor>> hs;
  std::vector<std::future<nn::Tensor>> ts;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    auto in = m.input(static_cast<std::int64_t>(i), 1 + static_cast<std::int64_t>(i % 2));
    if (pattern[i] == 'H') {
      hs.push_back(q.submit(in));
    } else {
      ts.push_back(q.submit(nn::Tensor::from_host(dev, in.shape, in.values)));
    }
  }
  m.gate.open();
  (void)held.get();
  std::size_t h = 0, t = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    auto in = m.input(static_cast<std::int64_t>(i), 1 + static_cast<std::int64_t>(i % 2));
    if (pattern[i] == 'H') {
      auto out = hs[h++].get();
      EXPECT_EQ(out.name, in.name);
      expect_rows(m, in, out);
    } else {
      auto out = ts[t++].get();
      expect_rows(m, in, {"", out.shape(), out.to_host()});
    }
  }
  ASSERT_EQ(m.batches().size(), 2u);  // all seven in one batch
}

TEST(BatchQueue, NeverMergesRequestsOfDifferentShapes) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {});
  auto held = hold(q, m);
  std::vector<std::future<nn::HostTensor>> fs;
  std::vector<nn::HostTensor> ins;
  for (int i = 0; i < 12; ++i) {
    nn::HostTensor in = m.input(i, 2);
    if (i % 3 == 1) in.shape = nn::Shape{2, 2, 4};  // same floats per row, other sample shape
    if (i % 3 == 2) in.shape = nn::Shape{2, 1, 8};
    ins.push_back(in);
    fs.push_back(q.submit(std::move(in)));
  }
  m.gate.open();
  (void)held.get();
  for (int i = 0; i < 12; ++i) {
    auto out = fs[static_cast<std::size_t>(i)].get();
    nn::HostTensor flat = ins[static_cast<std::size_t>(i)];
    flat.shape = nn::Shape{2, 8};
    expect_rows(m, flat, out);
  }
  // Each batch is homogeneous: three shapes queued -> three batches after the held one.
  const auto shapes = m.shapes();
  ASSERT_EQ(shapes.size(), 4u);
  EXPECT_EQ(shapes[1], (nn::Shape{8, 8}));
  EXPECT_EQ(shapes[2], (nn::Shape{8, 2, 4}));
  EXPECT_EQ(shapes[3], (nn::Shape{8, 1, 8}));
}

TEST(BatchQueue, RejectsRequestsItCannotRun) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 4, .priority_levels = 2});
  auto expect_invalid = [](std::future<nn::HostTensor> f) {
    auto k = testing::error_kind(f);
    ASSERT_TRUE(k.has_value());
    EXPECT_EQ(*k, ErrorKind::kInvalidArgument);
  };
  expect_invalid(q.submit(m.input(1, 5)));                         // oversized: not split
  expect_invalid(q.submit(nn::HostTensor{"", nn::Shape{}, {1.0f}}));      // no batch dimension
  expect_invalid(q.submit(nn::HostTensor{"", nn::Shape{0, 8}, {}}));      // no rows
  expect_invalid(q.submit(nn::HostTensor{"", nn::Shape{1, 8}, std::vector<float>(3)}));  // size
  std::future<nn::Tensor> undefined = q.submit(nn::Tensor{});
  EXPECT_EQ(testing::error_kind(undefined), ErrorKind::kInvalidArgument);
  RuntimeConfig other_cfg;
  auto other = Device::open("cpu", other_cfg);
  std::future<nn::Tensor> elsewhere = q.submit(nn::Tensor::zeros(other, nn::Shape{1, 8}));
  EXPECT_EQ(testing::error_kind(elsewhere), ErrorKind::kInvalidArgument);
  expect_invalid(q.submit(m.input(2, 1), {.priority = 2}));        // no such level
  expect_invalid(q.submit(m.input(3, 1), {.priority = -1}));
  expect_invalid(q.submit(m.input(4, 1), {.timeout = 0us}));
  q.stop();
  const auto mt = q.metrics();
  EXPECT_EQ(mt.submitted, 9u);
  EXPECT_EQ(mt.rejected, 9u);
  EXPECT_EQ(mt.batches, 0u);
}

TEST(BatchQueue, BadOptionsAreConfigErrors) {
  TestModel m(8, 4);
  auto expect_config = [&](BatchQueueOptions o) {
    try {
      BatchQueue q(m.fn(), cpu(), o);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kConfig) << e.what();
    }
  };
  expect_config({.max_batch_size = 0});
  expect_config({.max_batch_size = 8, .preferred_batch_sizes = {9}});
  expect_config({.priority_levels = 0});
  expect_config({.max_queue_size = 0});
  expect_config({.instances = 0});
  expect_config({.default_timeout = 0us});
  EXPECT_THROW(BatchQueue(ForwardFn{}, cpu(), {}), Error);
}

TEST(BatchQueue, FailsWithPoolExhaustedWhenInstancesCannotAllGetAStream) {
  TestModel m(8, 4);
  RuntimeConfig cfg;
  cfg.stream_pool_size = 4;  // 3 worker streams
  auto dev = Device::open("cpu", cfg);
  try {
    BatchQueue q(m.fn(), dev, {.instances = 5});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kPoolExhausted) << e.what();
  }
  EXPECT_EQ(dev->streams().leased(), 0);  // the executors that got one gave it back
  BatchQueue ok(m.fn(), dev, {.instances = 3});
  expect_rows(m, m.input(5, 2), ok.submit(m.input(5, 2)).get());
}

TEST(BatchQueue, PreferredBatchSizesShapeTheBatches) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(),
               {.max_batch_size = 16, .preferred_batch_sizes = {4}, .max_queue_delay = 20ms});
  auto held = hold(q, m);
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(q.submit(m.input(i, 1)));
  m.gate.open();
  for (auto& f : fs) (void)f.get();
  const auto b = m.batches();
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[1].size(), 4u);  // reached the preferred size: at once
  EXPECT_EQ(b[2].size(), 4u);
  EXPECT_EQ(b[3].size(), 2u);  // below every preferred size: all of it, after the delay
}

// A head request with more rows than the largest preferred size the queue could fill, or than
// every preferred size, runs (either once made the executor spin: a target below the head's rows
// took nothing, forever).
TEST(BatchQueue, AHeadLargerThanThePreferredSizeItCouldFillStillRuns) {
  TestModel m(4, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 6, .preferred_batch_sizes = {2, 4}});
  for (const std::int64_t rows : {3, 5}) {  // below the largest preferred size (4), above it
    auto f = q.submit(m.input(rows, rows));
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "the " << rows << "-row request never ran";
    expect_rows(m, m.input(rows, rows), f.get());
  }
  EXPECT_EQ(q.metrics().batch_rows, 8u);
  q.stop(StopMode::kCancel);
}

TEST(BatchQueue, MaxQueueDelayWaitsForAFullerBatchButNotLonger) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 4, .max_queue_delay = 200ms});
  // Four at once: a full batch, dispatched without waiting for the delay.
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(q.submit(m.input(i, 1)));
  for (auto& f : fs) (void)f.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 150ms);
  // One alone waits the delay out, then runs as it is.
  const auto t1 = std::chrono::steady_clock::now();
  (void)q.submit(m.input(9, 1)).get();
  EXPECT_GE(std::chrono::steady_clock::now() - t1, 190ms);
  const auto b = m.batches();
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].size(), 4u);
  EXPECT_EQ(b[1].size(), 1u);
}

// next_batch() counts a key's queued rows without walking its FIFOs (KeyQueue::rows, kept by
// place(), take() and the timer). Requests that time out while queued leave that count; were it
// left too low, a full batch would wait out the (one hour) delay instead of running at once.
TEST(BatchQueue, AFullBatchRunsAtOnceAfterQueuedRequestsTimedOut) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 4, .max_queue_delay = std::chrono::hours(1)});
  auto held = hold(q, m, 1000000, 4);  // a full batch: runs (into the gate) at once
  auto a = q.submit(m.input(1, 1), {.timeout = 10ms});
  auto b = q.submit(m.input(2, 2), {.timeout = 10ms});
  ASSERT_EQ(a.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(b.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(testing::error_kind(a), ErrorKind::kTimeout);
  EXPECT_EQ(testing::error_kind(b), ErrorKind::kTimeout);
  std::vector<std::future<nn::HostTensor>> fs;
  fs.push_back(q.submit(m.input(3, 2)));
  fs.push_back(q.submit(m.input(4, 1)));
  fs.push_back(q.submit(m.input(5, 1)));
  m.gate.open();
  (void)held.get();
  for (auto& f : fs) ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  expect_rows(m, m.input(3, 2), fs[0].get());
  const auto batches = m.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1], (std::vector<std::int64_t>{3, 3, 4, 5}));  // one full batch of 4 rows
  EXPECT_EQ(m.ran_ids().count(1), 0u);
  EXPECT_EQ(m.ran_ids().count(2), 0u);
}

TEST(BatchQueue, HigherPriorityRunsFirstAndFifoWithinALevel) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 2, .priority_levels = 3});
  auto held = hold(q, m);
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(q.submit(m.input(100 + i, 1), {.priority = 2}));
  for (int i = 0; i < 4; ++i) fs.push_back(q.submit(m.input(200 + i, 1), {.priority = 1}));
  for (int i = 0; i < 4; ++i) fs.push_back(q.submit(m.input(i, 1), {.priority = 0}));
  m.gate.open();
  for (auto& f : fs) (void)f.get();
  const auto b = m.batches();
  ASSERT_EQ(b.size(), 7u);
  const std::vector<std::vector<std::int64_t>> want = {
      {0, 1}, {2, 3}, {200, 201}, {202, 203}, {100, 101}, {102, 103}};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(b[i + 1], want[i]) << "batch " << i + 1;
}

TEST(BatchQueue, ExpiredRequestsTimeOutWithoutRunningWhileABatchRuns) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {});
  auto held = hold(q, m);
  auto short_one = q.submit(m.input(1, 1), {.timeout = 20ms});
  auto long_one = q.submit(m.input(2, 1), {.timeout = 60s});
  // The timer completes it while the executor is still held by the gate.
  ASSERT_EQ(short_one.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(testing::error_kind(short_one), ErrorKind::kTimeout);
  m.gate.open();
  expect_rows(m, m.input(2, 1), long_one.get());
  (void)held.get();
  EXPECT_EQ(m.ran_ids().count(1), 0u);  // never run
  const auto mt = q.metrics();
  EXPECT_EQ(mt.timed_out, 1u);
  EXPECT_EQ(mt.completed, 2u);
}

TEST(BatchQueue, DefaultTimeoutAppliesToRequestsWithoutTheirOwn) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.default_timeout = 10ms});
  auto held = hold(q, m);
  auto f = q.submit(m.input(1, 1));
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(testing::error_kind(f), ErrorKind::kTimeout);
  m.gate.open();
}

TEST(BatchQueue, RejectsWhenFullUnderReject) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_queue_size = 3, .overflow = Overflow::kReject});
  auto held = hold(q, m);  // running, not queued
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(q.submit(m.input(i, 1)));
  int full = 0;
  for (int i = 3; i < 10; ++i) {
    auto& f = fs[static_cast<std::size_t>(i)];
    ASSERT_EQ(f.wait_for(0s), std::future_status::ready) << "rejected at once";
    full += testing::error_kind(f) == ErrorKind::kQueueFull;
  }
  EXPECT_EQ(full, 7);
  m.gate.open();
  for (int i = 0; i < 3; ++i) expect_rows(m, m.input(i, 1), fs[static_cast<std::size_t>(i)].get());
  EXPECT_EQ(q.metrics().rejected, 7u);
}

TEST(BatchQueue, BlocksWhenFullUnderBlockUntilRoomOrDeadline) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_queue_size = 2, .overflow = Overflow::kBlock});
  auto held = hold(q, m);
  auto a = q.submit(m.input(1, 1));
  auto b = q.submit(m.input(2, 1));
  // Full: a submit with a deadline gives up with kTimeout.
  const auto t0 = std::chrono::steady_clock::now();
  auto c = q.submit(m.input(3, 1), {.timeout = 30ms});
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 25ms);
  EXPECT_EQ(testing::error_kind(c), ErrorKind::kTimeout);
  // One without a deadline blocks until the executor makes room.
  std::atomic<bool> returned{false};
  std::future<nn::HostTensor> d;
  std::thread t([&] {
    d = q.submit(m.input(4, 1));
    returned = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load());
  m.gate.open();
  t.join();
  EXPECT_TRUE(returned.load());
  expect_rows(m, m.input(4, 1), d.get());
  expect_rows(m, m.input(1, 1), a.get());
  expect_rows(m, m.input(2, 1), b.get());
}

TEST(BatchQueue, StopCancelCompletesQueuedWithCancelledAndRunningWithResults) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {});
  auto held = hold(q, m);
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(q.submit(m.input(i, 1)));
  std::thread stopper([&] { q.stop(StopMode::kCancel); });
  for (auto& f : fs) {
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(testing::error_kind(f), ErrorKind::kCancelled);
  }
  m.gate.open();  // stop() waits for the running batch
  stopper.join();
  expect_rows(m, m.input(1000000, 1), held.get());
  EXPECT_EQ(testing::error_kind(*std::make_unique<std::future<nn::HostTensor>>(q.submit(m.input(9, 1)))),
            ErrorKind::kCancelled);  // after stop
  const auto mt = q.metrics();
  EXPECT_EQ(mt.cancelled, 6u);
  EXPECT_EQ(mt.completed, 1u);
  EXPECT_EQ(mt.submitted, mt.finished());
}

TEST(BatchQueue, StopDrainRunsEverythingQueued) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 2, .max_queue_delay = 10s});
  auto held = hold(q, m, 1000000, 2);  // a full batch: runs at once
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(q.submit(m.input(i, 1)));
  const auto t0 = std::chrono::steady_clock::now();
  std::thread stopper([&] { q.stop(StopMode::kDrain); });
  m.gate.open();
  stopper.join();  // the 10 s delay does not hold a drain back
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (int i = 0; i < 5; ++i) expect_rows(m, m.input(i, 1), fs[static_cast<std::size_t>(i)].get());
  EXPECT_EQ(q.metrics().completed, 6u);
}

TEST(BatchQueue, DestructorDrainsByDefault) {
  TestModel m(8, 4);
  std::vector<std::future<nn::HostTensor>> fs;
  {
    BatchQueue q(m.fn(), cpu(), {.max_queue_delay = 10s});
    for (int i = 0; i < 5; ++i) fs.push_back(q.submit(m.input(i, 1)));
  }
  for (int i = 0; i < 5; ++i) expect_rows(m, m.input(i, 1), fs[static_cast<std::size_t>(i)].get());
}

TEST(BatchQueue, AModelErrorFailsItsWholeBatchAndTheQueueKeepsServing) {
  for (auto fault : {TestModel::Fault::kThrowInForward, TestModel::Fault::kThrowInKernel}) {
    TestModel m(8, 4);
    m.fault = fault;
    m.poisoned = [](std::int64_t id) { return id == 13; };
    BatchQueue q(m.fn(), cpu(), {});
    auto held = hold(q, m);
    std::vector<std::future<nn::HostTensor>> fs;
    for (int i = 10; i < 16; ++i) fs.push_back(q.submit(m.input(i, 1)));
    m.gate.open();
    (void)held.get();
    for (auto& f : fs) {
      try {
        (void)f.get();
        ADD_FAILURE() << "a request of the poisoned batch completed";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kKernel);
        EXPECT_NE(std::string(e.what()).find("poisoned batch"), std::string::npos);
      }
    }
    expect_rows(m, m.input(20, 2), q.submit(m.input(20, 2)).get());  // keeps serving
    const auto mt = q.metrics();
    EXPECT_EQ(mt.failed, 6u);
    EXPECT_EQ(mt.completed, 2u);
  }
}

TEST(BatchQueue, MalformedForwardOutputFailsTheBatch) {
  auto dev = cpu();
  ForwardFn bad = [dev](const nn::Tensor& x) {
    return nn::Tensor::zeros(dev, nn::Shape{x.dim(0) + 1, 4});
  };
  BatchQueue q(bad, dev, {});
  auto f = q.submit(nn::HostTensor{"", nn::Shape{1, 4}, std::vector<float>(4)});
  EXPECT_EQ(testing::error_kind(f), ErrorKind::kInvalidArgument);
}

TEST(BatchQueue, CallbacksAreCalledExactlyOnceWithValueOrError) {
  TestModel m(8, 4);
  m.fault = TestModel::Fault::kThrowInKernel;
  m.poisoned = [](std::int64_t id) { return id == 3; };
  std::atomic<int> calls{0}, ok{0}, errors{0};
  {
    BatchQueue q(m.fn(), cpu(), {.max_batch_size = 1, .max_queue_size = 4});
    auto held = hold(q, m);
    for (int i = 0; i < 8; ++i) {
      q.submit(m.input(i, 1), [&, i](Result<nn::HostTensor> r) {
        ++calls;
        if (r.ok()) {
          ++ok;
          expect_rows(m, m.input(i, 1), r.value);
        } else {
          ++errors;
        }
      });
    }
    m.gate.open();
    EXPECT_THROW(q.submit_callback(m.input(1, 1), std::function<void(Result<nn::HostTensor>)>{}),
                 Error);
  }
  EXPECT_EQ(calls.load(), 8);
  EXPECT_EQ(ok.load(), 3);      // 0, 1, 2 ran; 3 poisoned
  EXPECT_EQ(errors.load(), 5);  // 3 failed, 4..7 rejected (queue of 4)
}

TEST(BatchQueue, StopFromACallbackIsAnErrorNotADeadlock) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {});
  std::promise<std::string> what;
  q.submit(m.input(1, 1), [&](Result<nn::HostTensor>) {
    try {
      q.stop();
      what.set_value("no error");
    } catch (const Error& e) {
      what.set_value(e.what());
    }
  });
  EXPECT_NE(what.get_future().get().find("own threads"), std::string::npos);
}

TEST(BatchQueue, InstancesRunBatchesConcurrently) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 1, .instances = 3});
  m.gate.arm();
  std::vector<std::future<nn::HostTensor>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(q.submit(m.input(i, 1)));
  m.gate.wait_for_waiters(3);  // three batches in forward at once
  m.gate.open();
  for (auto& f : fs) (void)f.get();
  EXPECT_EQ(m.max_concurrent.load(), 3);
}

// ---- shards (Note [Batch queue shards]) --------------------------------------------------------

TEST(BatchQueueShards, OutOfRangeShardsAreConfigErrorsNamingTheField) {
  TestModel m(8, 4);
  auto expect_config = [&](BatchQueueOptions o, const std::string& field) {
    try {
      BatchQueue q(m.fn(), cpu(), o);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kConfig) << e.what();
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_config({.instances = 2, .shards = 0}, "shards = 0");
  expect_config({.instances = 2, .shards = 3}, "shards = 3");
  expect_config({.max_queue_size = 2, .instances = 3, .shards = 3}, "max_queue_size = 2");
  expect_config({.instances = 0, .shards = 1}, "instances");  // the whole queue's options first
}

TEST(BatchQueueShards, AShardThatCannotStartStopsTheShardsStartedBeforeIt) {
  TestModel m(8, 4);
  RuntimeConfig cfg;
  cfg.stream_pool_size = 4;  // 3 worker streams: shard 0 (3 executors) starts, shard 1 cannot
  auto dev = Device::open("cpu", cfg);
  try {
    BatchQueue q(m.fn(), dev, {.instances = 5, .shards = 2});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kPoolExhausted) << e.what();
  }
  EXPECT_EQ(dev->streams().leased(), 0);  // shard 0's executors gave theirs back
  BatchQueue ok(m.fn(), dev, {.instances = 3, .shards = 3});
  expect_rows(m, m.input(5, 2), ok.submit(m.input(5, 2)).get());
}

// One executor per shard: a shard runs its batches one after another, so each thread's requests
// (all in its one shard) must run in the order it submitted them, with the right rows.
TEST(BatchQueueShards, EachThreadsRequestsRunInItsOrder) {
  constexpr int kThreads = 8, kEach = 40;
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 4, .instances = 4, .shards = 4});
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<std::pair<nn::HostTensor, std::future<nn::HostTensor>>> fs;
      for (int k = 0; k < kEach; ++k) {
        nn::HostTensor in = m.input(t * 1000 + k, 1);
        auto f = q.submit(in);
        fs.emplace_back(std::move(in), std::move(f));
      }
      for (auto& [in, f] : fs) {
        if (f.get().values != m.reference(in.values)) ++wrong;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(m.max_concurrent.load(), 4);
  std::vector<std::int64_t> last(kThreads, -1);
  for (const auto& batch : m.batches()) {
    for (const std::int64_t id : batch) {
      const auto t = static_cast<std::size_t>(id / 1000);
      ASSERT_LT(t, last.size());
      EXPECT_GT(id, last[t]) << "thread " << t << "'s request " << id << " ran after " << last[t];
      last[t] = id;
    }
  }
  const auto mt = q.metrics();
  EXPECT_EQ(mt.submitted, static_cast<std::uint64_t>(kThreads * kEach));
  EXPECT_EQ(mt.completed, mt.submitted);
  EXPECT_EQ(mt.batch_requests, mt.submitted);  // one snapshot of every shard's batches
  EXPECT_EQ(mt.queued, 0u);
}

// stop(kCancel) reaches every shard before it waits for any: with every shard's executor held
// in its first batch, nothing else may run: everything queued behind is cancelled.
TEST(BatchQueueShards, StopCancelCancelsEveryShardsQueueBeforeWaiting) {
  constexpr int kShards = 3, kThreads = 9, kEach = 4;
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 1, .instances = kShards, .shards = kShards});
  m.gate.arm();
  std::vector<std::future<nn::HostTensor>> fs;
  std::mutex fs_mu;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int k = 0; k < kEach; ++k) {
        auto f = q.submit(m.input(t * 100 + k, 1));
        std::lock_guard<std::mutex> l(fs_mu);
        fs.push_back(std::move(f));
      }
    });
  }
  for (auto& t : ts) t.join();
  // Consecutive thread numbers: every shard got requests, so every executor reaches the gate.
  m.gate.wait_for_waiters(kShards);
  std::thread stopper([&] { q.stop(StopMode::kCancel); });
  // The stop cannot finish while the gate holds the batches: wait for it to cancel every shard's
  // queue (a stop that waited on shard 0 before cancelling the others would never get there:
  // after 10 s the gate opens anyway and the counts below fail), then open.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (q.metrics().cancelled < static_cast<std::uint64_t>(kThreads * kEach - kShards) &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  m.gate.open();
  stopper.join();
  int completed = 0, cancelled = 0;
  for (auto& f : fs) {
    try {
      (void)f.get();
      ++completed;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCancelled) << e.what();
      ++cancelled;
    }
  }
  EXPECT_EQ(completed, kShards);  // the held batches, one request each
  EXPECT_EQ(cancelled, kThreads * kEach - kShards);
  const auto mt = q.metrics();
  EXPECT_EQ(mt.submitted, mt.completed + mt.cancelled);
  EXPECT_EQ(mt.queued, 0u);
}

TEST(BatchQueueShards, StopFromAnyShardsCallbackIsAnErrorAndStopsNothing) {
  constexpr int kShards = 3;
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {.instances = kShards, .shards = kShards});
  std::atomic<int> refused{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kShards; ++t) {  // consecutive thread numbers: one per shard
    ts.emplace_back([&] {
      std::promise<void> called;
      q.submit(m.input(1, 1), [&](Result<nn::HostTensor>) {
        try {
          q.stop();
        } catch (const Error& e) {
          if (std::string(e.what()).find("own threads") != std::string::npos) ++refused;
        }
        called.set_value();
      });
      called.get_future().get();
      // Every shard still serves this thread's requests after the refused stop.
      expect_rows(m, m.input(2, 3), q.submit(m.input(2, 3)).get());
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(refused.load(), kShards);
}

TEST(BatchQueueMetrics, PrometheusTextHasEveryCounterAndQuantile) {
  TestModel m(8, 4);
  BatchQueue q(m.fn(), cpu(), {});
  for (int i = 0; i < 5; ++i) (void)q.submit(m.input(i, 1)).get();
  q.stop();
  const std::string text = q.metrics().to_prometheus("tandem_batch", "model=\"test\"");
  for (const char* s :
       {"tandem_batch_requests_total{outcome=\"submitted\",model=\"test\"} 5",
        "tandem_batch_requests_total{outcome=\"completed\",model=\"test\"} 5",
        "tandem_batch_requests_total{outcome=\"rejected\",model=\"test\"} 0",
        "tandem_batch_requests_total{outcome=\"timed_out\",model=\"test\"} 0",
        "tandem_batch_requests_total{outcome=\"failed\",model=\"test\"} 0",
        "tandem_batch_requests_total{outcome=\"cancelled\",model=\"test\"} 0",
        "# TYPE tandem_batch_queue_time_seconds summary",
        "tandem_batch_queue_time_seconds{quantile=\"0.99\",model=\"test\"} ",
        "tandem_batch_compute_time_seconds_count{model=\"test\"} ",
        "tandem_batch_batch_size_average{model=\"test\"} "}) {
    EXPECT_NE(text.find(s), std::string::npos) << s << "\nin:\n" << text;
  }
}

TEST(BatchQueue, CompletesABatchGroupedBySubmitterNewestFirst) {
  TestModel m(4, 2);
  BatchQueue q(m.fn(), cpu(), {.max_batch_size = 64});
  auto held = hold(q, m);
  constexpr int kThreads = 3, kEach = 4;
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  std::vector<std::pair<int, int>> completed;  // (thread, its k-th request), in completion order
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {  // the threads take turns: a0 b0 c0 a1 b1 c1 ...
      for (int k = 0; k < kEach; ++k) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return turn % kThreads == t; });
        lock.unlock();
        q.submit(m.input(t * 100 + k, 1), [&, t, k](Result<nn::HostTensor> r) {
          EXPECT_TRUE(r.ok());
          std::lock_guard<std::mutex> l(mu);
          completed.emplace_back(t, k);
        });
        lock.lock();
        ++turn;
        cv.notify_all();
      }
    });
  }
  for (auto& t : ts) t.join();
  m.gate.open();
  (void)held.get();
  q.stop();  // waits for the batch, whose callbacks ran before it ended
  ASSERT_EQ(m.batches().size(), 2u);  // the held request, then all twelve in one batch
  ASSERT_EQ(completed.size(), static_cast<std::size_t>(kThreads * kEach));
  // Each thread's requests are contiguous and newest first.
  for (std::size_t i = 0; i < completed.size(); ++i) {
    const std::size_t first = i - i % kEach;
    EXPECT_EQ(completed[i].first, completed[first].first) << i;
    EXPECT_EQ(completed[i].second, kEach - 1 - static_cast<int>(i % kEach)) << i;
  }
}

TEST(LatencyHistogram, BucketIsTheEighthOfAnOctaveThatLog2Gives) {
  // bucket_of() avoids log2; it must agree with floor(8 log2(us)) except within rounding of a
  // bucket boundary.
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> exponent(-2.0, 40.0);
  for (int i = 0; i < 200000; ++i) {
    const double us = std::exp2(exponent(rng));
    const double exact = std::log2(us) * detail::LatencyHistogram::kBucketsPerOctave;
    const int want = us > 1.0 ? std::clamp(static_cast<int>(std::floor(exact)), 0,
                                           detail::LatencyHistogram::kBuckets - 1)
                              : 0;
    const int got = detail::LatencyHistogram::bucket_of(us);
    if (got != want) {
      EXPECT_NEAR(exact, std::round(exact), 1e-9) << us << " us: " << got << " != " << want;
    }
  }
  for (int b = 0; b + 1 < detail::LatencyHistogram::kBuckets; ++b) {  // just inside each bucket
    const double upper = detail::LatencyHistogram::upper_us(b);
    EXPECT_EQ(detail::LatencyHistogram::bucket_of(upper * (1 - 1e-9)), b) << b;
    EXPECT_EQ(detail::LatencyHistogram::bucket_of(upper * (1 + 1e-9)), b + 1) << b;
  }
  EXPECT_EQ(detail::LatencyHistogram::bucket_of(0.5), 0);
  EXPECT_EQ(detail::LatencyHistogram::bucket_of(std::nan("")), 0);
  EXPECT_EQ(detail::LatencyHistogram::bucket_of(1e300), detail::LatencyHistogram::kBuckets - 1);
  EXPECT_EQ(detail::LatencyHistogram::bucket_of(INFINITY), detail::LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogram, QuantilesAreWithinABucketOfTheTruth) {
  detail::LatencyHistogram h;
  for (int i = 1; i <= 10000; ++i) h.record(std::chrono::microseconds(i));  // uniform 1us..10ms
  const auto s = h.summary();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_NEAR(s.p50_ms, 5.0, 5.0 * 0.1);
  EXPECT_NEAR(s.p90_ms, 9.0, 9.0 * 0.1);
  EXPECT_NEAR(s.p99_ms, 9.9, 9.9 * 0.1);
  EXPECT_NEAR(s.sum_ms, 10000.0 * 10001 / 2 / 1000.0, 1e-6);
  detail::LatencyHistogram empty;
  EXPECT_EQ(empty.summary().p99_ms, 0.0);
}

}  // namespace
}  // namespace tandem::serve

namespace tandem::serve {
namespace {

// The reference models through the queue: batched results equal a direct forward of each input
// (within float32 rounding: a GEMM over a batch may sum in another order than over one row).
// Requests of 1..3 rows; with `graphs`, batches of every bucket (1, 2, 4, 8, 16) and padding.
// With `shards` > 1, the same over a sharded queue (each shard's executors capture their own
// graphs).
void check_model_through_queue(const std::string& name, int threads, int each,
                               bool graphs = false, int shards = 1) {
  auto dev = cpu();
  auto model = nn::load_model(name, dev, {.seed = 7});
  BatchQueue q(model, {.max_batch_size = 16, .instances = 2, .shards = shards, .graphs = graphs});
  std::vector<std::thread> ts;
  std::atomic<int> mismatches{0};
  std::atomic<double> worst{0.0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      std::vector<std::pair<nn::HostTensor, std::future<nn::HostTensor>>> pending;
      for (int j = 0; j < each; ++j) {
        const std::size_t rows = 1 + static_cast<std::size_t>((t + j) % 3);
        nn::HostTensor in{"", model->input_shape(rows), {}};
        in.values.resize(in.shape.numel());
        for (auto& v : in.values) v = u(rng);
        auto f = q.submit(in);
        pending.emplace_back(std::move(in), std::move(f));
      }
      for (auto& [in, f] : pending) {
        const nn::HostTensor out = f.get();
        const auto want = model->forward(nn::Tensor::from_host(dev, in.shape, in.values)).to_host();
        if (!(out.shape == model->output_shape(in.shape[0])) || out.values.size() != want.size()) {
          ++mismatches;
          continue;
        }
        for (std::size_t i = 0; i < want.size(); ++i) {
          const double err = std::abs(static_cast<double>(out.values[i]) - want[i]);
          double w = worst.load();
          while (err > w && !worst.compare_exchange_weak(w, err)) {
          }
          if (err > 1e-4 * (1.0 + std::abs(want[i]))) ++mismatches;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  q.stop();
  const auto mt = q.metrics();
  std::printf("  %s: %llu requests in %llu batches (avg %.2f rows), max abs error %.3g\n",
              name.c_str(), (unsigned long long)mt.completed, (unsigned long long)mt.batches,
              mt.avg_batch_size(), worst.load());
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(mt.completed, static_cast<std::uint64_t>(threads * each));
}

TEST(BatchQueueModels, MlpThroughTheQueueMatchesDirectForward) {
  check_model_through_queue("mlp", 8, testing::under_sanitizer() ? 4 : 16);
}

TEST(BatchQueueModels, EncoderThroughTheQueueMatchesDirectForward) {
  check_model_through_queue("encoder", 4, testing::under_sanitizer() ? 2 : 4);
}

TEST(BatchQueueModels, MlpThroughGraphBatchingMatchesDirectForward) {
  check_model_through_queue("mlp", 8, testing::under_sanitizer() ? 4 : 16, /*graphs=*/true);
}

TEST(BatchQueueModels, EncoderThroughGraphBatchingMatchesDirectForward) {
  check_model_through_queue("encoder", 4, testing::under_sanitizer() ? 2 : 4, /*graphs=*/true);
}

TEST(BatchQueueModels, MlpThroughShardedGraphBatchingMatchesDirectForward) {
  check_model_through_queue("mlp", 8, testing::under_sanitizer() ? 4 : 16, /*graphs=*/true,
                            /*shards=*/2);
}

// Graph batching takes batches of host requests of the model's sample shape; a Tensor request
// (and a batch it is part of) and a request of another sample shape run the plain path, with its
// result, or the model's shape error.
TEST(BatchQueueModels, GraphBatchingRunsOtherBatchesThePlainWay) {
  auto dev = cpu();
  auto model = nn::load_model("mlp", dev, {.seed = 3});
  BatchQueue q(model, {.max_batch_size = 8, .instances = 1, .graphs = true});
  std::vector<float> values(model->input_shape(2).numel());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 17) / 17.0f;
  const auto want = model->forward(nn::Tensor::from_host(dev, model->input_shape(2), values)).to_host();
  const nn::HostTensor got_host = q.submit(nn::HostTensor{"h", model->input_shape(2), values}).get();
  EXPECT_EQ(got_host.name, "h");
  EXPECT_EQ(got_host.shape, model->output_shape(2));
  const nn::Tensor got = q.submit(nn::Tensor::from_host(dev, model->input_shape(2), values)).get();
  ASSERT_EQ(got.shape(), model->output_shape(2));
  const auto got_tensor = got.to_host();
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got_host.values[i], want[i], 1e-4 * (1.0 + std::abs(want[i]))) << i;
    EXPECT_NEAR(got_tensor[i], want[i], 1e-4 * (1.0 + std::abs(want[i]))) << i;
  }
  auto wrong = q.submit(nn::HostTensor{"w", {1, 7}, std::vector<float>(7, 1.0f)});
  try {
    (void)wrong.get();
    ADD_FAILURE() << "a request of the wrong sample shape ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
  }
  EXPECT_EQ(q.metrics().completed, 2u);
  EXPECT_EQ(q.metrics().failed, 1u);
}

// A model whose forward_into fails at one batch size: graph batching captures every bucket when
// an executor starts, so the queue's constructor reports the failure (nothing left running, no
// hang), and a queue whose buckets avoid that size serves.
class FailsAtRows final : public nn::Model {
 public:
  FailsAtRows(std::shared_ptr<Device> device, std::size_t bad)
      : nn::Model(std::move(device)), bad_(bad) {}
  [[nodiscard]] std::string_view name() const override { return "fails_at_rows"; }
  [[nodiscard]] nn::Shape input_shape(std::size_t batch) const override { return {batch, 4}; }
  [[nodiscard]] nn::Shape output_shape(std::size_t batch) const override { return {batch, 4}; }
  [[nodiscard]] nn::Tensor forward(const nn::Tensor& input) const override { return input; }
  void forward_into(const nn::Tensor& input, const nn::Tensor& output) const override {
    if (input.dim(0) == bad_) {
      throw Error(ErrorKind::kInvalidArgument, "forward_into fails at " + std::to_string(bad_));
    }
    nn::Model::forward_into(input, output);
  }

 private:
  const std::size_t bad_;
};

TEST(BatchQueueModels, GraphBatchingReportsAFailedBucketFromTheConstructor) {
  auto dev = cpu();
  auto model = std::make_shared<FailsAtRows>(dev, 8);
  try {
    BatchQueue q(model, {.max_batch_size = 16, .instances = 2, .graphs = true});
    ADD_FAILURE() << "a queue whose bucket 8 cannot run was constructed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("fails at 8"), std::string::npos) << e.what();
  }
  // Buckets 2, 4 and 6 (the preferred sizes and the maximum) never meet the bad size.
  BatchQueue q(model, {.max_batch_size = 6, .preferred_batch_sizes = {2, 4}, .instances = 2,
                       .graphs = true});
  const nn::HostTensor out = q.submit(nn::HostTensor{"x", {3, 4}, std::vector<float>(12, 2.5f)}).get();
  EXPECT_EQ(out.shape, (nn::Shape{3, 4}));
  EXPECT_EQ(out.values, std::vector<float>(12, 2.5f));
}

TEST(BatchQueueModels, GraphBatchingNeedsAModel) {
  TestModel m(4, 4);
  try {
    BatchQueue q(m.fn(), cpu(), {.graphs = true});
    ADD_FAILURE() << "graphs accepted without a model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kConfig);
    EXPECT_NE(std::string(e.what()).find("BatchQueueOptions.graphs"), std::string::npos) << e.what();
  }
}

TEST(BatchQueueModels, GraphBucketsArePreferredSizesAndMaxOrPowersOfTwo) {
  using detail::graph_buckets;
  EXPECT_EQ(graph_buckets({.max_batch_size = 16}), (std::vector<std::int64_t>{1, 2, 4, 8, 16}));
  EXPECT_EQ(graph_buckets({.max_batch_size = 12}), (std::vector<std::int64_t>{1, 2, 4, 8, 12}));
  EXPECT_EQ(graph_buckets({.max_batch_size = 1}), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(graph_buckets({.max_batch_size = 100, .preferred_batch_sizes = {64, 8, 64, 32}}),
            (std::vector<std::int64_t>{8, 32, 64, 100}));
  std::vector<std::int64_t> many(4096);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::int64_t>(i) + 1;
  EXPECT_EQ(graph_buckets({.max_batch_size = 4096, .preferred_batch_sizes = many}).size(), 4096u);
  try {
    (void)graph_buckets({.max_batch_size = 4097, .preferred_batch_sizes = many});
    ADD_FAILURE() << "4097 buckets accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kConfig);
    EXPECT_NE(std::string(e.what()).find("4097 buckets"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::serve
