// agx_context_table.cpp — see Note [The AGX context race] in agx_context_table.h.
#include "backends/agx_model/agx_context_table.h"

#include <algorithm>
#include <chrono>
#include <thread>

// Driver frames stay real frames with their own names: never inlined, never cloned into
// `.constprop`/`.isra` variants (gcc's noipa), never merged.
#if defined(__clang__)
#define TANDEM_AGX_DRIVER_FRAME __attribute__((noinline, used))
#else
#define TANDEM_AGX_DRIVER_FRAME __attribute__((noipa, used))
#endif

namespace tandem::backends::agx {

namespace {

// widen_window(us): holds the releasing thread inside the unlock-before-teardown window for at
// least `us` microseconds, asleep (as a driver thread preempted there): the other encoders run
// meanwhile, also on a machine with fewer cores than threads.
void widen_window(int us) {
  if (us <= 0) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  std::this_thread::sleep_until(deadline);
}

}  // namespace

ComputeContext* ContextTable::claim() {
  MutexLock lock(mu_);
  ComputeContext* ctx = nullptr;
  if (!free_.empty()) {
    ctx = free_.back();
    free_.pop_back();
  } else {
    contexts_.push_back(std::make_unique<ComputeContext>(static_cast<int>(contexts_.size())));
    ctx = contexts_.back().get();
  }
  // Revive a torn-down context. A context whose teardown is still pending (its releaser is in the
  // window) looks alive here and is reused as it is: the flaw's other half.
  if (ctx->resources.load(std::memory_order_relaxed) == nullptr) {
    ctx->storage_resources.count.store(0, std::memory_order_relaxed);
    ctx->storage_spill.bytes.store(0, std::memory_order_relaxed);
    ctx->usc_spill.store(&ctx->storage_spill, std::memory_order_relaxed);
    ctx->resources.store(&ctx->storage_resources, std::memory_order_relaxed);
  }
  return ctx;
}

void ContextTable::release(ComputeContext* ctx) {
  {
    MutexLock lock(mu_);
    free_.push_back(ctx);
  }
  // THE FLAW: the context is already back on the free list, and the table lock is released,
  // before it is torn down. Another thread's claim() can take it right now.
  widen_window(window_us_);
  ctx->resources.store(nullptr, std::memory_order_relaxed);
  ctx->usc_spill.store(nullptr, std::memory_order_relaxed);
}

std::size_t ContextTable::contexts_created() const {
  MutexLock lock(mu_);
  return contexts_.size();
}

TANDEM_AGX_DRIVER_FRAME void use_resource_common(ComputeContext* ctx, std::uintptr_t resource) {
  ResourceList* list = ctx->resources.load(std::memory_order_relaxed);
  const std::size_t i = list->count.fetch_add(1, std::memory_order_relaxed);  // NULL: SIGSEGV
  list->entries[i % ResourceList::kCapacity].store(resource, std::memory_order_relaxed);
}

TANDEM_AGX_DRIVER_FRAME void allocate_usc_spill_buffer(ComputeContext* ctx, std::size_t bytes) {
  SpillBuffer* spill = ctx->usc_spill.load(std::memory_order_relaxed);
  const std::size_t have = spill->bytes.load(std::memory_order_relaxed);  // NULL: SIGSEGV
  if (bytes > have) spill->bytes.store(bytes, std::memory_order_relaxed);
}

TANDEM_AGX_DRIVER_FRAME void prepare_for_enqueue(ComputeContext* ctx) {
  ResourceList* list = ctx->resources.load(std::memory_order_relaxed);
  const std::size_t bound = list->count.load(std::memory_order_relaxed);  // NULL: SIGSEGV
  allocate_usc_spill_buffer(ctx, 256 + 64 * std::min(bound, ResourceList::kCapacity));
}

TANDEM_AGX_DRIVER_FRAME void deferred_end_encoding(ComputeContext* ctx) {
  ResourceList* list = ctx->resources.load(std::memory_order_relaxed);
  list->count.store(0, std::memory_order_relaxed);  // NULL: SIGSEGV
  ctx->enqueued.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace tandem::backends::agx
