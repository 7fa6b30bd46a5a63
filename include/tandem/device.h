// device.h — tandem::Device: one per physical device; owns its stream pool, memory and stats.
//
// Threading: every method is thread-safe. Devices are shared (std::shared_ptr); Buffers, Events
// and thread-local stream leases keep their Device alive.
//
// Lifetime note [Device shutdown]: Device::get() devices live until the process ends. At exit
// (return from main, exit()) tandem first quiesces every device — workers finish the command
// buffer in hand and stop taking new ones — so that no worker runs kernels while static
// destructors (of tandem, of the BLAS, of the C++ runtime) run. Threads still encoding at that
// point block harmlessly until the process ends. Device::close() does the same on demand and
// makes later use an Error(kDeviceClosed).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/config.h"

namespace tandem {

class Kernels;
class Stream;
class StreamPool;
namespace detail {
class Backend;
class DeviceState;
}  // namespace detail

struct MemoryStats {
  std::int64_t current_bytes = 0;  // allocated and not yet freed
  std::int64_t peak_bytes = 0;     // high-water mark of current_bytes
  std::int64_t allocs = 0;         // number of allocations
  std::int64_t frees = 0;          // number of frees (completed, in stream order)
  // Device memory that cached graphs hold outside the allocator above (cuda: the graphs'
  // arenas, Note [Graph-owned memory]; freed with their graph); 0 on host backends.
  std::int64_t graph_bytes = 0;
};

class Device {
 public:
  // get(name): the process-wide device named "cpu", "cpu:0", "agx_model", "cuda", "cuda:1", ...
  // created on first use from RuntimeConfig::process(). Throws Error(kNotFound) for an unknown
  // backend or index, Error(kConfig) for a bad environment.
  [[nodiscard]] static std::shared_ptr<Device> get(std::string_view name);
  // get_default(): get(TANDEM_BACKEND), or the best available backend when unset (cuda when a
  // GPU is present, else cpu).
  [[nodiscard]] static std::shared_ptr<Device> get_default();
  // open(name, config): a private device with its own pool and policy, independent of get()'s;
  // used to compare lock policies in one process. config is validated (Error(kConfig)).
  [[nodiscard]] static std::shared_ptr<Device> open(std::string_view name,
                                                    const RuntimeConfig& config);
  // Backends compiled into this build ("cpu", "agx_model", "cuda").
  [[nodiscard]] static std::vector<std::string> backends();
  // Devices present now, by name ("cpu:0", "cuda:0", ...). Never throws.
  [[nodiscard]] static std::vector<std::string> available();

  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  [[nodiscard]] const std::string& name() const;     // "cpu:0"
  [[nodiscard]] const std::string& backend() const;  // "cpu"
  [[nodiscard]] int index() const;
  [[nodiscard]] const RuntimeConfig& config() const;
  [[nodiscard]] EncodingLockPolicy encoding_lock_policy() const;
  // Whether device memory is host-addressable (cpu, agx_model): Buffer::host_data() works.
  [[nodiscard]] bool host_visible() const;

  [[nodiscard]] StreamPool& streams();
  // current_stream(): the calling thread's worker stream, leased exclusively on the thread's first
  // call and returned (after a synchronize) when the thread exits. Follows the pool's wait policy
  // (may throw Error(kPoolExhausted)). Throws Error(kDeviceClosed) after close().
  [[nodiscard]] Stream& current_stream();
  [[nodiscard]] Stream& default_stream();

  [[nodiscard]] const Kernels& kernels() const;
  [[nodiscard]] MemoryStats memory_stats() const;

  // synchronize(): waits for the work of every stream; rethrows the first kernel error found.
  void synchronize();
  // close(): waits for all committed work, stops the streams; later use throws
  // Error(kDeviceClosed). Idempotent. Errors of the drained work are dropped (they were the
  // waiters' to collect).
  void close();
  [[nodiscard]] bool closed() const;

  [[nodiscard]] detail::DeviceState& state() { return *state_; }

 private:
  friend class detail::DeviceState;
  explicit Device(std::unique_ptr<detail::DeviceState> state);
  std::unique_ptr<detail::DeviceState> state_;
};

}  // namespace tandem
