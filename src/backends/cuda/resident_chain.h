// resident_chain.h (private) — CudaResidentChain: the cuda backend's ResidentChain (Note
// [Resident serving] in tandem/resident.h; the grid itself is resident_kernel.cu).
//
// Host side of the protocol:
//  - Slots are leased per forward() from a 64-bit free mask (lowest free bit, one CAS); the
//    lessee alone writes the slot's input, its sequence number and its doorbell.
//  - forward() spins on the slot's done word (a 32-bit compare per iteration), checks the
//    control word kExitedEpoch against the epoch it launched last, and relaunches the grid when
//    they are equal (the grid has exited with this request possibly unseen): under launch_mu_,
//    re-checked there, so one caller relaunches and the others keep spinning.
//  - After ~50 us of spinning a caller yields its core between checks; after timeout_ms it
//    marks the chain broken and throws.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/resident_kernel.h"
#include "tandem/error.h"
#include "tandem/mutex.h"
#include "tandem/resident.h"
#include "tandem/thread_annotations.h"

namespace tandem::backends::cuda {

class CudaDevice;

class CudaResidentChain final : public ResidentChain {
 public:
  // Validates layers and config (Error(kInvalidArgument) naming the value and the limit),
  // allocates everything the grid touches, and launches it (Error(kBackend) if that fails).
  CudaResidentChain(CudaDevice& device, const std::vector<ResidentLayer>& layers,
                    const ResidentConfig& config);
  ~CudaResidentChain() override;

  void forward(const float* in, float* out) override;
  [[nodiscard]] ResidentStats stats() const override;

 private:
  [[nodiscard]] int acquire_slot();
  void release_slot(int slot) noexcept;
  void relaunch_if_exited() TANDEM_EXCLUDES(launch_mu_);
  void allocate_and_launch() TANDEM_REQUIRES(launch_mu_);
  void release_memory() noexcept;
  void launch_locked() TANDEM_REQUIRES(launch_mu_);
  [[nodiscard]] std::atomic_ref<unsigned> host_word(unsigned* w) const {
    return std::atomic_ref<unsigned>(*w);
  }
  [[noreturn]] void fail(ErrorKind kind, const std::string& what);

  CudaDevice& device_;
  const ResidentConfig config_;
  const std::string where_;  // "cuda:0 resident chain", for messages
  std::size_t in_ = 0, out_ = 0;
  int blocks_ = 0;
  std::size_t shared_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  // Page-locked, mapped host memory: doorbells, done words, control words, inputs, outputs.
  void* host_ = nullptr;
  unsigned* doorbell_ = nullptr;
  unsigned* done_ = nullptr;
  unsigned* control_ = nullptr;
  float* in_slots_ = nullptr;
  float* out_slots_ = nullptr;
  void* device_mem_ = nullptr;  // served, words, activations: one allocation
  // One slot's host-side state, on a cache line of its own, so that concurrent callers write
  // different lines: one line written by every forward (a shared lease mask, a shared counter)
  // measurably slows 8 callers (docs/benchmarks.md, "Resident serving").
  struct alignas(64) SlotLease {
    std::atomic<bool> leased{false};
    unsigned seq = 0;                        // the last sequence number; only the lessee writes
    std::atomic<std::uint64_t> forwards{0};  // completed forwards; only the lessee writes
  };
  std::unique_ptr<SlotLease[]> leases_;  // config_.slots
  std::atomic<unsigned> launched_epoch_{0};
  std::atomic<bool> broken_{false};
  std::atomic<std::uint64_t> launches_{0};
  Mutex launch_mu_;
  resident::Params params_ TANDEM_GUARDED_BY(launch_mu_);
  std::string broken_reason_ TANDEM_GUARDED_BY(launch_mu_);
};

}  // namespace tandem::backends::cuda
