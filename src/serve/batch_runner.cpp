#include "serve/batch_runner.h"

#include <string>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::serve::detail {

namespace {

std::int64_t product(Shape::const_iterator first, Shape::const_iterator last) {
  std::int64_t n = 1;
  for (; first != last; ++first) n *= *first;
  return n;
}

std::string shape_string(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// check_output(): the forward's output must have `rows` rows, a float32 buffer of its shape's
// size, on the queue's device.
void check_output(const Rows& out, std::int64_t rows, const Shape& in_shape, const Device& device) {
  std::string why;
  if (out.shape.empty() || out.shape[0] != rows) {
    why = "returned shape " + shape_string(out.shape) + " for an input of shape " +
          shape_string(in_shape) + "; the output must keep the batch dimension (" +
          std::to_string(rows) + " rows)";
  } else if (out.buffer.size_bytes() !=
             static_cast<std::size_t>(product(out.shape.begin(), out.shape.end())) * sizeof(float)) {
    why = "returned a buffer of " + std::to_string(out.buffer.size_bytes()) +
          " bytes for shape " + shape_string(out.shape) + " (float32)";
  } else if (!out.buffer.empty() && &out.buffer.device() != &device) {
    why = "returned a buffer on " + out.buffer.device().name() + ", not " + device.name();
  }
  if (!why.empty()) throw Error(ErrorKind::kInvalidArgument, "BatchQueue forward " + why);
}

}  // namespace

void run_merged_batch(const ForwardFn& forward, const std::shared_ptr<Device>& device,
                      Stream& stream, const std::vector<RequestPtr>& batch) {
  const Kernels& k = device->kernels();
  const Shape& sample = batch.front()->sample;
  const std::int64_t in_row = product(sample.begin(), sample.end());  // floats per input row
  std::int64_t total = 0;
  for (const auto& r : batch) total += r->rows();

  // Device inputs: order our reads after their producers' work.
  for (const auto& r : batch) {
    if (!r->host && r->in_ready && !r->in_ready->query()) r->in_ready->wait(stream);
  }

  // 1. Merge (or pass a lone device request through).
  Rows merged;
  const Rows* input = nullptr;
  if (batch.size() == 1 && !batch.front()->host) {
    input = &*batch.front()->device_in;
  } else {
    merged.shape = batch.front()->shape;
    merged.shape[0] = total;
    merged.buffer = Buffer(device, static_cast<std::size_t>(total * in_row) * sizeof(float), stream);
    Encoder enc(stream);
    auto* dst = merged.buffer.as<float>();
    for (const auto& r : batch) {
      const auto bytes = static_cast<std::size_t>(r->rows() * in_row) * sizeof(float);
      if (r->host) {
        k.copy_from_host(enc, dst, r->host_in.data.data(), bytes);
      } else {
        k.copy(enc, dst, r->device_in->buffer.data(), bytes);
      }
      dst += r->rows() * in_row;
    }
    enc.commit();
    input = &merged;
  }

  // 2. One forward.
  Rows out = forward(stream, *input);
  check_output(out, total, input->shape, *device);
  const Shape out_sample(out.shape.begin() + 1, out.shape.end());
  const std::int64_t out_row = product(out_sample.begin(), out_sample.end());

  // 3. Slice the output rows back.
  if (batch.size() == 1 && !batch.front()->host) {
    batch.front()->device_out = std::move(out);
  } else {
    for (const auto& r : batch) {  // allocate first: no allocation inside an open encoder
      const auto n = static_cast<std::size_t>(r->rows() * out_row);
      if (r->host) {
        r->host_out.data.resize(n);
      } else {
        r->device_out.buffer = Buffer(device, n * sizeof(float), stream);
      }
    }
    Encoder enc(stream);
    const auto* src = out.buffer.as<float>();
    for (const auto& r : batch) {
      const auto bytes = static_cast<std::size_t>(r->rows() * out_row) * sizeof(float);
      if (r->host) {
        k.copy_to_host(enc, r->host_out.data.data(), src, bytes);
      } else {
        k.copy(enc, r->device_out.buffer.data(), src, bytes);
      }
      src += r->rows() * out_row;
    }
    enc.commit();
  }
  for (const auto& r : batch) {
    Shape s;
    s.reserve(out.shape.size());
    s.push_back(r->rows());
    s.insert(s.end(), out_sample.begin(), out_sample.end());
    (r->host ? r->host_out.shape : r->device_out.shape) = std::move(s);
  }

  // 4. Outputs are ready (and kernel errors raised) before anyone completes.
  stream.synchronize();
}

}  // namespace tandem::serve::detail
