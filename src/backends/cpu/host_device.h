// host_device.h (private) — HostDevice: the BackendDevice of host-executed backends: HostStreams,
// HostEvents, aligned host memory freed in stream order. agx_model derives from it.
#pragma once

#include <string>

#include "backends/cpu/cpu_kernels.h"
#include "runtime/backend.h"

namespace tandem::backends {

class HostDevice : public detail::BackendDevice {
 public:
  explicit HostDevice(std::string name) : name_(std::move(name)) {}
  [[nodiscard]] std::unique_ptr<detail::StreamImpl> create_stream(int index) override;
  [[nodiscard]] std::unique_ptr<detail::EventImpl> create_event(bool timing) override;
  [[nodiscard]] void* allocate(std::size_t bytes, detail::StreamImpl& stream) override;
  void deallocate(void* p, std::size_t bytes, detail::StreamImpl& stream,
                  std::function<void()> on_freed) override;
  [[nodiscard]] const Kernels& kernels() const override { return kernels_; }

 protected:
  const std::string name_;

 private:
  CpuKernels kernels_;
};

}  // namespace tandem::backends
