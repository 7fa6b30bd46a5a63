// test_model.h — a small row-wise model for the BatchQueue tests, with hooks to gate, slow down
// and fail batches, and a record of which rows ran.
//
// forward: y[r] = W x[r] + b for every row r (W: out x in, deterministic), computed by a host
// function encoded on the executor's stream — so output rows depend on their own input rows
// only, and any mixed-up, shifted or duplicated row shows up as a wrong value.
// Inputs encode who they belong to: x[r][0] = request id, x[r][1] = row index (exact in float32
// below 2^24); the other elements are pseudo-random from the id.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/nn/models.h"
#include "tandem/nn/safetensors.h"
#include "tandem/nn/tensor.h"
#include "tandem/serve/batch_queue.h"
#include "tandem/stream.h"

namespace tandem::serve::testing {

// test_seed(): SERVE_TEST_SEED if set, else random; printed so a failure can be replayed.
inline std::uint64_t test_seed() {
  std::uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("SERVE_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("[ seed     ] SERVE_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

inline bool under_sanitizer() {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

// A one-shot gate: forward() blocks on it (when armed) until open().
class Gate {
 public:
  void arm() {
    std::lock_guard<std::mutex> l(mu_);
    armed_ = true;
  }
  void open() {
    std::lock_guard<std::mutex> l(mu_);
    armed_ = false;
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock<std::mutex> l(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(l, [&] { return !armed_; });
    --waiting_;
  }
  // wait_for_waiters(n): blocks until n threads are inside pass().
  void wait_for_waiters(int n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  int waiting_ = 0;
};

class TestModel {
 public:
  enum class Fault { kNone, kThrowInForward, kThrowInKernel };

  TestModel(std::int64_t in, std::int64_t out) : in_(in), out_(out) {
    w_.resize(static_cast<std::size_t>(in * out));
    b_.resize(static_cast<std::size_t>(out));
    for (std::size_t i = 0; i < w_.size(); ++i) w_[i] = static_cast<float>((i * 37 % 101)) / 101.0f - 0.5f;
    for (std::size_t j = 0; j < b_.size(); ++j) b_[j] = static_cast<float>(j) * 0.25f;
  }

  std::int64_t in() const { return in_; }
  std::int64_t out() const { return out_; }

  // Hooks (set before the queue starts; read-only while it runs, except the atomics and gate).
  Gate gate;                                   // forward waits on it
  std::chrono::microseconds delay{0};          // each batch's kernel sleeps this long
  Fault fault = Fault::kNone;                  // for batches holding a poisoned request
  std::function<bool(std::int64_t id)> poisoned = [](std::int64_t) { return false; };

  std::atomic<int> forwards{0};
  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};

  // What ran: one entry per batch (the ids of its rows, in order) and every id.
  std::vector<std::vector<std::int64_t>> batches() {
    std::lock_guard<std::mutex> l(mu_);
    return batches_;
  }
  std::set<std::int64_t> ran_ids() {
    std::lock_guard<std::mutex> l(mu_);
    return ran_;
  }
  std::vector<std::vector<std::int64_t>> failed_batches() {
    std::lock_guard<std::mutex> l(mu_);
    return failed_batches_;
  }
  std::vector<nn::Shape> shapes() {
    std::lock_guard<std::mutex> l(mu_);
    return shapes_;
  }

  ForwardFn fn() {
    return [this](const nn::Tensor& x) { return forward(x); };
  }

  // forward(x): like nn::Model::forward, on the calling thread's stream.
  nn::Tensor forward(const nn::Tensor& x) {
    Stream& stream = x.device().current_stream();
    const int now = concurrent.fetch_add(1) + 1;
    int seen = max_concurrent.load();
    while (now > seen && !max_concurrent.compare_exchange_weak(seen, now)) {
    }
    struct Leave {
      std::atomic<int>& c;
      ~Leave() { c.fetch_sub(1); }
    } leave{concurrent};
    forwards.fetch_add(1);
    gate.pass();
    const auto rows = static_cast<std::int64_t>(x.dim(0));
    if (static_cast<std::int64_t>(x.numel()) != rows * in_) {
      throw Error(ErrorKind::kInvalidArgument, "TestModel: wrong row size");
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      shapes_.push_back(x.shape());
    }
    if (fault == Fault::kThrowInForward) {
      stream.synchronize();  // host-visible (cpu): read the merged input
      const float* p = x.data();
      for (std::int64_t r = 0; r < rows; ++r) {
        if (poisoned(static_cast<std::int64_t>(p[r * in_]))) {
          std::vector<std::int64_t> ids;
          for (std::int64_t i = 0; i < rows; ++i) ids.push_back(static_cast<std::int64_t>(p[i * in_]));
          std::lock_guard<std::mutex> l(mu_);
          failed_batches_.push_back(std::move(ids));
          throw Error(ErrorKind::kKernel, "TestModel: poisoned batch (thrown by forward)");
        }
      }
    }
    nn::Tensor y = nn::Tensor::empty(x.device_ptr(), nn::Shape{static_cast<std::size_t>(rows),
                                                               static_cast<std::size_t>(out_)});
    Encoder enc(stream);
    const float* xp = x.data();
    float* yp = y.data();
    enc.dispatch([this, xp, yp, rows] {
      std::vector<std::int64_t> ids;
      bool poison = false;
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto id = static_cast<std::int64_t>(xp[r * in_]);
        ids.push_back(id);
        poison = poison || poisoned(id);
      }
      if (fault == Fault::kThrowInKernel && poison) {
        std::lock_guard<std::mutex> l(mu_);
        failed_batches_.push_back(ids);
        throw Error(ErrorKind::kKernel, "TestModel: poisoned batch (raised by the kernel)");
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      compute(xp, yp, rows);
      std::lock_guard<std::mutex> l(mu_);
      ran_.insert(ids.begin(), ids.end());
      batches_.push_back(std::move(ids));
    });
    enc.commit();
    return y;
  }

  // reference(x): the expected output on the host (the same arithmetic, in the same order).
  std::vector<float> reference(const std::vector<float>& x) const {
    const auto rows = static_cast<std::int64_t>(x.size()) / in_;
    std::vector<float> y(static_cast<std::size_t>(rows * out_));
    compute(x.data(), y.data(), rows);
    return y;
  }

  // input(id, rows): the distinct input of request `id`.
  nn::HostTensor input(std::int64_t id, std::int64_t rows) const {
    nn::HostTensor h;
    h.name = "request " + std::to_string(id);
    h.shape = nn::Shape{static_cast<std::size_t>(rows), static_cast<std::size_t>(in_)};
    h.values.resize(static_cast<std::size_t>(rows * in_));
    std::uint64_t s = static_cast<std::uint64_t>(id) * 0x9E3779B97F4A7C15ull + 1;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t k = 0; k < in_; ++k) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float v = static_cast<float>(s % 2001) / 1000.0f - 1.0f;
        if (k == 0) v = static_cast<float>(id);
        if (k == 1) v = static_cast<float>(r);
        h.values[static_cast<std::size_t>(r * in_ + k)] = v;
      }
    }
    return h;
  }

 private:
  void compute(const float* x, float* y, std::int64_t rows) const {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < out_; ++j) {
        float acc = b_[static_cast<std::size_t>(j)];
        for (std::int64_t k = 0; k < in_; ++k) {
          // the id column is scaled down so outputs stay in a float-friendly range
          const float xv = k == 0 ? x[r * in_ + k] * 1e-3f : x[r * in_ + k];
          acc += w_[static_cast<std::size_t>(j * in_ + k)] * xv;
        }
        y[r * out_ + j] = acc;
      }
    }
  }

  const std::int64_t in_, out_;
  std::vector<float> w_, b_;
  std::mutex mu_;
  std::vector<std::vector<std::int64_t>> batches_;
  std::vector<std::vector<std::int64_t>> failed_batches_;
  std::set<std::int64_t> ran_;
  std::vector<nn::Shape> shapes_;
};

// TestModel as an nn::Model (graph batching needs one): input {b, in}, output {b, out}; its
// forward is TestModel::forward, gate and faults included.
class TestModelAsModel final : public nn::Model {
 public:
  TestModelAsModel(std::shared_ptr<Device> device, TestModel& m)
      : nn::Model(std::move(device)), m_(m) {}
  [[nodiscard]] std::string_view name() const override { return "test_model"; }
  [[nodiscard]] nn::Shape input_shape(std::size_t batch) const override {
    return {batch, static_cast<std::size_t>(m_.in())};
  }
  [[nodiscard]] nn::Shape output_shape(std::size_t batch) const override {
    return {batch, static_cast<std::size_t>(m_.out())};
  }
  [[nodiscard]] nn::Tensor forward(const nn::Tensor& input) const override {
    return m_.forward(input);
  }

 private:
  TestModel& m_;
};

// direct_forward(model, device, x): the model run on x alone, on the calling thread's stream,
// without the queue — what every queued result is checked against.
inline std::vector<float> direct_forward(TestModel& model, const std::shared_ptr<Device>& device,
                                         const nn::HostTensor& x) {
  nn::Tensor in = nn::Tensor::from_host(device, x.shape, x.values);
  return model.forward(in).to_host();
}

// error_kind(f): the ErrorKind a ready future ended with, or nullopt for a value.
template <class F>
std::optional<ErrorKind> error_kind(F& f) {
  try {
    (void)f.get();
    return std::nullopt;
  } catch (const Error& e) {
    return e.kind();
  }
}

}  // namespace tandem::serve::testing
