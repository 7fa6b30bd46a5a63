// cpu_backend.cpp — the cpu backend: always available, one device, encoding lock `none`
// (exclusive stream ownership suffices: nothing in it is shared between streams).
#include "backends/cpu/host_device.h"
#include "runtime/backend.h"

namespace tandem::backends {
namespace {

class CpuBackend : public detail::Backend {
 public:
  [[nodiscard]] std::string name() const override { return "cpu"; }
  [[nodiscard]] int device_count() const override { return 1; }
  [[nodiscard]] EncodingLockPolicy default_encoding_lock() const override {
    return EncodingLockPolicy::kNone;
  }
  [[nodiscard]] bool host_visible() const override { return true; }
  [[nodiscard]] std::unique_ptr<detail::BackendDevice> open(int index,
                                                            const RuntimeConfig&) override {
    return std::make_unique<HostDevice>("cpu:" + std::to_string(index));
  }
};

const detail::BackendRegistrar registrar{std::make_unique<CpuBackend>()};

}  // namespace
}  // namespace tandem::backends
