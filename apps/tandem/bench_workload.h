// bench_workload.h — what `tandem bench` measures: a workload makes, for each benchmark thread,
// an operation (one unit of work including its synchronize) that the thread runs in a loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tandem {
class Device;
}

namespace tandem::cli {

struct BenchWorkload {
  std::string model;  // "seed" (y = t * 2.0; synchronize), later "mlp", "encoder"
  int batch = 1;      // samples per operation
  // per_thread(device): runs on the benchmark thread before timing starts (allocations, weights
  // shared through captured state); returns the operation. Throws tandem::Error on failure.
  std::function<std::function<void()>(const std::shared_ptr<Device>&)> per_thread;
  // Optional, for workloads with counters of their own: detail_start() runs when a point's timing
  // starts (every thread warmed up), detail_end(elapsed_s) when it ends (every thread joined);
  // the line detail_end returns, if not empty, is printed under the point's row.
  std::function<void()> detail_start;
  std::function<std::string(double elapsed_s)> detail_end;
};

// The seed workload: each thread owns t (n floats, t[i] = i) and y, and runs y = t * 2.0 then
// synchronize() on its own stream.
[[nodiscard]] BenchWorkload seed_workload(std::size_t elements);

// A reference model workload ("mlp", "encoder"; random weights from `seed`): one model per device,
// loaded by the first thread and shared by all; each thread owns a random input of `batch`
// samples and runs forward() then synchronize() on its own stream. Defined in bench_models.cpp.
// graphs: each thread's forward is recorded once with run_graph (tandem/graph.h) from a static
// input into a static output (Model::forward_into), then replayed.
// into (eager only): each forward writes into a static output (Model::forward_into) instead of
// returning a new tensor: no output allocation and free per forward, like a plain cuBLAS loop.
[[nodiscard]] BenchWorkload model_workload(const std::string& model, int batch, std::uint64_t seed,
                                           bool graphs = false, bool into = false);
// The mlp served by a resident grid (tandem/nn/resident.h, one per device, shared by the
// threads): each thread's operation is one forward of one sample, host memory in and out,
// returning when the output is there. Devices without a resident mode fail in per_thread.
[[nodiscard]] BenchWorkload resident_workload(std::uint64_t seed);
// The launch + synchronize ceiling: one empty kernel (Kernels::empty), then synchronize.
// graphs: the kernel is recorded once with run_graph and replayed (the ceiling of graph
// replays, with the same completion wait as a model's graph).
[[nodiscard]] BenchWorkload empty_workload(bool graphs = false);

}  // namespace tandem::cli
