#include "backends/cuda/resident_chain.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "tandem/error.h"

namespace tandem::backends::cuda {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::kInvalidArgument, where + ": " + what);
}

std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

// Shared memory bytes of a block for `blocks` blocks: each layer's rows x in weights and its
// rows biases (padded to 4 floats, so every layer starts 16-byte aligned), then the activation
// stage of max_batch x the widest input. Fills the layers' rows and the offsets.
std::size_t plan_shared(resident::Params& p, int blocks) {
  std::size_t off = 0, widest = 0;
  for (int l = 0; l < p.layers; ++l) {
    auto& L = p.layer[l];
    L.rows = (L.out + blocks - 1) / blocks;
    L.w_off = static_cast<int>(off);
    off += static_cast<std::size_t>(L.rows) * static_cast<std::size_t>(L.in) +
           align_up(static_cast<std::size_t>(L.rows), 4);
    widest = std::max(widest, static_cast<std::size_t>(L.in));
  }
  p.stage_off = static_cast<int>(off);
  off += static_cast<std::size_t>(p.max_batch) * widest;
  return off * sizeof(float);
}

}  // namespace

CudaResidentChain::CudaResidentChain(CudaDevice& device, const std::vector<ResidentLayer>& layers,
                                     const ResidentConfig& config)
    : device_(device), config_(config), where_(device.name() + " resident chain") {
  // ---- validation ----
  if (layers.empty() || layers.size() > static_cast<std::size_t>(kResidentMaxLayers)) {
    bad(where_, "a chain of " + std::to_string(layers.size()) + " layers; 1 to " +
                    std::to_string(kResidentMaxLayers) + " are supported");
  }
  constexpr std::size_t kMaxWidth = 16384;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const ResidentLayer& L = layers[l];
    const std::string name = "layer " + std::to_string(l);
    if (L.weight == nullptr) bad(where_, name + " has no weight");
    if (L.in == 0 || L.out == 0 || L.in > kMaxWidth || L.out > kMaxWidth || L.in % 4 != 0) {
      bad(where_, name + " is " + std::to_string(L.out) + " x " + std::to_string(L.in) +
                      " (out x in); both must be 1.." + std::to_string(kMaxWidth) +
                      " and `in` a multiple of 4");
    }
    if (l + 1 == layers.size() && L.out % 4 != 0) {
      bad(where_, "the last layer gives " + std::to_string(L.out) +
                      " outputs; a multiple of 4 is needed (outputs are copied 16 bytes at a time)");
    }
    if (l > 0 && L.in != layers[l - 1].out) {
      bad(where_, name + " takes " + std::to_string(L.in) + " inputs but layer " +
                      std::to_string(l - 1) + " gives " + std::to_string(layers[l - 1].out));
    }
  }
  if (config.slots < 1 || config.slots > kResidentMaxSlots) {
    bad(where_, "slots = " + std::to_string(config.slots) + "; 1.." +
                    std::to_string(kResidentMaxSlots) + " are supported");
  }
  if (config.max_batch < 1 || config.max_batch > kResidentMaxBatch) {
    bad(where_, "max_batch = " + std::to_string(config.max_batch) + "; 1.." +
                    std::to_string(kResidentMaxBatch) + " are supported");
  }
  if (config.idle_us < 0 || config.max_run_us < 1 || config.timeout_ms < 1) {
    bad(where_, "idle_us = " + std::to_string(config.idle_us) + ", max_run_us = " +
                    std::to_string(config.max_run_us) + ", timeout_ms = " +
                    std::to_string(config.timeout_ms) +
                    "; need idle_us >= 0, max_run_us >= 1, timeout_ms >= 1");
  }
  static_assert(kResidentMaxSlots == resident::kMaxSlots && kResidentMaxBatch == resident::kMaxBatch &&
                kResidentMaxLayers == resident::kMaxLayers);
  static_assert(static_cast<int>(Activation::kRelu) == 1 && static_cast<int>(Activation::kGelu) == 2);
  in_ = layers.front().in;
  out_ = layers.back().out;

  MutexLock lock(launch_mu_);
  resident::Params& p = params_;
  p.layers = static_cast<int>(layers.size());
  p.slots = config.slots;
  p.max_batch = config.max_batch;
  p.idle_ns = static_cast<unsigned long long>(config.idle_us) * 1000ull;
  p.max_run_ns = static_cast<unsigned long long>(config.max_run_us) * 1000ull;
  for (int l = 0; l < p.layers; ++l) {
    const ResidentLayer& L = layers[static_cast<std::size_t>(l)];
    p.layer[l].w = L.weight;
    p.layer[l].b = L.bias;
    p.layer[l].in = static_cast<int>(L.in);
    p.layer[l].out = static_cast<int>(L.out);
    p.layer[l].act = static_cast<int>(L.act);
  }

  // ---- grid size: every block resident at once, one per SM ----
  device_.make_current();
  int sms = 0;
  TANDEM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_.index()),
                    where_);
  int optin = 0;  // the most dynamic shared memory a block may opt into
  TANDEM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                           device_.index()),
                    where_);
  auto fits = [&](int blocks, std::size_t* bytes) {
    *bytes = plan_shared(p, blocks);
    // (1 KB for the kernel's static shared memory; no failing API call for a "no")
    if (*bytes + 1024 > static_cast<std::size_t>(optin)) return false;
    int per_sm = 0;
    TANDEM_CUDA_CHECK(resident::max_blocks_per_sm(*bytes, &per_sm), where_);
    return per_sm >= 1 && blocks + 1 <= sms * per_sm;  // + the poller block
  };
  if (config.blocks > 0) {
    blocks_ = config.blocks;
    if (!fits(blocks_, &shared_bytes_)) {
      bad(where_, "blocks = " + std::to_string(blocks_) + " needs " +
                      std::to_string(shared_bytes_) + " bytes of shared memory per block, and "
                      "the grid (blocks + 1 poller) must be resident at once on " +
                      std::to_string(sms) +
                      " SMs: use more blocks, a smaller max_batch, or blocks = 0 (auto)");
    }
  } else {
    for (int b = std::min(64, sms - 1); b >= 1 && b < sms; ++b) {
      if (fits(b, &shared_bytes_)) {
        blocks_ = b;
        break;
      }
    }
    if (blocks_ == 0) {
      bad(where_, "the chain's weights do not fit the shared memory of " + std::to_string(sms) +
                      " SMs (" + std::to_string(shared_bytes_) +
                      " bytes per block at one block per SM): use a smaller max_batch or model");
    }
    plan_shared(p, blocks_);
  }

  try {
    allocate_and_launch();
  } catch (...) {
    release_memory();
    throw;
  }
}

void CudaResidentChain::allocate_and_launch() {
  resident::Params& p = params_;
  const auto slots = static_cast<std::size_t>(config_.slots);
  const std::size_t words = (2 * slots) * resident::kWordStride + resident::kControlWords;
  const std::size_t host_bytes =
      words * sizeof(unsigned) + align_up(slots * in_ * sizeof(float), 64) + slots * out_ * sizeof(float);
  TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), where_);
  TANDEM_CUDA_CHECK(cudaHostAlloc(&host_, host_bytes, cudaHostAllocMapped), where_);
  std::memset(host_, 0, host_bytes);
  auto* hw = static_cast<unsigned*>(host_);
  doorbell_ = hw;
  done_ = hw + slots * resident::kWordStride;
  control_ = hw + 2 * slots * resident::kWordStride;
  in_slots_ = reinterpret_cast<float*>(hw + words);
  out_slots_ = reinterpret_cast<float*>(reinterpret_cast<char*>(in_slots_) +
                                        align_up(slots * in_ * sizeof(float), 64));
  void* host_dev = nullptr;
  TANDEM_CUDA_CHECK(cudaHostGetDevicePointer(&host_dev, host_, 0), where_);
  auto to_dev = [&](const void* h) {
    return static_cast<char*>(host_dev) + (static_cast<const char*>(h) - static_cast<char*>(host_));
  };
  p.doorbell = reinterpret_cast<unsigned*>(to_dev(doorbell_));
  p.done = reinterpret_cast<unsigned*>(to_dev(done_));
  p.control = reinterpret_cast<unsigned*>(to_dev(control_));
  p.in = reinterpret_cast<const float*>(to_dev(in_slots_));
  p.out = reinterpret_cast<float*>(to_dev(out_slots_));

  std::size_t dev_bytes = 0;
  auto carve = [&](std::size_t bytes) {
    const std::size_t at = dev_bytes;
    dev_bytes += align_up(bytes, 256);
    return at;
  };
  const std::size_t served_at = carve(resident::kMaxSlots * sizeof(unsigned));
  const std::size_t words_at = carve(resident::kDeviceWords * sizeof(unsigned));
  std::size_t act_at[resident::kMaxLayers] = {};
  for (int l = 0; l < p.layers; ++l) {  // by pass parity: two buffers each
    act_at[l] = carve(2 * static_cast<std::size_t>(p.max_batch) *
                      static_cast<std::size_t>(p.layer[l].in) * sizeof(float));
  }
  const std::size_t out_at = carve(2 * static_cast<std::size_t>(p.max_batch) * out_ * sizeof(float));
  TANDEM_CUDA_CHECK(cudaMalloc(&device_mem_, dev_bytes), where_);
  TANDEM_CUDA_CHECK(cudaMemsetAsync(device_mem_, 0, dev_bytes, stream_), where_);
  auto* base = static_cast<char*>(device_mem_);
  p.served = reinterpret_cast<unsigned*>(base + served_at);
  p.words = reinterpret_cast<unsigned*>(base + words_at);
  for (int l = 0; l < p.layers; ++l) p.act[l] = reinterpret_cast<float*>(base + act_at[l]);
  p.act_out = reinterpret_cast<float*>(base + out_at);

  leases_ = std::make_unique<SlotLease[]>(slots);
  launch_locked();
}

void CudaResidentChain::release_memory() noexcept {
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  if (device_mem_ != nullptr) (void)cudaFree(device_mem_);
  if (host_ != nullptr) (void)cudaFreeHost(host_);
  stream_ = nullptr;
  device_mem_ = nullptr;
  host_ = nullptr;
}

CudaResidentChain::~CudaResidentChain() {
  host_word(control_ + resident::kCommand).store(resident::kStopCommand, std::memory_order_release);
  // The grid sees the command within one poll; it may first finish a pass, or be waiting behind
  // other work of its hardware queue (bounded by that work).
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.timeout_ms) +
                        std::chrono::microseconds(config_.max_run_us);
  cudaError_t e = cudaErrorNotReady;
  while ((e = cudaStreamQuery(stream_)) == cudaErrorNotReady && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  if (e == cudaErrorNotReady) {
    // Freeing memory the grid may still touch would be worse than leaking it.
    std::fprintf(stderr, "tandem: %s: the grid did not exit within %lld ms of the stop command; "
                 "its memory is leaked\n", where_.c_str(), static_cast<long long>(config_.timeout_ms));
    return;
  }
  release_memory();
}

void CudaResidentChain::launch_locked() {
  device_.make_current();
  const unsigned epoch = launched_epoch_.load(std::memory_order_relaxed) + 1;
  params_.epoch = epoch;
  TANDEM_CUDA_CHECK(cudaMemsetAsync(params_.words, 0, resident::kDeviceWords * sizeof(unsigned),
                                    stream_),
                    where_);
  TANDEM_CUDA_CHECK(resident::launch(params_, blocks_ + 1, shared_bytes_, stream_), where_);
  launched_epoch_.store(epoch, std::memory_order_release);
  launches_.fetch_add(1, std::memory_order_relaxed);
}

void CudaResidentChain::relaunch_if_exited() {
  MutexLock lock(launch_mu_);
  if (host_word(control_ + resident::kExitedEpoch).load(std::memory_order_acquire) !=
      launched_epoch_.load(std::memory_order_relaxed)) {
    return;  // another caller relaunched first
  }
  if (host_word(control_ + resident::kCommand).load(std::memory_order_relaxed) ==
      resident::kStopCommand) {
    return;
  }
  try {
    launch_locked();
  } catch (const Error& e) {
    broken_reason_ = e.what();
    broken_.store(true, std::memory_order_release);
    throw;
  }
}

void CudaResidentChain::fail(ErrorKind kind, const std::string& what) {
  {
    MutexLock lock(launch_mu_);
    if (broken_reason_.empty()) broken_reason_ = what;
  }
  broken_.store(true, std::memory_order_release);
  throw Error(kind, where_ + ": " + what);
}

int CudaResidentChain::acquire_slot() {
  // Start from the calling thread's last slot (any chain's: only a hint), so that a thread that
  // calls again finds its slot free and threads spread over different slots.
  static std::atomic<int> next_hint{0};
  thread_local int hint = next_hint.fetch_add(1, std::memory_order_relaxed) % resident::kMaxSlots;
  const int slots = config_.slots;
  const auto t0 = Clock::now();
  for (std::uint64_t spins = 0;; ++spins) {
    for (int i = 0; i < slots; ++i) {
      const int slot = (hint + i) % slots;
      std::atomic<bool>& leased = leases_[static_cast<std::size_t>(slot)].leased;
      if (!leased.load(std::memory_order_relaxed) &&
          !leased.exchange(true, std::memory_order_acquire)) {
        hint = slot;
        return slot;
      }
    }
    std::this_thread::yield();
    if ((spins & 255) == 255 && Clock::now() - t0 > std::chrono::milliseconds(config_.timeout_ms)) {
      throw Error(ErrorKind::kTimeout,
                  where_ + ": no free slot within " + std::to_string(config_.timeout_ms) +
                      " ms: more than " + std::to_string(config_.slots) +
                      " callers at once; raise ResidentConfig::slots (at most " +
                      std::to_string(kResidentMaxSlots) + ") or the timeout");
    }
  }
}

void CudaResidentChain::release_slot(int slot) noexcept {
  leases_[static_cast<std::size_t>(slot)].leased.store(false, std::memory_order_release);
}

void CudaResidentChain::forward(const float* in, float* out) {
  if (broken_.load(std::memory_order_acquire)) {
    MutexLock lock(launch_mu_);
    throw Error(ErrorKind::kBackend, where_ + " is broken by an earlier failure (" +
                                         broken_reason_ + "); start a new one");
  }
  const int slot = acquire_slot();
  const auto s = static_cast<std::size_t>(slot);
  std::memcpy(in_slots_ + s * in_, in, in_ * sizeof(float));
  SlotLease& lease = leases_[s];
  const unsigned seq = ++lease.seq;
  host_word(doorbell_ + s * resident::kWordStride).store(seq, std::memory_order_release);
  auto done = host_word(done_ + s * resident::kWordStride);
  auto exited = host_word(control_ + resident::kExitedEpoch);
  const auto t0 = Clock::now();
  for (std::uint64_t spins = 0; done.load(std::memory_order_acquire) != seq; ++spins) {
    if (exited.load(std::memory_order_acquire) == launched_epoch_.load(std::memory_order_acquire)) {
      relaunch_if_exited();
    }
    if ((spins & 1023) == 1023) {
      const auto waited = Clock::now() - t0;
      if (waited > std::chrono::milliseconds(config_.timeout_ms)) {
        // The slot stays leased: the grid may still write its late result into it.
        const cudaError_t q = cudaStreamQuery(stream_);
        fail(ErrorKind::kTimeout,
             "forward not answered within " + std::to_string(config_.timeout_ms) + " ms (slot " +
                 std::to_string(slot) + ", sequence " + std::to_string(seq) + ", grid epoch " +
                 std::to_string(launched_epoch_.load()) + ", exited epoch " +
                 std::to_string(exited.load()) + ", cudaStreamQuery: " + cudaGetErrorName(q) +
                 "); the device may be faulted or held by other work");
      }
      if (waited > std::chrono::microseconds(50)) std::this_thread::yield();
    }
  }
  std::memcpy(out, out_slots_ + s * out_, out_ * sizeof(float));
  lease.forwards.store(lease.forwards.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  release_slot(slot);
}

ResidentStats CudaResidentChain::stats() const {
  ResidentStats st;
  for (int s = 0; s < config_.slots; ++s) {
    st.forwards += leases_[static_cast<std::size_t>(s)].forwards.load(std::memory_order_relaxed);
  }
  st.launches = launches_.load(std::memory_order_relaxed);
  auto total = [&](int word) {
    return std::atomic_ref<unsigned long long>(
               reinterpret_cast<unsigned long long*>(control_)[word / 2])
        .load(std::memory_order_relaxed);
  };
  st.passes = total(resident::kPasses);
  st.input_ns = total(resident::kPhaseInput);
  st.layers_ns = total(resident::kPhaseLayers);
  st.completion_ns = total(resident::kPhaseCompletion);
  st.publish_ns = total(resident::kPhasePublish);
  for (int l = 0; l < kResidentMaxLayers; ++l) {
    for (int k = 0; k < 3; ++k) st.layer_ns[l][k] = total(resident::kPhaseDetail + 2 * (3 * l + k));
  }
  st.blocks = blocks_;
  st.shared_bytes = shared_bytes_;
  return st;
}

}  // namespace tandem::backends::cuda
