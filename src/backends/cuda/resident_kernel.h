// resident_kernel.h (private) — the persistent grid of a resident chain (Note [Resident serving]
// in tandem/resident.h): its parameters and its launcher. Plain C++17, shared by
// resident_kernel.cu and resident_chain.cpp.
//
// Memory the grid touches (host = page-locked and mapped, reached through its device alias):
//   host   doorbell[s * kWordStride], done[s * kWordStride]  one 64-byte line per slot and word
//   host   in[s * in0 ...], out[s * out_last ...]            the slots' samples
//   host   control[kCommand]: the host writes kStopCommand to end the grid;
//          control[kExitedEpoch]: the grid stores its epoch when it has decided to exit;
//          control[kPasses], control[kRequests]: the poller's running counts (stats), and
//          the time per phase (kPhase*), 64-bit words
//   device served[s]: the last sequence number served per slot (kept across launches)
//   device words[kPassWord | kPublishedAt | kBarrierWord | kFinishedWord]: zeroed before every
//          launch; the pass word (64-bit) is pass << 8 | (requests + 1), requests = -1 to exit
//   device act[l]: layer l's input for the batch (act[0]: the inputs), act_out: the last
//          layer's output; each [2][max_batch][width], by pass parity
// The grid is `blocks` compute blocks and one poller block (the last).
#pragma once

#include <cuda_runtime.h>

namespace tandem::backends::cuda::resident {

inline constexpr int kMaxSlots = 64;
inline constexpr int kMaxBatch = 32;
inline constexpr int kMaxLayers = 8;
inline constexpr int kBlockThreads = 256;
inline constexpr int kWordStride = 16;  // unsigned words: 64 bytes

// control[] indices (each on its own 64-byte line)
inline constexpr int kCommand = 0;
inline constexpr int kExitedEpoch = 16;
inline constexpr int kPasses = 32;
inline constexpr int kRequests = 48;
inline constexpr int kPhaseInput = 64;       // 64-bit ns: first request taken -> pass published
inline constexpr int kPhaseLayers = 80;      // pass seen -> compute block 0 counted finished
inline constexpr int kPhaseCompletion = 96;  // poller: pass finished -> its done words stored
inline constexpr int kPhasePublish = 112;    // poller's publication -> compute block 0 sees it
inline constexpr int kPhaseDetail = 128;     // [layer][stage, compute, barrier], 64-bit ns each
inline constexpr int kControlWords = kPhaseDetail + 2 * 3 * kMaxLayers;
inline constexpr unsigned kStopCommand = 1;

// words[] indices
inline constexpr int kPassWord = 0;      // 64-bit
inline constexpr int kPublishedAt = 16;  // 64-bit: the poller's clock at the last publication
inline constexpr int kBarrierWord = 32;
inline constexpr int kFinishedWord = 48;
inline constexpr int kDeviceWords = 64;

struct LayerParams {
  const float* w = nullptr;  // out x in
  const float* b = nullptr;  // out, or null
  int in = 0, out = 0;
  int rows = 0;     // output rows per block: ceil(out / blocks)
  int act = 0;      // 0 none, 1 ReLU, 2 GELU (tandem::Activation's values)
  int w_off = 0;    // floats into shared memory: this block's rows x in weights, then rows biases
};

struct Params {
  LayerParams layer[kMaxLayers];
  int layers = 0;
  int slots = 0;
  int max_batch = 0;
  int stage_off = 0;  // floats into shared memory: the activation stage, max_batch x max(in)
  unsigned long long idle_ns = 0, max_run_ns = 0;
  unsigned epoch = 0;
  unsigned* doorbell = nullptr;  // host
  unsigned* done = nullptr;      // host
  const float* in = nullptr;     // host
  float* out = nullptr;          // host
  unsigned* control = nullptr;   // host
  unsigned* served = nullptr;    // device [kMaxSlots]
  unsigned* words = nullptr;     // device [kDeviceWords]
  float* act[kMaxLayers] = {};   // device
  float* act_out = nullptr;      // device
};

// shared_bytes(p): dynamic shared memory a block needs (weights, biases, activation stage).
// Set by the host from the layer sizes before the launch.
// launch(p, blocks, shared_bytes, stream): cooperative launch of the grid (blocks = compute
// blocks + 1; all blocks resident
// at once, or cudaErrorCooperativeLaunchTooLarge). Raises the kernel's dynamic shared memory
// limit first.
cudaError_t launch(const Params& p, int blocks, size_t shared_bytes, cudaStream_t stream);
// max_blocks_per_sm(shared_bytes, out): the occupancy of the kernel at that shared memory.
cudaError_t max_blocks_per_sm(size_t shared_bytes, int* out);

}  // namespace tandem::backends::cuda::resident
