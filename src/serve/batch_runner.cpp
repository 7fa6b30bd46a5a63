#include "serve/batch_runner.h"

#include <string>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/stream.h"

namespace tandem::serve::detail {

namespace {

// check_output(): the forward's output must be a defined float32 tensor on the queue's device
// with `rows` rows.
void check_output(const nn::Tensor& out, std::size_t rows, const nn::Shape& in_shape,
                  const Device& device) {
  std::string why;
  if (!out.defined()) {
    why = "returned an undefined tensor";
  } else if (out.rank() == 0 || out.dim(0) != rows) {
    why = "returned shape " + out.shape().to_string() + " for an input of shape " +
          in_shape.to_string() + "; the output must keep the batch dimension (" +
          std::to_string(rows) + " rows)";
  } else if (out.dtype() != nn::DType::kFloat32) {
    why = "returned a " + std::string(nn::to_string(out.dtype())) + " tensor; float32 expected";
  } else if (&out.device() != &device) {
    why = "returned a tensor on " + out.device().name() + ", not " + device.name();
  }
  if (!why.empty()) throw Error(ErrorKind::kInvalidArgument, "BatchQueue forward " + why);
}

}  // namespace

void run_merged_batch(const ForwardFn& forward, const std::shared_ptr<Device>& device,
                      Stream& stream, const std::vector<RequestPtr>& batch) {
  const Kernels& k = device->kernels();
  const bool lone_tensor = batch.size() == 1 && !batch.front()->host;
  std::size_t total = 0;
  for (const auto& r : batch) total += r->rows();

  // Tensor inputs: order our reads after their producers' work.
  for (const auto& r : batch) {
    if (r->in_ready && !r->in_ready->query()) r->in_ready->wait(stream);
  }

  // 1. Merge along dimension 0 (a lone tensor request runs as it is).
  nn::Tensor merged;
  if (lone_tensor) {
    merged = batch.front()->device_in;
  } else {
    merged = nn::Tensor::empty(device, batch.front()->shape.with(0, total));  // on `stream`
    const std::size_t row = merged.numel() / total;                           // floats per row
    Encoder enc(stream);
    float* dst = merged.data();
    for (const auto& r : batch) {
      const std::size_t n = r->rows() * row;
      if (r->host) {
        k.copy_from_host(enc, dst, r->host_in.values.data(), n * sizeof(float));
      } else {
        k.copy(enc, dst, r->device_in.data(), n * sizeof(float));
      }
      dst += n;
    }
    enc.commit();
  }

  // 2. One forward.
  nn::Tensor out = forward(merged);
  check_output(out, total, merged.shape(), *device);

  // 3. Copy each request's rows out.
  if (lone_tensor) {
    batch.front()->device_out = std::move(out);
  } else {
    const std::size_t row = out.numel() / total;
    for (const auto& r : batch) {  // allocate first: no allocation inside an open encoder
      if (r->host) {
        r->host_out.name = r->host_in.name;
        r->host_out.shape = out.shape().with(0, r->rows());
        r->host_out.values.resize(r->rows() * row);
      } else {
        r->device_out = nn::Tensor::empty(device, out.shape().with(0, r->rows()));
      }
    }
    Encoder enc(stream);
    const float* src = out.data();
    for (const auto& r : batch) {
      const std::size_t n = r->rows() * row;
      if (r->host) {
        k.copy_to_host(enc, r->host_out.values.data(), src, n * sizeof(float));
      } else {
        k.copy(enc, r->device_out.data(), src, n * sizeof(float));
      }
      src += n;
    }
    enc.commit();
  }

  // 4. Outputs are ready (and kernel errors raised) before anyone completes.
  stream.synchronize();
}

}  // namespace tandem::serve::detail
