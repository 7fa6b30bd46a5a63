#include "backends/cpu/host_device.h"

#include <cstdlib>

#include "backends/cpu/host_event.h"
#include "backends/cpu/host_stream.h"
#include "tandem/error.h"

namespace tandem::backends {

std::unique_ptr<detail::StreamImpl> HostDevice::create_stream(int index) {
  return std::make_unique<HostStream>(name_ + " stream " + std::to_string(index));
}

std::unique_ptr<detail::EventImpl> HostDevice::create_event(bool timing) {
  return std::make_unique<HostEvent>(timing);
}

void* HostDevice::allocate(std::size_t bytes, detail::StreamImpl&) {
  constexpr std::size_t kAlign = 64;
  const std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) {
    throw Error(ErrorKind::kOutOfMemory, "allocating " + std::to_string(bytes) + " bytes on " +
                                             name_ + " failed (host memory exhausted)");
  }
  return p;
}

void HostDevice::deallocate(void* p, std::size_t, detail::StreamImpl& stream,
                            std::function<void()> on_freed) {
  stream.submit(
      [p, on_freed = std::move(on_freed)] {
        std::free(p);
        on_freed();
      },
      /*always=*/true);
}

}  // namespace tandem::backends
