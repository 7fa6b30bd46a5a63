#include "serve/batch_runner.h"

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

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

// reserve(buf, device, floats): `buf` holds at least `floats` floats; grows to twice the need
// (page-locking is a system call: a few growths during warm-up, none afterwards).
float* reserve(HostBuffer& buf, const std::shared_ptr<Device>& device, std::size_t floats) {
  const std::size_t bytes = floats * sizeof(float);
  if (buf.size_bytes() < bytes) {
    buf = HostBuffer();  // free first: the old and new buffers need not coexist
    buf = HostBuffer(device, 2 * bytes);
  }
  return buf.floats();
}

}  // namespace

void set_host_rows(Request& r, const float* first, std::size_t n) {
  std::vector<float>& values = r.host_out.values;
  if (r.host_in.values.capacity() >= n) values = std::move(r.host_in.values);
  values.assign(first, first + n);
}

void run_merged_batch(const ForwardFn& forward, const std::shared_ptr<Device>& device,
                      Stream& stream, Staging& staging, const std::vector<RequestPtr>& batch) {
  const Kernels& k = device->kernels();
  const bool lone_tensor = batch.size() == 1 && !batch.front()->host;
  std::size_t total = 0;
  for (const auto& r : batch) total += r->rows();

  // Tensor inputs: order our reads after their producers' work.
  for (const auto& r : batch) {
    if (r->in_ready && !r->in_ready->query()) r->in_ready->wait(stream);
  }

  // 1. Merge along dimension 0 (a lone tensor request runs as it is). Host inputs are gathered
  //    into one host staging vector and uploaded with one copy per run of consecutive host
  //    requests (not one per request: on a GPU each copy is a driver call), from the executor's
  //    reused staging memory (page-locked on cuda).
  float* staging_in = nullptr;   // staging.in, when the batch has host inputs
  float* staging_out = nullptr;  // staging.out, when the batch has host outputs
  // If anything below throws, the copies already queued on `stream` may still read or write the
  // staging memory: wait for them before it is reused (or freed) by a later batch. The stream's
  // own error, if any, is left for the caller's synchronize.
  struct DrainOnUnwind {
    Stream& stream;
    int exceptions = std::uncaught_exceptions();
    ~DrainOnUnwind() {
      if (std::uncaught_exceptions() == exceptions) return;
      try {
        stream.synchronize();
      } catch (...) {
      }
    }
  } drain_on_unwind{stream};

  nn::Tensor merged;
  if (lone_tensor) {
    merged = batch.front()->device_in;
  } else {
    merged = nn::Tensor::empty(device, batch.front()->shape.with(0, total));  // on `stream`
    const std::size_t row = merged.numel() / total;                           // floats per row
    bool any_host = false;
    for (const auto& r : batch) any_host = any_host || r->host;
    if (any_host) staging_in = reserve(staging.in, device, merged.numel());
    Encoder enc(stream);
    std::size_t at = 0, run_begin = 0;
    bool in_run = false;
    auto end_run = [&](std::size_t end) {
      if (in_run && end > run_begin) {
        k.copy_from_host(enc, merged.data() + run_begin, staging_in + run_begin,
                         (end - run_begin) * sizeof(float));
      }
      in_run = false;
    };
    for (const auto& r : batch) {
      const std::size_t n = r->rows() * row;
      if (r->host) {
        std::copy(r->host_in.values.begin(), r->host_in.values.end(), staging_in + at);
        if (!in_run) run_begin = at;
        in_run = true;
      } else {
        end_run(at);
        k.copy(enc, merged.data() + at, r->device_in.data(), n * sizeof(float));
      }
      at += n;
    }
    end_run(at);
    enc.commit();
  }

  // 2. One forward.
  nn::Tensor out = forward(merged);
  check_output(out, total, merged.shape(), *device);

  // 3. Copy each request's rows out: tensors by a copy each into a new tensor; host rows by one
  //    download per run of consecutive host requests into a staging vector, split after the
  //    synchronize below.
  if (lone_tensor) {
    batch.front()->device_out = std::move(out);
  } else {
    const std::size_t row = out.numel() / total;
    bool any_host = false;
    for (const auto& r : batch) {  // allocate first: no allocation inside an open encoder
      if (r->host) {
        any_host = true;
        r->host_out.name = r->host_in.name;
        r->host_out.shape = out.shape().with(0, r->rows());
      } else {
        r->device_out = nn::Tensor::empty(device, out.shape().with(0, r->rows()));
      }
    }
    if (any_host) staging_out = reserve(staging.out, device, out.numel());
    Encoder enc(stream);
    std::size_t at = 0, run_begin = 0;
    bool in_run = false;
    auto end_run = [&](std::size_t end) {
      if (in_run && end > run_begin) {
        k.copy_to_host(enc, staging_out + run_begin, out.data() + run_begin,
                       (end - run_begin) * sizeof(float));
      }
      in_run = false;
    };
    for (const auto& r : batch) {
      const std::size_t n = r->rows() * row;
      if (r->host) {
        if (!in_run) run_begin = at;
        in_run = true;
      } else {
        end_run(at);
        k.copy(enc, r->device_out.data(), out.data() + at, n * sizeof(float));
      }
      at += n;
    }
    end_run(at);
    enc.commit();
  }

  // 4. Outputs are ready (and kernel errors raised) before anyone completes.
  stream.synchronize();
  if (staging_out) {
    const std::size_t row = out.numel() / total;
    std::size_t at = 0;
    for (const auto& r : batch) {
      const std::size_t n = r->rows() * row;
      if (r->host) set_host_rows(*r, staging_out + at, n);
      at += n;
    }
  }
}

}  // namespace tandem::serve::detail
