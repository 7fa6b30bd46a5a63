// host_buffer.cpp — HostBuffer, and the host-memory defaults of BackendDevice.
#include "tandem/host_buffer.h"

#include <new>
#include <string>
#include <utility>

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/device.h"
#include "tandem/error.h"

namespace tandem {

namespace detail {

namespace {
constexpr std::align_val_t kHostAlign{64};
}  // namespace

void* BackendDevice::allocate_host(std::size_t bytes) {
  void* p = ::operator new(bytes, kHostAlign, std::nothrow);
  if (!p) {
    throw Error(ErrorKind::kOutOfMemory,
                "allocating " + std::to_string(bytes) + " bytes of host staging memory failed");
  }
  return p;
}

void BackendDevice::deallocate_host(void* p, std::size_t) noexcept {
  ::operator delete(p, kHostAlign);
}

}  // namespace detail

HostBuffer::HostBuffer(std::shared_ptr<Device> device, std::size_t bytes) : device_(std::move(device)) {
  if (!device_) throw Error(ErrorKind::kInvalidArgument, "HostBuffer: device is null");
  if (bytes == 0) return;
  device_->state().throw_if_closed();
  data_ = device_->state().impl_->allocate_host(bytes);
  bytes_ = bytes;
}

HostBuffer::~HostBuffer() { release(); }

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : device_(std::move(other.device_)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    release();
    device_ = std::move(other.device_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void HostBuffer::release() noexcept {
  if (data_) device_->state().impl_->deallocate_host(data_, bytes_);
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace tandem
