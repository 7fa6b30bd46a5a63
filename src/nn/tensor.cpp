#include "tandem/nn/tensor.h"

#include <cstring>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::nn {

std::string_view to_string(DType dtype) noexcept {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) noexcept { return dtype == DType::kFloat32 ? 4 : 2; }

Shape::Shape(std::initializer_list<std::size_t> dims)
    : Shape(std::span<const std::size_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::size_t> dims) {
  if (dims.size() > kMaxRank) {
    throw Error(ErrorKind::kInvalidArgument, "a shape of rank " + std::to_string(dims.size()) +
                                                 " exceeds tandem's maximum rank " +
                                                 std::to_string(kMaxRank));
  }
  rank_ = dims.size();
  for (std::size_t i = 0; i < rank_; ++i) dims_[i] = dims[i];
}

std::size_t Shape::numel() const {
  std::size_t n = 1;
  for (std::size_t i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

Shape Shape::with(std::size_t i, std::size_t v) const {
  Shape s = *this;
  s.dims_[i] = v;
  return s;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (std::size_t i = 0; i < a.rank_; ++i) {
    if (a.dims_[i] != b.dims_[i]) return false;
  }
  return true;
}

Tensor Tensor::empty(const std::shared_ptr<Device>& device, const Shape& shape, DType dtype) {
  if (dtype != DType::kFloat32) {
    throw Error(ErrorKind::kInvalidArgument,
                "a " + std::string(to_string(dtype)) + " tensor of shape " + shape.to_string() +
                    " was requested; tandem supports float32 only so far (float16/bfloat16 are "
                    "planned): convert the data to float32");
  }
  Tensor t;
  t.storage_ = std::make_shared<Buffer>(device, shape.numel() * sizeof(float));
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const std::shared_ptr<Device>& device, const Shape& shape) {
  Tensor t = empty(device, shape);
  Encoder enc(device->current_stream());
  device->kernels().fill(enc, t.data(), t.numel(), 0.0f);
  return t;
}

Tensor Tensor::from_host(const std::shared_ptr<Device>& device, const Shape& shape,
                         std::span<const float> values) {
  if (values.size() != shape.numel()) {
    throw Error(ErrorKind::kInvalidArgument,
                "Tensor::from_host: " + std::to_string(values.size()) +
                    " values given for shape " + shape.to_string() + " (" +
                    std::to_string(shape.numel()) + " elements)");
  }
  Tensor t = empty(device, shape);
  if (values.empty()) return t;
  if (device->host_visible()) {
    // Fresh memory: no work in any stream uses it yet, so a host write is in order.
    std::memcpy(t.storage_->host_data(), values.data(), values.size_bytes());
    return t;
  }
  Stream& stream = device->current_stream();
  {
    Encoder enc(stream);
    device->kernels().copy_from_host(enc, t.data(), values.data(), values.size_bytes());
  }
  stream.synchronize();
  return t;
}

void Tensor::to_host(std::span<float> out) const {
  if (out.size() != numel()) {
    throw Error(ErrorKind::kInvalidArgument, "Tensor::to_host: a span of " +
                                                 std::to_string(out.size()) +
                                                 " floats given for a tensor of shape " +
                                                 shape_.to_string());
  }
  Stream& stream = device().current_stream();
  if (!out.empty()) {
    Encoder enc(stream);
    device().kernels().copy_to_host(enc, out.data(), data(), out.size_bytes());
  }
  stream.synchronize();
}

std::vector<float> Tensor::to_host() const {
  std::vector<float> v(numel());
  to_host(v);
  return v;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape.numel() != numel()) {
    throw Error(ErrorKind::kInvalidArgument, "reshape from " + shape_.to_string() + " to " +
                                                 shape.to_string() +
                                                 ": element counts differ (" +
                                                 std::to_string(numel()) + " vs " +
                                                 std::to_string(shape.numel()) + ")");
  }
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(std::size_t begin, std::size_t end) const {
  if (rank() == 0 || begin > end || end > shape_[0]) {
    throw Error(ErrorKind::kInvalidArgument,
                "slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") of dimension 0 is out of range for shape " + shape_.to_string());
  }
  std::size_t row = 1;  // elements per index of dimension 0
  for (std::size_t i = 1; i < rank(); ++i) row *= shape_[i];
  Tensor t = *this;
  t.offset_ += begin * row;
  t.shape_ = shape_.with(0, end - begin);
  return t;
}

}  // namespace tandem::nn
