// agx_model unit tests (label unit; clean under asan): the context table's single-threaded
// behaviour and the backend's registration, default policy and kernels. The many-thread tests
// under the global lock are in agx_model_stress_test.cpp; the race itself in
// agx_model_race_test.cpp (label racy).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backends/agx_model/agx_context_table.h"
#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/stream.h"

namespace tandem::backends::agx {
namespace {

std::shared_ptr<Device> open_agx(std::optional<EncodingLockPolicy> policy, int window_us) {
  RuntimeConfig c;
  c.encoding_lock = policy;
  c.agx_model_window_us = window_us;
  return Device::open("agx_model", c);
}

TEST(AgxModelBackend, IsRegisteredAndDefaultsToTheGlobalEncodingLock) {
  auto d = open_agx(std::nullopt, 0);
  EXPECT_EQ(d->backend(), "agx_model");
  EXPECT_EQ(d->encoding_lock_policy(), EncodingLockPolicy::kGlobal);
  EXPECT_TRUE(d->host_visible());
}

TEST(AgxModelBackend, NeverBecomesTheDefaultDevice) {
  // The fault model must not be picked over cpu when TANDEM_BACKEND is unset.
  auto names = Device::available();
  EXPECT_NE(std::find(names.begin(), names.end(), "agx_model:0"), names.end());
  EXPECT_NE(Device::get_default()->backend(), "agx_model");
}

TEST(AgxContextTable, HandsOutTheMostRecentlyReleasedContextFirst) {
  ContextTable table(0);
  ComputeContext* a = table.claim();
  ComputeContext* b = table.claim();
  EXPECT_NE(a, b);
  table.release(a);
  table.release(b);
  EXPECT_EQ(table.claim(), b);  // LIFO: the warm one
  EXPECT_EQ(table.claim(), a);
  EXPECT_EQ(table.contexts_created(), 2u);
}

TEST(AgxContextTable, TearsDownOnReleaseAndRevivesOnClaim) {
  ContextTable table(0);
  ComputeContext* a = table.claim();
  ASSERT_NE(a->resources.load(), nullptr);
  use_resource_common(a, 7);
  prepare_for_enqueue(a);
  deferred_end_encoding(a);
  EXPECT_EQ(a->enqueued.load(), 1u);
  table.release(a);
  // Released and torn down: in the driver, the NULL fields that crash a late user.
  EXPECT_EQ(a->resources.load(), nullptr);
  EXPECT_EQ(a->usc_spill.load(), nullptr);
  ComputeContext* again = table.claim();
  ASSERT_EQ(again, a);
  EXPECT_NE(again->resources.load(), nullptr);
  EXPECT_NE(again->usc_spill.load(), nullptr);
  use_resource_common(again, 8);  // usable again
  EXPECT_EQ(again->resources.load()->count.load(), 1u);
}

TEST(AgxModelBackend, ComputesCorrectResults) {
  auto d = open_agx(std::nullopt, 0);
  Stream& s = d->current_stream();
  constexpr std::size_t n = 1000;
  Buffer t(d, n * sizeof(float), s), y(d, n * sizeof(float), s), total(d, sizeof(float), s);
  std::vector<float> host(n);
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i);
  upload(s, t, host);
  scale(s, y, t, 2.0f);
  add(s, y, y, t);  // y = 3t
  sum(s, total, y);
  std::vector<float> out(n), out_total(1);
  download(s, out, y);
  download(s, out_total, total);
  s.synchronize();
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 3.0f * static_cast<float>(i)) << i;
  EXPECT_EQ(out_total[0], 3.0f * (n - 1) * n / 2);
}

}  // namespace
}  // namespace tandem::backends::agx
