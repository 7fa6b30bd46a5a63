// buffer.h — Buffer: device memory, allocated and freed in stream order, with stats.
//
// A Buffer belongs to one stream (the calling thread's stream at allocation unless given). Its
// memory is usable by work encoded on that stream at once; using it from another stream needs an
// Event between them. Destruction frees it in stream order: the memory is reused only after the
// work already committed to its stream has run (cudaFreeAsync on cuda). Device stats count it.
// Move-only; keeps its Device alive. Throws Error(kOutOfMemory) with the size and the pool state.
#pragma once

#include <cstddef>
#include <memory>

namespace tandem {

class Device;
class Stream;

class Buffer {
 public:
  Buffer() = default;  // empty: data() == nullptr, size_bytes() == 0
  // Buffer(device, bytes): on device.current_stream().
  Buffer(const std::shared_ptr<Device>& device, std::size_t bytes);
  Buffer(const std::shared_ptr<Device>& device, std::size_t bytes, Stream& stream);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  [[nodiscard]] void* data() const { return data_; }
  template <class T>
  [[nodiscard]] T* as() const { return static_cast<T*>(data_); }
  [[nodiscard]] std::size_t size_bytes() const { return bytes_; }
  [[nodiscard]] bool empty() const { return data_ == nullptr; }
  [[nodiscard]] Device& device() const { return *device_; }
  [[nodiscard]] const std::shared_ptr<Device>& device_ptr() const { return device_; }
  [[nodiscard]] Stream& stream() const { return *stream_; }
  // host_data(): the memory as host-addressable, for host-visible devices (cpu, agx_model); else
  // Error(kInvalidArgument). The caller synchronizes the stream before reading.
  [[nodiscard]] void* host_data() const;

 private:
  void release() noexcept;
  std::shared_ptr<Device> device_;
  Stream* stream_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace tandem
