// agx_backend.cpp — the agx_model backend: the cpu backend's execution and kernels behind a
// command-encoder layer with the AGX driver's context race (agx_context_table.h). Default
// encoding lock: `global`, the only policy under which the race cannot happen (see
// Note [The AGX context race]). Priority below cpu: never the default device.
#include "backends/agx_model/agx_context_table.h"
#include "backends/agx_model/agx_stream.h"
#include "backends/cpu/host_device.h"
#include "runtime/backend.h"

namespace tandem::backends::agx {
namespace {

// AgxDevice: a HostDevice whose streams share one context table (one per device, as the driver
// keeps one per MTLDevice).
class AgxDevice : public HostDevice {
 public:
  AgxDevice(std::string name, int window_us)
      : HostDevice(std::move(name)), table_(std::make_shared<ContextTable>(window_us)) {}

  [[nodiscard]] std::unique_ptr<detail::StreamImpl> create_stream(int index) override {
    return std::make_unique<AgxStream>(name_ + " stream " + std::to_string(index), table_);
  }

 private:
  const std::shared_ptr<ContextTable> table_;
};

class AgxModelBackend : public detail::Backend {
 public:
  [[nodiscard]] std::string name() const override { return "agx_model"; }
  [[nodiscard]] int device_count() const override { return 1; }
  // The racy driver needs the process-wide lock; `stream` and `none` are for the experiment.
  [[nodiscard]] EncodingLockPolicy default_encoding_lock() const override {
    return EncodingLockPolicy::kGlobal;
  }
  [[nodiscard]] bool host_visible() const override { return true; }
  [[nodiscard]] int default_priority() const override { return -1; }
  [[nodiscard]] std::unique_ptr<detail::BackendDevice> open(int index,
                                                            const RuntimeConfig& config) override {
    return std::make_unique<AgxDevice>("agx_model:" + std::to_string(index),
                                       config.agx_model_window_us);
  }
};

const detail::BackendRegistrar registrar{std::make_unique<AgxModelBackend>()};

}  // namespace
}  // namespace tandem::backends::agx
