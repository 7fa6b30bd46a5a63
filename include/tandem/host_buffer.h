// host_buffer.h — tandem::HostBuffer: host memory set up for fast copies to and from a device.
//
// On cuda it is page-locked (cudaHostAlloc): copy_from_host / copy_to_host from it run on the
// copy engines at full bus speed and asynchronously, where pageable memory goes through the
// driver's own bounce buffer (slower, and the host thread waits). On the host backends it is
// plain 64-byte-aligned memory. Page-locking costs a system call and pins physical pages, so
// allocate once and reuse (a staging buffer per executor thread), never per request.
//
// Threading: a HostBuffer is a plain owner (movable, not copyable); the memory is the caller's
// to synchronize, as with any host memory handed to a stream: it must stay alive, unmodified for
// uploads, until the copies that use it have run (Stream::synchronize or an Event). The buffer
// keeps its Device alive.
#pragma once

#include <cstddef>
#include <memory>

namespace tandem {

class Device;

class HostBuffer {
 public:
  HostBuffer() = default;  // empty: data() is null, size_bytes() is 0
  // HostBuffer(device, bytes): `bytes` of host memory for copies with `device` (uninitialized).
  // Throws Error(kOutOfMemory) naming the size, Error(kDeviceClosed) after device->close().
  HostBuffer(std::shared_ptr<Device> device, std::size_t bytes);
  ~HostBuffer();
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  [[nodiscard]] void* data() const { return data_; }
  [[nodiscard]] float* floats() const { return static_cast<float*>(data_); }
  [[nodiscard]] std::size_t size_bytes() const { return bytes_; }
  [[nodiscard]] bool empty() const { return bytes_ == 0; }

 private:
  void release() noexcept;
  std::shared_ptr<Device> device_;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace tandem
