// agx_stream.h (private) — AgxStream: a HostStream whose encoding hooks go through the driver
// fault model's context table (Note [The AGX context race] in agx_context_table.h).
//
// begin_encoding claims a compute context, dispatch uses it (use_resource_common), end_encoding
// prepares the command buffer (prepare_for_enqueue, allocate_usc_spill_buffer), enqueues it on the
// host worker, and releases the context the flawed way. Execution is the HostStream's: the
// kernels are the cpu backend's and compute correct results whenever the process survives.
//
// Thread-safety: as HostStream. Encoding hooks are safe between threads only under the `global`
// encoding lock (agx_model's default); under `stream` or `none` they race through the table.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/agx_model/agx_context_table.h"
#include "backends/cpu/host_stream.h"

namespace tandem::backends::agx {

class AgxStream : public HostStream {
 public:
  AgxStream(std::string label, std::shared_ptr<ContextTable> table)
      : HostStream(std::move(label), /*caller_runs=*/false), table_(std::move(table)) {}

  void begin_encoding() override;
  void dispatch(std::function<void()> fn) override;
  void end_encoding() override;

 private:
  const std::shared_ptr<ContextTable> table_;
  ComputeContext* ctx_ = nullptr;  // encoder thread only: the claimed context while encoding
  std::uintptr_t next_resource_ = 1;  // encoder thread only: ids for the residency list
};

}  // namespace tandem::backends::agx
