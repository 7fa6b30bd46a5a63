#include "tandem/buffer.h"

#include <utility>

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem {

Buffer::Buffer(const std::shared_ptr<Device>& device, std::size_t bytes)
    : Buffer(device, bytes, device->current_stream()) {}

Buffer::Buffer(const std::shared_ptr<Device>& device, std::size_t bytes, Stream& stream)
    : device_(device), stream_(&stream), bytes_(bytes) {
  if (&stream.device() != device.get()) {
    throw Error(ErrorKind::kInvalidArgument, "Buffer on " + device->name() +
                                                 " given a stream of " + stream.device().name());
  }
  auto& state = device->state();
  state.throw_if_closed();
  if (bytes == 0) return;
  data_ = state.impl_->allocate(bytes, stream.impl());
  state.note_alloc(static_cast<std::int64_t>(bytes));
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : device_(std::move(other.device_)),
      stream_(std::exchange(other.stream_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    device_ = std::move(other.device_);
    stream_ = std::exchange(other.stream_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void* Buffer::host_data() const {
  if (device_ && !device_->host_visible()) {
    throw Error(ErrorKind::kInvalidArgument,
                "Buffer::host_data() on " + device_->name() +
                    ", whose memory is not host-visible; use download() instead");
  }
  return data_;
}

void Buffer::release() noexcept {
  if (data_) {
    auto& state = device_->state();
    const auto bytes = static_cast<std::int64_t>(bytes_);
    detail::DeviceState* s = &state;
    state.impl_->deallocate(data_, bytes_, stream_->impl(), [s, bytes] { s->note_free(bytes); });
  }
  data_ = nullptr;
  bytes_ = 0;
  stream_ = nullptr;
  device_.reset();
}

}  // namespace tandem
