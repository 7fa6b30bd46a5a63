// bench_models.cpp — the reference-model workloads of `tandem bench` (--model mlp|encoder).
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "bench_workload.h"
#include "tandem/device.h"
#include "tandem/graph.h"
#include "tandem/mutex.h"
#include "tandem/nn/models.h"
#include "tandem/nn/resident.h"
#include "tandem/stream.h"

namespace tandem::cli {

namespace {

// One model per device, shared by the benchmark threads of that device. The device is held, so
// a later device cannot reuse its address while its model is cached.
class ModelCache {
 public:
  ModelCache(std::string name, std::uint64_t seed) : name_(std::move(name)), seed_(seed) {}

  std::shared_ptr<const nn::Model> get(const std::shared_ptr<Device>& device) TANDEM_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    for (const auto& [d, m] : models_) {
      if (d == device) return m;
    }
    // Loaded under the lock: the other threads of this point wait for it (before timing starts).
    auto m = nn::load_model(name_, device, {std::nullopt, seed_});
    models_.emplace_back(device, m);
    return m;
  }

 private:
  const std::string name_;
  const std::uint64_t seed_;
  Mutex mu_;
  std::vector<std::pair<std::shared_ptr<Device>, std::shared_ptr<const nn::Model>>> models_
      TANDEM_GUARDED_BY(mu_);
};

// One resident server per device (ResidentModel), shared by the benchmark threads of that device.
class ResidentCache {
 public:
  explicit ResidentCache(std::uint64_t seed) : models_(std::string("mlp"), seed) {}

  std::shared_ptr<nn::ResidentModel> get(const std::shared_ptr<Device>& device)
      TANDEM_EXCLUDES(mu_) {
    std::shared_ptr<const nn::Model> m = models_.get(device);
    MutexLock lock(mu_);
    for (const auto& [d, r] : servers_) {
      if (d == device) return r;
    }
    auto r = std::make_shared<nn::ResidentModel>(m);
    servers_.emplace_back(device, r);
    return r;
  }

  // The servers' stats, summed (a point uses one server; the others are idle).
  ResidentStats total() const TANDEM_EXCLUDES(mu_) {
    ResidentStats sum;
    MutexLock lock(mu_);
    for (const auto& [d, r] : servers_) {
      const ResidentStats st = r->stats();
      sum.forwards += st.forwards;
      sum.passes += st.passes;
      sum.launches += st.launches;
      sum.input_ns += st.input_ns;
      sum.publish_ns += st.publish_ns;
      sum.layers_ns += st.layers_ns;
      sum.completion_ns += st.completion_ns;
    }
    return sum;
  }

 private:
  ModelCache models_;
  mutable Mutex mu_;
  std::vector<std::pair<std::shared_ptr<Device>, std::shared_ptr<nn::ResidentModel>>> servers_
      TANDEM_GUARDED_BY(mu_);
};

}  // namespace

BenchWorkload resident_workload(std::uint64_t seed) {
  BenchWorkload w;
  w.model = "mlp+resident";
  w.batch = 1;
  auto cache = std::make_shared<ResidentCache>(seed);
  w.per_thread = [cache](const std::shared_ptr<Device>& device) {
    std::shared_ptr<nn::ResidentModel> r = cache->get(device);
    const nn::Shape in = r->model().input_shape(1), out = r->model().output_shape(1);
    auto x = std::make_shared<std::vector<float>>(in.numel());
    auto y = std::make_shared<std::vector<float>>(out.numel());
    std::mt19937 rng(42);
    std::normal_distribution<float> dist;
    for (auto& v : *x) v = dist(rng);
    return std::function<void()>([r, x, y] { r->forward(*x, *y); });
  };
  // The grid's own view of the point (ResidentStats, differences over the timed window).
  auto at_start = std::make_shared<ResidentStats>();
  w.detail_start = [cache, at_start] { *at_start = cache->total(); };
  w.detail_end = [cache, at_start](double elapsed_s) {
    const ResidentStats now = cache->total();
    const double passes = static_cast<double>(now.passes - at_start->passes);
    if (passes <= 0) return std::string("resident grid: no pass in the window");
    const double period_us = elapsed_s * 1e6 / passes;
    const double layers_us = static_cast<double>(now.layers_ns - at_start->layers_ns) / passes / 1e3;
    char line[320];
    std::snprintf(line, sizeof line,
                  "resident grid: %.2f requests a pass, a pass every %.2f us; per pass: input "
                  "%.2f us, publication seen %.2f us, layers %.2f us (compute blocks busy %.0f%%), "
                  "completion %.2f us; %llu launches",
                  static_cast<double>(now.forwards - at_start->forwards) / passes, period_us,
                  static_cast<double>(now.input_ns - at_start->input_ns) / passes / 1e3,
                  static_cast<double>(now.publish_ns - at_start->publish_ns) / passes / 1e3,
                  layers_us,
                  100.0 * layers_us / period_us,
                  static_cast<double>(now.completion_ns - at_start->completion_ns) / passes / 1e3,
                  static_cast<unsigned long long>(now.launches - at_start->launches));
    return std::string(line);
  };
  return w;
}

BenchWorkload model_workload(const std::string& model, int batch, std::uint64_t seed,
                             bool graphs, bool into) {
  BenchWorkload w;
  w.model = graphs ? model + "+graph" : into ? model + "+into" : model;
  w.batch = batch;
  auto cache = std::make_shared<ModelCache>(model, seed);
  w.per_thread = [cache, batch, graphs, into](const std::shared_ptr<Device>& device) {
    std::shared_ptr<const nn::Model> m = cache->get(device);
    const nn::Shape shape = m->input_shape(static_cast<std::size_t>(batch));
    std::vector<float> host(shape.numel());
    std::mt19937 rng(42);
    std::normal_distribution<float> dist;
    for (auto& v : host) v = dist(rng);
    nn::Tensor x = nn::Tensor::from_host(device, shape, host);
    Stream* stream = &device->current_stream();
    if (graphs || into) {
      // Static output, written by the forward itself (forward_into). With graphs the forward's
      // workspace is allocated and freed inside the recorded work (on cuda from the graph's
      // arena: the graph holds kernels only, Note [Graph-owned memory]).
      auto out = std::make_shared<nn::Tensor>(
          nn::Tensor::empty(device, m->output_shape(static_cast<std::size_t>(batch))));
      if (!graphs) {
        return std::function<void()>([m, x, out, stream] {
          m->forward_into(x, *out);
          stream->synchronize();
        });
      }
      const auto key = static_cast<std::uint64_t>(batch);
      return std::function<void()>([m, x, out, stream, key] {
        run_graph(*stream, key, [&] { m->forward_into(x, *out); });
        stream->synchronize();
      });
    }
    return std::function<void()>([m, x, stream] {
      const nn::Tensor y = m->forward(x);
      stream->synchronize();
    });
  };
  return w;
}

}  // namespace tandem::cli
