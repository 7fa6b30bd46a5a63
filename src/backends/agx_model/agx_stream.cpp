#include "backends/agx_model/agx_stream.h"

#include <utility>

namespace tandem::backends::agx {

void AgxStream::begin_encoding() {
  HostStream::begin_encoding();
  ctx_ = table_->claim();
}

void AgxStream::dispatch(std::function<void()> fn) {
  use_resource_common(ctx_, next_resource_++);
  HostStream::dispatch(std::move(fn));
}

void AgxStream::end_encoding() {
  ComputeContext* ctx = std::exchange(ctx_, nullptr);
  // The context goes back to the table even when enqueueing fails (device closed).
  struct Release {
    ContextTable& table;
    ComputeContext* ctx;
    ~Release() { table.release(ctx); }
  } release{*table_, ctx};
  prepare_for_enqueue(ctx);
  HostStream::end_encoding();
  deferred_end_encoding(ctx);
}

}  // namespace tandem::backends::agx
