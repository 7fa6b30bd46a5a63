// The agx_model race, reproduced on purpose (label racy). These tests run the fault model's
// unprotected path — a deliberate race between threads, the driver flaw being modelled — and
// expect it to kill the process with SIGSEGV in a driver-named frame. They are kept out of the
// ThreadSanitizer and AddressSanitizer runs (`-LE racy`): a sanitizer would (rightly) report the
// modelled race or the NULL dereference, which are the point here, not bugs.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "backends/agx_model/agx_context_table.h"

namespace tandem::backends::agx {
namespace {

using std::chrono::milliseconds;

// The interleaving of Note [The AGX context race], forced by timing rather than chance: thread A
// releases with a 300 ms window; 50 ms in, thread B claims — and gets A's context, still alive;
// A's teardown lands; B's next use dereferences NULL. The only timing assumption is that the
// claim (50 ms) comes before the teardown (300 ms).
void claim_inside_the_window_then_use(void (*use)(ComputeContext*)) {
  ContextTable table(/*window_us=*/300'000);
  ComputeContext* a = table.claim();
  use_resource_common(a, 1);
  std::thread releaser([&] { table.release(a); });
  std::this_thread::sleep_for(milliseconds(50));
  ComputeContext* b = table.claim();
  if (b != a || b->resources.load() == nullptr) std::_Exit(3);  // not the modelled interleaving
  releaser.join();  // A's teardown is done; B still holds the context
  use(b);
  std::_Exit(0);
}

class AgxContextRace : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(AgxContextRace, AClaimInsideTheWindowDiesInUseResourceCommon) {
  EXPECT_EXIT(claim_inside_the_window_then_use([](ComputeContext* c) { use_resource_common(c, 2); }),
              ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(AgxContextRace, AClaimInsideTheWindowDiesInPrepareForEnqueue) {
  EXPECT_EXIT(claim_inside_the_window_then_use([](ComputeContext* c) { prepare_for_enqueue(c); }),
              ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(AgxContextRace, AClaimInsideTheWindowDiesInAllocateUscSpillBuffer) {
  EXPECT_EXIT(claim_inside_the_window_then_use(
                  [](ComputeContext* c) { allocate_usc_spill_buffer(c, 4096); }),
              ::testing::KilledBySignal(SIGSEGV), "");
}

TEST_F(AgxContextRace, AClaimAfterTheTeardownRevivesTheContextSafely) {
  // The same two threads, the other order: B claims after A's teardown and is fine. What kills
  // a process is the interleaving, not the operations.
  ContextTable table(/*window_us=*/20'000);
  ComputeContext* a = table.claim();
  std::thread releaser([&] { table.release(a); });
  releaser.join();
  ComputeContext* b = table.claim();
  EXPECT_EQ(b, a);
  use_resource_common(b, 2);
  prepare_for_enqueue(b);
  deferred_end_encoding(b);
  table.release(b);
  SUCCEED();
}

}  // namespace
}  // namespace tandem::backends::agx
