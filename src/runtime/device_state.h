// device_state.h (private) — what a Device holds, shared by the runtime's sources.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/backend.h"
#include "tandem/device.h"
#include "tandem/mutex.h"
#include "tandem/stream.h"

namespace tandem::detail {

// The process-wide encoding mutex of policy `global` (leaked: usable while the process exits).
Mutex& global_encoding_mutex();

class DeviceState {
 public:
  DeviceState(std::string name, Backend& backend, int index, RuntimeConfig config,
              std::unique_ptr<BackendDevice> impl);

  // Creates the Device object around a new state (private constructor access).
  static std::shared_ptr<Device> make_device(std::unique_ptr<DeviceState> state);

  const std::string name_;
  Backend& backend_;
  const std::string backend_name_;
  const int index_;
  const std::uint64_t id_;  // unique per process, keys the thread-local stream cache
  const RuntimeConfig config_;
  const EncodingLockPolicy policy_;
  const std::unique_ptr<BackendDevice> impl_;
  std::unique_ptr<StreamPool> pool_;  // set once in make_device, never reset
  std::weak_ptr<Device> self_;        // set once in make_device

  // Memory stats. Writers: Buffer allocation (any thread) and the free callbacks (stream workers);
  // relaxed: they are counters, read as a snapshot.
  std::atomic<std::int64_t> current_bytes_{0};
  std::atomic<std::int64_t> peak_bytes_{0};
  std::atomic<std::int64_t> allocs_{0};
  std::atomic<std::int64_t> frees_{0};

  // closed_: set once by close() (release), read by every entry point (acquire).
  std::atomic<bool> closed_{false};

  // throw_if_closed(): Error(kDeviceClosed) naming the device.
  void throw_if_closed() const;
  void note_alloc(std::int64_t bytes);
  void note_free(std::int64_t bytes);
};

// park_until_process_exit(): blocks the calling thread forever. Used instead of an error for a
// thread that touches a device after the exit quiesce: the process is ending, and an exception
// would only std::terminate a thread that cannot expect it.
[[noreturn]] void park_until_process_exit();
// process_exiting(): true once the exit quiesce began.
[[nodiscard]] bool process_exiting();

// Quiesces every live device (Note [Device shutdown]); registered with atexit once.
void register_for_exit_quiesce(DeviceState* state);
void unregister_for_exit_quiesce(DeviceState* state);

}  // namespace tandem::detail
