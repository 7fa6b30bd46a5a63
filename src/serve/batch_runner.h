// batch_runner.h (private) — run_merged_batch(): the merge / forward / slice of one batch.
#pragma once

#include <memory>
#include <vector>

#include "serve/scheduler.h"

namespace tandem::serve::detail {

// run_merged_batch(forward, device, stream, batch): concatenates the inputs of `batch` (same
// sample shape, queue order) along the batch dimension into one buffer on `stream` (device
// inputs: an event wait for their producer, then copy kernels; host inputs: uploads straight into
// the batch), calls `forward` once, checks its output (rows, size, device), copies each request's
// output rows out (a new device buffer on `stream`, or its host vector), and synchronizes
// `stream`. A batch of one device request is passed through without copies. Throws whatever the
// forward or the stream raised, or Error(kInvalidArgument) for a malformed forward output;
// outputs are then not to be used.
void run_merged_batch(const ForwardFn& forward, const std::shared_ptr<Device>& device,
                      Stream& stream, const std::vector<RequestPtr>& batch);

}  // namespace tandem::serve::detail
