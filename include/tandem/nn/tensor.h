// tensor.h — tandem::nn::Tensor: device memory with a shape and a dtype; DType and Shape.
//
// A Tensor is a view of a shared, reference-counted Buffer (buffer.h): copying a Tensor is cheap
// and shares the memory; reshape() and slice() make views of the same memory. Tensors are always
// contiguous (row-major, last dimension fastest), so a view is a shape plus an element offset.
//
// Dtype: float32 is the only dtype implemented. float16 and bfloat16 are part of the API (DType)
// so that files and code can name them, but creating such a tensor throws
// Error(kInvalidArgument) ("not supported yet").
//
// Stream order and threads: a Tensor's memory is allocated on the creating thread's stream
// (Device::current_stream()) and freed in that stream's order when the last view goes. Work on
// it is encoded on the *calling* thread's stream; reading a tensor produced by another thread's
// stream needs that stream synchronized (or an Event) first. A Tensor object itself may be read
// (copied, queried) from any number of threads at once; writing the memory from two streams at
// once is a data race, as with any device memory. Weights of a loaded model are synchronized and
// read-only, so every thread may use them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/buffer.h"

namespace tandem {
class Device;
class Stream;
}  // namespace tandem

namespace tandem::nn {

enum class DType { kFloat32, kFloat16, kBFloat16 };

// "float32", "float16", "bfloat16".
[[nodiscard]] std::string_view to_string(DType dtype) noexcept;
// Bytes per element: 4, 2, 2.
[[nodiscard]] std::size_t dtype_size(DType dtype) noexcept;

// Shape: up to kMaxRank dimensions, stored inline (no heap allocation on hot paths).
class Shape {
 public:
  static constexpr std::size_t kMaxRank = 8;

  Shape() = default;  // rank 0: a scalar, numel() == 1
  // Shape({2, 3}). Throws Error(kInvalidArgument) past kMaxRank dimensions.
  Shape(std::initializer_list<std::size_t> dims);
  explicit Shape(std::span<const std::size_t> dims);

  [[nodiscard]] std::size_t rank() const { return rank_; }
  [[nodiscard]] std::size_t operator[](std::size_t i) const { return dims_[i]; }
  [[nodiscard]] std::span<const std::size_t> dims() const { return {dims_.data(), rank_}; }
  // numel(): the product of the dimensions (1 for rank 0). Callers building shapes from untrusted
  // input check for overflow first (safetensors.cpp does).
  [[nodiscard]] std::size_t numel() const;
  // with(i, v): a copy with dimension i set to v. Precondition: i < rank().
  [[nodiscard]] Shape with(std::size_t i, std::size_t v) const;
  // "[2, 3]".
  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<std::size_t, kMaxRank> dims_{};
  std::size_t rank_ = 0;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() == false; every other query is a precondition error

  // empty(device, shape): uninitialized float32 memory on the calling thread's stream. Throws
  // Error(kInvalidArgument) for float16/bfloat16 ("not supported yet"), Error(kOutOfMemory).
  [[nodiscard]] static Tensor empty(const std::shared_ptr<Device>& device, const Shape& shape,
                                    DType dtype = DType::kFloat32);
  // zeros(device, shape): like empty, filled with 0 (encoded on the calling thread's stream).
  [[nodiscard]] static Tensor zeros(const std::shared_ptr<Device>& device, const Shape& shape);
  // from_host(device, shape, values): a float32 tensor holding `values` (size must equal
  // shape.numel(), else Error(kInvalidArgument)). Returns when `values` may be reused: on
  // host-visible devices (cpu) it copies at once; elsewhere it encodes the copy on the calling
  // thread's stream and synchronizes that stream.
  [[nodiscard]] static Tensor from_host(const std::shared_ptr<Device>& device, const Shape& shape,
                                        std::span<const float> values);

  [[nodiscard]] bool defined() const { return storage_ != nullptr; }
  [[nodiscard]] const Shape& shape() const { return shape_; }
  [[nodiscard]] std::size_t dim(std::size_t i) const { return shape_[i]; }
  [[nodiscard]] std::size_t rank() const { return shape_.rank(); }
  [[nodiscard]] DType dtype() const { return dtype_; }
  [[nodiscard]] std::size_t numel() const { return shape_.numel(); }
  [[nodiscard]] std::size_t size_bytes() const { return numel() * dtype_size(dtype_); }
  [[nodiscard]] Device& device() const { return storage_->device(); }
  [[nodiscard]] const std::shared_ptr<Device>& device_ptr() const { return storage_->device_ptr(); }
  // data(): the device pointer of the first element (float32). Precondition: defined().
  [[nodiscard]] float* data() const { return storage_->as<float>() + offset_; }

  // to_host(out): copies the tensor into `out` (size must equal numel()) in the calling thread's
  // stream order and synchronizes that stream; rethrows a kernel error of that stream.
  void to_host(std::span<float> out) const;
  [[nodiscard]] std::vector<float> to_host() const;

  // reshape(shape): a view with the same elements in a new shape (numel must match, else
  // Error(kInvalidArgument)). Shares memory.
  [[nodiscard]] Tensor reshape(const Shape& shape) const;
  // slice(begin, end): rows [begin, end) of dimension 0 as a view (Error(kInvalidArgument) when
  // out of range). Shares memory.
  [[nodiscard]] Tensor slice(std::size_t begin, std::size_t end) const;

 private:
  std::shared_ptr<Buffer> storage_;
  std::size_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::kFloat32;
};

}  // namespace tandem::nn
