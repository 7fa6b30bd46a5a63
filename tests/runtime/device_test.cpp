#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tandem/encoder.h"
#include "tandem/event.h"
#include "tandem/host_buffer.h"
#include "tandem/kernels.h"
#include "test_util.h"

namespace tandem {
namespace {
using testing::make_buffer;
using testing::open_cpu;
using testing::read;
using testing::throws_error;

TEST(Device, GetReturnsOneDevicePerCanonicalName) {
  EXPECT_EQ(Device::get("cpu"), Device::get("cpu:0"));
  EXPECT_EQ(Device::get("cpu")->name(), "cpu:0");
  EXPECT_EQ(Device::get("cpu")->backend(), "cpu");
}

TEST(Device, UnknownBackendOrIndexIsNotFoundWithTheKnownBackends) {
  EXPECT_TRUE(throws_error([] { (void)Device::get("tpu"); }, ErrorKind::kNotFound,
                           {"tpu", "cpu"}));
  EXPECT_TRUE(throws_error([] { (void)Device::get("cpu:3"); }, ErrorKind::kNotFound,
                           {"cpu:3", "1 device"}));
  EXPECT_TRUE(throws_error([] { (void)Device::get("cpu:x"); }, ErrorKind::kNotFound,
                           {"malformed"}));
}

TEST(Device, CpuDeclaresNoEncodingLockAndAnEnvOrConfigOverridesIt) {
  EXPECT_EQ(open_cpu()->encoding_lock_policy(), EncodingLockPolicy::kNone);
  EXPECT_EQ(open_cpu(32, 0, EncodingLockPolicy::kGlobal)->encoding_lock_policy(),
            EncodingLockPolicy::kGlobal);
}

TEST(BasicOps, ComputeExactResults) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  const std::vector<float> tv = {1, 2, 3, -4, 5.5f};
  Buffer t = make_buffer(d, s, tv);
  Buffer y(d, t.size_bytes(), s);
  scale(s, y, t, 2.0f);
  EXPECT_EQ(read(s, y), (std::vector<float>{2, 4, 6, -8, 11}));
  Buffer z(d, t.size_bytes(), s);
  add(s, z, y, t);
  EXPECT_EQ(read(s, z), (std::vector<float>{3, 6, 9, -12, 16.5f}));
  fill(s, z, 7.0f);
  EXPECT_EQ(read(s, z), (std::vector<float>(5, 7.0f)));
  copy(s, z, t);
  EXPECT_EQ(read(s, z), tv);
  Buffer total(d, sizeof(float), s);
  sum(s, total, t);
  EXPECT_EQ(read(s, total), (std::vector<float>{7.5f}));
}

TEST(BasicOps, SizeMismatchIsAnInvalidArgumentNamingBothSizes) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  Buffer a(d, 16, s), b(d, 32, s);
  EXPECT_TRUE(throws_error([&] { scale(s, a, b, 2.0f); }, ErrorKind::kInvalidArgument,
                           {"16", "32"}));
  Buffer tiny(d, 2, s);
  EXPECT_TRUE(throws_error([&] { sum(s, tiny, a); }, ErrorKind::kInvalidArgument,
                           {"at least 4"}));
  std::vector<float> host(3);
  EXPECT_TRUE(throws_error([&] { download(s, host, a); }, ErrorKind::kInvalidArgument,
                           {"12", "16"}));
}

TEST(Stream, AnExceptionFromAKernelReachesTheThreadThatSynchronizes) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  {
    Encoder enc(s);
    enc.dispatch([] { throw Error(ErrorKind::kKernel, "kernel exploded at element 7"); });
  }
  EXPECT_TRUE(throws_error([&] { s.synchronize(); }, ErrorKind::kKernel, {"element 7"}));
  // Delivered once; the stream works again afterwards.
  EXPECT_NO_THROW(s.synchronize());
  Buffer t = make_buffer(d, s, {1, 2});
  Buffer y(d, t.size_bytes(), s);
  scale(s, y, t, 3.0f);
  EXPECT_EQ(read(s, y), (std::vector<float>{3, 6}));
}

TEST(Stream, AFaultedStreamSkipsLaterWorkUntilTheErrorIsCollected) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  int ran = 0;
  {
    Encoder enc(s);
    enc.dispatch([] { throw std::runtime_error("first"); });
    enc.dispatch([&] { ++ran; });  // same command buffer: skipped
  }
  {
    Encoder enc(s);
    enc.dispatch([&] { ++ran; });  // later command buffer on the faulted stream: skipped
  }
  EXPECT_THROW(s.synchronize(), std::runtime_error);
  EXPECT_EQ(ran, 0);
}

TEST(Encoder, DispatchAfterCommitIsAnError) {
  auto d = open_cpu();
  Encoder enc(d->current_stream());
  enc.commit();
  EXPECT_TRUE(throws_error([&] { enc.dispatch([] {}); }, ErrorKind::kInvalidArgument,
                           {"after commit"}));
}

TEST(Event, RecordsAndWaitsFromTheHostAndMeasuresTime) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  Event start(*d, Event::Timing::kEnabled), end(*d, Event::Timing::kEnabled);
  EXPECT_TRUE(start.query());  // unrecorded events are complete
  start.record(s);
  {
    Encoder enc(s);
    enc.dispatch([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  }
  end.record(s);
  end.wait();
  EXPECT_TRUE(end.query());
  EXPECT_GE(start.elapsed_ms(end), 19.0);
  Event untimed(*d);
  untimed.record(s);
  untimed.wait();
  EXPECT_TRUE(throws_error([&] { (void)untimed.elapsed_ms(end); }, ErrorKind::kInvalidArgument,
                           {"kEnabled"}));
}

TEST(Event, AnotherStreamWaitsForTheRecordedWork) {
  auto d = open_cpu();
  auto producer_lease = d->streams().lease();
  auto consumer_lease = d->streams().lease();
  Stream& producer = producer_lease.stream();
  Stream& consumer = consumer_lease.stream();
  Buffer x(d, 4 * sizeof(float), producer);
  Buffer y(d, 4 * sizeof(float), consumer);
  {
    Encoder enc(producer);
    float* p = x.as<float>();
    enc.dispatch([p] {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      std::fill(p, p + 4, 5.0f);
    });
  }
  Event ready(*d);
  ready.record(producer);
  ready.wait(consumer);
  scale(consumer, y, x, 2.0f);
  EXPECT_EQ(read(consumer, y), (std::vector<float>(4, 10.0f)));
}

TEST(Event, CarriesTheRecordingStreamsErrorToItsWaiters) {
  auto d = open_cpu();
  auto a = d->streams().lease();
  auto b = d->streams().lease();
  {
    Encoder enc(a.stream());
    enc.dispatch([] { throw Error(ErrorKind::kKernel, "producer failed"); });
  }
  Event e(*d);
  e.record(a.stream());
  EXPECT_TRUE(throws_error([&] { e.wait(); }, ErrorKind::kKernel, {"producer failed"}));
  e.wait(b.stream());
  EXPECT_TRUE(throws_error([&] { b.stream().synchronize(); }, ErrorKind::kKernel,
                           {"producer failed"}));
  EXPECT_TRUE(throws_error([&] { a.stream().synchronize(); }, ErrorKind::kKernel,
                           {"producer failed"}));
}

TEST(Buffer, StatsCountAllocationsAndStreamOrderedFrees) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  {
    Buffer a(d, 1000, s);
    Buffer b(d, 24, s);
    MemoryStats m = d->memory_stats();
    EXPECT_EQ(m.current_bytes, 1024);
    EXPECT_EQ(m.allocs, 2);
  }
  s.synchronize();  // frees run in stream order
  MemoryStats m = d->memory_stats();
  EXPECT_EQ(m.current_bytes, 0);
  EXPECT_EQ(m.peak_bytes, 1024);
  EXPECT_EQ(m.frees, 2);
  EXPECT_EQ(m.graph_bytes, 0);  // host backends cache no graphs
}

TEST(HostBuffer, HoldsAlignedMemoryForCopiesAndMovesOwnership) {
  auto d = open_cpu();
  HostBuffer h(d, 4096);
  ASSERT_NE(h.data(), nullptr);
  EXPECT_EQ(h.size_bytes(), 4096u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(h.data()) % 64, 0u);
  for (int i = 0; i < 1024; ++i) h.floats()[i] = static_cast<float>(i);
  Stream& s = d->current_stream();
  Buffer b(d, 4096, s);
  HostBuffer back(d, 4096);
  {
    Encoder enc(s);
    d->kernels().copy_from_host(enc, b.data(), h.data(), 4096);
    d->kernels().copy_to_host(enc, back.data(), b.data(), 4096);
  }
  s.synchronize();
  for (int i = 0; i < 1024; ++i) ASSERT_EQ(back.floats()[i], static_cast<float>(i));
  HostBuffer moved = std::move(h);
  EXPECT_EQ(h.data(), nullptr);
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(moved.floats()[1023], 1023.0f);
  EXPECT_TRUE(HostBuffer(d, 0).empty());
  d->close();
  EXPECT_TRUE(throws_error([&] { HostBuffer late(d, 64); }, ErrorKind::kDeviceClosed, {"closed"}));
}

TEST(Device, UseAfterCloseIsADeviceClosedError) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  Buffer keep(d, 64, s);
  d->close();
  EXPECT_TRUE(d->closed());
  EXPECT_TRUE(throws_error([&] { (void)d->current_stream(); }, ErrorKind::kDeviceClosed,
                           {d->name(), "closed"}));
  EXPECT_TRUE(throws_error([&] { Buffer b(d, 64, s); }, ErrorKind::kDeviceClosed, {"closed"}));
  EXPECT_TRUE(throws_error([&] { fill(s, keep, 1.0f); }, ErrorKind::kDeviceClosed, {"closed"}));
  EXPECT_TRUE(throws_error([&] { (void)d->streams().lease(); }, ErrorKind::kDeviceClosed, {}));
  d->close();  // idempotent
  // `keep` is freed after close: at once, since nothing can run on the stream anymore.
}

TEST(Device, ClosingWaitsForCommittedWork) {
  auto d = open_cpu();
  Stream& s = d->current_stream();
  std::atomic<bool> ran{false};
  {
    Encoder enc(s);
    enc.dispatch([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ran = true;
    });
  }
  d->close();
  EXPECT_TRUE(ran.load());
}

}  // namespace
}  // namespace tandem
