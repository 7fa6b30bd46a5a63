// batch_runner.h (private) — run_merged_batch(): the merge / forward / slice of one batch.
#pragma once

#include <memory>
#include <vector>

#include "serve/scheduler.h"
#include "tandem/host_buffer.h"

namespace tandem::serve::detail {

// Staging: one executor's host staging memory for the batches' host inputs and outputs, reused
// from batch to batch (page-locked on cuda: see tandem/host_buffer.h) and grown on demand. Only
// its executor touches it, and only between the batch's start and its stream synchronize.
struct Staging {
  HostBuffer in, out;
};

// set_host_rows(r, first, n): r's host output values become the n floats at `first`, written
// over the input's storage when it is large enough (the input was consumed by the upload), so no
// host memory is allocated per request. Shape and name are the caller's.
void set_host_rows(Request& r, const float* first, std::size_t n);

// run_merged_batch(forward, device, stream, staging, batch): on an executor thread whose current stream
// on `device` is `stream`: concatenates the inputs of `batch` (same sample shape, queue order)
// along dimension 0 into one tensor (tensor inputs: an event wait for their producer when
// needed, then copy kernels; host inputs: uploads straight into the batch), calls `forward` once,
// checks its output (defined, float32, rows, device), copies each request's rows out (a new
// tensor on `stream`, or its host vector, through `staging`), and synchronizes `stream`. A batch of one tensor
// request runs without copies. Throws whatever the
// forward or the stream raised, or Error(kInvalidArgument) for a malformed forward output;
// outputs are then not to be used.
void run_merged_batch(const ForwardFn& forward, const std::shared_ptr<Device>& device,
                      Stream& stream, Staging& staging, const std::vector<RequestPtr>& batch);

}  // namespace tandem::serve::detail
