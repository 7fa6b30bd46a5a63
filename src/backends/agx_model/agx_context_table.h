// agx_context_table.h (private) — the driver fault model: a table of compute contexts with the
// AGX driver's unlock-before-clear flaw, and the driver-named functions that use a context.
//
// Note [The AGX context race]
// Apple's AGX driver keeps, per device, a table of compute contexts that command encoders borrow.
// Creating an encoder claims a context under the table lock; ending it returns the context to the
// table and *then*, after the lock is released, tears the context down. A second thread that
// creates an encoder in between claims the very context that is being torn down, checks it (it
// still looks alive), and goes on using it; when the teardown lands, the second thread's next
// use dereferences a NULL field: SIGSEGV in useResourceCommon / prepareForEnqueue /
// allocateUSCSpillBuffer. This file reproduces that sequence with real threads and real memory:
//
//   thread A (ending its encoder)              thread B (creating an encoder)
//   -----------------------------              ------------------------------
//   lock(table); push ctx on free list;
//   unlock(table)
//   [window: TANDEM_AGX_MODEL_WINDOW_US]       lock(table); ctx = pop free list (LIFO: A's)
//                                              ctx->resources != NULL: "alive", reuse it
//                                              unlock(table)
//   ctx->resources = NULL  (teardown)
//                                              use_resource_common(ctx): ctx->resources->...
//                                              -> NULL dereference: SIGSEGV
//
// Nothing here draws a random number: whether a run crashes depends only on how the threads of
// the process interleave. With the default window (0) the gap between A's unlock and A's teardown
// is a few instructions, and the interleaving above happens only when B runs on another core at
// exactly that moment. TANDEM_AGX_MODEL_WINDOW_US=N makes A sleep N microseconds there (as a
// driver thread preempted in the gap), so the teardown lands in the middle of other encoders'
// work and the crash comes within the first iterations (docs/crash-timing.md has the numbers).
//
// Why the `global` encoding lock makes the race impossible, by construction: every call into the
// table (claim at begin_encoding, the uses at dispatch/end_encoding, release and its teardown at
// end_encoding) happens inside a StreamImpl encoding hook, and the runtime only calls those hooks
// from an Encoder, which holds the encoding lock from before begin_encoding until after
// end_encoding has returned (Encoder::commit: end_encoding, then unlock). Under `global` that lock
// is one process-wide mutex, so at most one thread is anywhere between claim and teardown; when
// the next thread claims a context, every earlier teardown has completed (the mutex orders it
// before), so a claimed context is never torn down while in use. Tables are per device, and a
// device's encoders all follow that device's policy. Under `stream` the lock is per stream, and
// each thread owns its own stream, so two threads still meet in the shared table: the race stays.
//
// Memory: contexts live as long as the table (the device); the teardown only NULLs the pointers
// into the context's own storage, so a stale pointer is never a use-after-free — the failure is
// always the NULL dereference the driver showed. The racy fields are atomics (relaxed): the race
// is a logic race, as in the driver, not undefined behaviour in the C++ sense (apart from the
// NULL dereference, which is the point).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tandem/mutex.h"

namespace tandem::backends::agx {

// The resources a context has bound (the driver's residency list).
struct ResourceList {
  static constexpr std::size_t kCapacity = 64;
  // Written by the thread using the context; relaxed (bookkeeping only; kernels never read it).
  std::array<std::atomic<std::uintptr_t>, kCapacity> entries{};
  std::atomic<std::size_t> count{0};
};

// The USC spill buffer a context sizes before enqueueing.
struct SpillBuffer {
  std::atomic<std::size_t> bytes{0};
};

// ComputeContext: one entry of the table. `resources` and `usc_spill` are NULL while the context
// is torn down and point into `storage_*` while it is alive.
struct ComputeContext {
  explicit ComputeContext(int slot) : slot(slot) {}
  const int slot;
  // Writers: ContextTable::claim (revive, under the table lock) and ContextTable::release
  // (teardown, outside the lock: the flaw). Relaxed: the model relies on no ordering here.
  std::atomic<ResourceList*> resources{nullptr};
  std::atomic<SpillBuffer*> usc_spill{nullptr};
  std::atomic<std::uint64_t> enqueued{0};  // encoders committed through this context
  ResourceList storage_resources;
  SpillBuffer storage_spill;
};

// ContextTable: the per-device table of compute contexts.
// Thread-safety: claim() and release() may be called from any thread; the table's own state is
// guarded by mu_. The contexts it hands out are NOT protected once the lock is dropped: that is
// the modelled flaw (Note [The AGX context race]); callers need the `global` encoding lock.
class ContextTable {
 public:
  // window_us: the sleep inside the unlock-before-teardown window (TANDEM_AGX_MODEL_WINDOW_US).
  explicit ContextTable(int window_us) : window_us_(window_us) {}
  ContextTable(const ContextTable&) = delete;
  ContextTable& operator=(const ContextTable&) = delete;

  // claim(): a context for a new encoder: the most recently released one (LIFO, as a driver's
  // context cache hands out the warm one), or a new one. Revives it if it was torn down.
  [[nodiscard]] ComputeContext* claim() TANDEM_EXCLUDES(mu_);
  // release(ctx): returns ctx to the free list, drops the table lock, waits out the window, then
  // tears ctx down — the flaw.
  void release(ComputeContext* ctx) TANDEM_EXCLUDES(mu_);

  [[nodiscard]] std::size_t contexts_created() const TANDEM_EXCLUDES(mu_);

 private:
  const int window_us_;
  mutable Mutex mu_;
  std::vector<std::unique_ptr<ComputeContext>> contexts_ TANDEM_GUARDED_BY(mu_);
  std::vector<ComputeContext*> free_ TANDEM_GUARDED_BY(mu_);  // LIFO
};

// The driver-named functions. They are kept out of line and out of inter-procedural
// optimisation, with external linkage, so that a crash's top frame carries their names
// (tandem::backends::agx::use_resource_common, ...), as the driver's frames did.
//
// use_resource_common(ctx, resource): records `resource` in ctx's residency list. SIGSEGV when
// ctx has been torn down (NULL resources).
void use_resource_common(ComputeContext* ctx, std::uintptr_t resource);
// prepare_for_enqueue(ctx): sizes the spill buffer from the residency list before the command
// buffer is enqueued; calls allocate_usc_spill_buffer. SIGSEGV when ctx has been torn down.
void prepare_for_enqueue(ComputeContext* ctx);
// allocate_usc_spill_buffer(ctx, bytes): SIGSEGV when ctx has been torn down.
void allocate_usc_spill_buffer(ComputeContext* ctx, std::size_t bytes);
// deferred_end_encoding(ctx): after the command buffer is enqueued, retires ctx's residency list
// (the driver finishes an encoder after handing its work to the queue). SIGSEGV when ctx has been
// torn down.
void deferred_end_encoding(ComputeContext* ctx);

}  // namespace tandem::backends::agx
