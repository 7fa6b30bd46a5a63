// kernels.h — Kernels: the table of device kernels every backend implements.
//
// Each kernel records work through an Encoder (so it runs in the encoder's stream order) on
// device pointers of that backend; pointers must stay valid until the work has run (Buffers freed
// in stream order guarantee it). Sizes are element counts of float32 unless named *_bytes.
// Kernels never block; errors raised while they run are delivered by synchronize/event waits.
// Implementations are stateless and thread-safe: one table per backend, shared by all threads.
//
// Backends: src/backends/cpu (host worker threads), src/backends/agx_model (the cpu kernels
// behind a racy encoder layer), src/backends/cuda (own kernels, cuBLAS/cuBLASLt).
#pragma once

#include <cstddef>

namespace tandem {

class Encoder;

class Kernels {
 public:
  virtual ~Kernels() = default;

  // Runtime kernels.
  virtual void fill(Encoder& enc, float* y, std::size_t n, float value) const = 0;
  // scale: y[i] = x[i] * a   (y may alias x)
  virtual void scale(Encoder& enc, float* y, const float* x, std::size_t n, float a) const = 0;
  // add: y[i] = a[i] + b[i]  (y may alias a or b)
  virtual void add(Encoder& enc, float* y, const float* a, const float* b,
                   std::size_t n) const = 0;
  // copy: device to device, bytes (regions must not overlap)
  virtual void copy(Encoder& enc, void* dst, const void* src, std::size_t bytes) const = 0;
  // sum: out[0] = sum of x[0..n)  (pairwise / tree order; float32 result)
  virtual void sum(Encoder& enc, float* out, const float* x, std::size_t n) const = 0;
  // Host <-> device copies; the host memory must stay valid until the work has run.
  virtual void copy_from_host(Encoder& enc, void* dst, const void* host_src,
                              std::size_t bytes) const = 0;
  virtual void copy_to_host(Encoder& enc, void* host_dst, const void* src,
                            std::size_t bytes) const = 0;
};

}  // namespace tandem
