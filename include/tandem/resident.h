// resident.h — ResidentChain: a chain of linear layers served by a persistent GPU grid, without
// a driver call per forward (Note [Resident serving]). The nn-level entry point is
// tandem/nn/resident.h (ResidentModel); this header is the contract between it and a backend's
// Kernels::start_resident_chain.
//
// Note [Resident serving]
// Every way of launching work through the CUDA driver flattens at ~450-500k batch-1 forwards/s
// from 8 host threads on (docs/benchmarks.md, "How a forward waits"): the driver serializes the
// threads. A resident chain takes the driver off the per-forward path:
//  - One persistent grid ("the grid": `blocks` compute blocks and one poller block, one block
//    per SM, launched cooperatively so that all are resident at once) holds the chain's weights
//    in shared memory, each compute block the same slice of output rows of every layer, loaded
//    once per launch.
//  - A caller leases one of `slots` (<= kResidentMaxSlots) mailboxes in page-locked, mapped
//    host memory, writes its input there and rings the slot's doorbell (a sequence number,
//    release). One more block, the poller, has two warp groups. The intake polls every
//    doorbell (one PCIe read per 32 slots, in parallel), takes pending slots into the next pass
//    (round-robin from where it stopped, so no slot starves; at most `max_batch`), copies their
//    inputs to device memory as they ring, and publishes the pass (its number and size in one
//    word) once the compute blocks are idle or the batch is full. Every compute block computes
//    its rows of layer 1 for the whole batch, a grid barrier, layer 2, ..., and counts itself
//    finished. The completion group, the moment a pass is finished, copies its outputs into the
//    slots' mapped outputs and stores each slot's sequence number into its done word, which the
//    caller spins on; so completing a pass never holds up the intake's polls.
//    So threads that call forward() at once are batched on the device (callers that ring
//    while a pass runs form the next one), and the host side is a memcpy each way and a few
//    stores, all to lines of the caller's own slot (no line every caller writes).
//  - The grid is never "forever": the poller ends it when no doorbell rang for `idle_us`, after
//    `max_run_us` of serving, and on the destructor's stop command. A caller whose request is
//    pending when the grid has exited relaunches it (one launch at a time, under a mutex; the
//    request is picked up by the new grid, nothing is lost). This bounds what a resident grid
//    costs the rest of the process: CUDA maps streams onto a few hardware queues
//    (CUDA_DEVICE_MAX_CONNECTIONS, default 8), and work of another stream that shares the
//    grid's queue waits behind it — for at most `max_run_us`, then it runs before the relaunch.
//    The same holds for calls that synchronize the whole device (cudaDeviceSynchronize,
//    cudaFree): they wait up to `max_run_us` (while callers keep relaunching, possibly longer).
//  - forward() waits at most `timeout_ms`; past that the chain is broken (Error(kTimeout) now,
//    Error(kBackend) for every later call), since the late result could still land in the slot.
//  - The encoding lock (TANDEM_ENCODING_LOCK) does not apply: a forward makes no driver call;
//    launches are serialized by the chain's own mutex.
//  - Numerics: fp32, each output a warp's sum (a reduce-scatter over lanes) of strided partial
//    dot products, so results differ from the stream path's in rounding only (tests: within
//    1e-5 relative).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tandem/kernels.h"

namespace tandem {

inline constexpr int kResidentMaxSlots = 64;
inline constexpr int kResidentMaxBatch = 32;
inline constexpr int kResidentMaxLayers = 8;

// One linear layer y = act(x . weight^T + bias): weight out x in (PyTorch's layout), bias out
// (or nullptr), both device memory of the chain's device that outlives the chain.
struct ResidentLayer {
  const float* weight = nullptr;
  const float* bias = nullptr;
  std::size_t in = 0, out = 0;
  Activation act = Activation::kNone;
};

struct ResidentConfig {
  int slots = kResidentMaxSlots;  // callers served at once; more callers wait for a free slot
  int max_batch = 16;             // requests one pass serves at most (1..kResidentMaxBatch)
  int blocks = 0;                 // compute blocks (one per SM; the grid has one more, the
                                  // poller); 0 = the fewest that fit from 64 up
  std::int64_t idle_us = 200;     // the grid exits after this long without a doorbell
  std::int64_t max_run_us = 2000; // ... and after this long in total (see the Note)
  std::int64_t timeout_ms = 2000; // a forward not answered within this breaks the chain
};

struct ResidentStats {
  std::uint64_t forwards = 0;  // completed forward() calls
  std::uint64_t passes = 0;    // grid passes (batches) run, over all launches
  std::uint64_t launches = 0;  // grid launches (the first, and every relaunch)
  // Time per phase, summed over passes (divide by passes): input_ns, the poller's, from the
  // first request taken into a pass to its publication (includes waiting for the compute
  // blocks); layers_ns, compute block 0's, from seeing the pass to counting it finished
  // (barriers included); publish_ns, compute block 0's, from the poller's publication of a pass
  // to seeing it; completion_ns, the poller's, from seeing a pass finished to its done
  // words (outputs copied, system fence).
  std::uint64_t input_ns = 0, publish_ns = 0, layers_ns = 0, completion_ns = 0;
  // layers_ns by layer (compute block 0's): staging the batch's inputs, computing and writing
  // its rows, and the grid barrier after the layer (0 for the last).
  std::uint64_t layer_ns[kResidentMaxLayers][3] = {};
  int blocks = 0;              // the grid size chosen
  std::size_t shared_bytes = 0;  // shared memory per block
};

class ResidentChain {
 public:
  virtual ~ResidentChain() = default;  // stops the grid and waits for it (bounded)
  ResidentChain() = default;
  ResidentChain(const ResidentChain&) = delete;
  ResidentChain& operator=(const ResidentChain&) = delete;
  // forward(in, out): one sample; `in` holds layers.front().in floats, `out` receives
  // layers.back().out floats (host memory). Blocks until done. Any thread, any number at once;
  // not concurrently with the destructor. Error(kTimeout) / Error(kBackend) as in the Note.
  virtual void forward(const float* in, float* out) = 0;
  [[nodiscard]] virtual ResidentStats stats() const = 0;
};

}  // namespace tandem
