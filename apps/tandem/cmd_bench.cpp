// cmd_bench.cpp — `tandem bench`: throughput and scaling per thread count and lock policy.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>
#include <vector>

#include "bench_batching.h"
#include "bench_workload.h"
#include "command.h"
#include "parse.h"
#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/kernels.h"
#include "tandem/error.h"
#include "tandem/graph.h"
#include "tandem/stream.h"

namespace tandem::cli {

BenchWorkload empty_workload(bool graphs) {
  BenchWorkload w;
  w.model = graphs ? "empty+graph" : "empty";
  w.batch = 1;
  w.per_thread = [graphs](const std::shared_ptr<Device>& device) {
    Stream& stream = device->current_stream();
    const Kernels* k = &device->kernels();
    auto launch = [k, &stream] {
      Encoder enc(stream);
      k->empty(enc);
    };
    if (graphs) {
      return std::function<void()>([launch, &stream] {
        run_graph(stream, 1, launch);
        stream.synchronize();
      });
    }
    return std::function<void()>([launch, &stream] {
      launch();
      stream.synchronize();
    });
  };
  return w;
}

BenchWorkload seed_workload(std::size_t elements) {
  BenchWorkload w;
  w.model = "seed";
  w.batch = 1;
  w.per_thread = [elements](const std::shared_ptr<Device>& device) {
    Stream& stream = device->current_stream();
    auto t = std::make_shared<Buffer>(device, elements * sizeof(float), stream);
    auto y = std::make_shared<Buffer>(device, elements * sizeof(float), stream);
    std::vector<float> host(elements);
    std::iota(host.begin(), host.end(), 0.0f);
    upload(stream, *t, host);
    stream.synchronize();
    return std::function<void()>([t, y, &stream] {
      scale(stream, *y, *t, 2.0f);
      stream.synchronize();
    });
  };
  return w;
}

namespace {

struct Point {
  std::string device, model, policy;
  int threads = 0, batch = 0;
  double ops_per_s = 0, samples_per_s = 0, efficiency = 0;
};

// measure(): `threads` threads, each running the workload's operation in a loop for `seconds`
// after a warm-up; returns total ops/s, and the workload's detail line in *detail.
double measure(const std::shared_ptr<Device>& device, const BenchWorkload& w, int threads,
               double seconds, std::string* detail) {
  std::atomic<bool> stop{false};
  std::atomic<long long> total{0};
  std::barrier start(threads + 1);
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      std::function<void()> op;
      try {
        op = w.per_thread(device);
        for (int k = 0; k < 10; ++k) op();  // warm-up
      } catch (...) {
        errors[static_cast<std::size_t>(i)] = std::current_exception();
      }
      start.arrive_and_wait();
      long long n = 0;
      if (op) {
        try {
          while (!stop.load(std::memory_order_relaxed)) {
            op();
            ++n;
          }
        } catch (...) {
          errors[static_cast<std::size_t>(i)] = std::current_exception();
        }
      }
      total.fetch_add(n);
    });
  }
  start.arrive_and_wait();
  if (w.detail_start) w.detail_start();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& t : pool) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  if (w.detail_end) *detail = w.detail_end(elapsed);
  return static_cast<double>(total.load()) / elapsed;
}

std::vector<int> parse_int_list(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t pos = 0;
      const int v = std::stoi(item, &pos);
      if (pos != item.size() || v < 1 || v > 64) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error(ErrorKind::kInvalidArgument, std::string(what) + ": '" + item +
                                                   "' is not a number in 1..64 (use e.g. 1,2,4,8)");
    }
  }
  return out;
}

int run_bench(const std::vector<std::string>& args) {
  // `tandem bench --batching ...`: the dynamic-batching benchmark (bench_batching.cpp).
  if (std::find(args.begin() + 1, args.end(), "--batching") != args.end()) {
    return run_batching_bench(args);
  }
  CLI::App app{"Measure throughput and scaling: each thread loops one operation on its own stream "
               "(seed: y = t * 2.0; synchronize; mlp/encoder: one forward of --batch samples; "
               "synchronize), per thread count and encoding-lock policy."};
  std::string device_name, threads_list = "1,2,4,8", policies_list = "none,stream,global",
              json_path, model = "seed";
  double seconds = 0.5;
  std::size_t size = 1024;
  int batch = 1;
  app.add_option("--device", device_name, "device (default: TANDEM_BACKEND or best available)");
  app.add_option("--threads", threads_list, "comma-separated thread counts, each 1..64")
      ->capture_default_str();
  app.add_option("--policies", policies_list, "comma-separated encoding-lock policies")
      ->capture_default_str();
  app.add_option("--seconds", seconds, "measured time per point")->capture_default_str()
      ->check(CLI::Range(0.01, 600.0));
  app.add_option("--size", size, "seed workload: floats per tensor")->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 28));
  app.add_option("--model", model, "workload: seed, mlp or encoder (reference models, random "
                                   "weights), or empty (one empty kernel; synchronize: the "
                                   "launch + sync ceiling)")->capture_default_str()
      ->check(CLI::IsMember({"seed", "mlp", "encoder", "empty"}));
  bool graphs = false;
  bool into = false;
  app.add_flag("--graphs", graphs, "mlp/encoder: replay each thread's forward as a graph "
                                   "(run_graph; on cuda a CUDA graph per stream and batch, with "
                                   "static input and output; elsewhere plain forwards); empty: "
                                   "replay the empty kernel as a graph");
  app.add_flag("--into", into, "mlp/encoder, eager: each forward writes into a static output "
                               "(Model::forward_into) instead of returning a new tensor")
      ->excludes("--graphs");
  bool resident = false;
  app.add_flag("--resident", resident,
               "mlp, batch 1: serve the forwards with a resident grid (tandem/nn/resident.h; "
               "cuda only): no driver call per forward, concurrent threads batched on the GPU")
      ->excludes("--graphs")
      ->excludes("--into");
  app.add_option("--batch", batch, "samples per forward (mlp, encoder)")->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("--json", json_path, "also write the records to this JSON file");
  bool batching = false;  // handled above; listed here for --help
  app.add_flag("--batching", batching,
               "the dynamic-batching benchmark instead (see `tandem bench --batching --help`)");
  if (auto code = parse(app, args)) return *code;

  std::vector<int> thread_counts;
  std::vector<EncodingLockPolicy> policies;
  std::shared_ptr<Device> base;
  try {
    thread_counts = parse_int_list(threads_list, "--threads");
    std::stringstream ss(policies_list);
    std::string p;
    while (std::getline(ss, p, ',')) {
      auto policy = parse_encoding_lock_policy(p);
      if (!policy) {
        throw Error(ErrorKind::kInvalidArgument,
                    "--policies: '" + p + "' is not one of: none, stream, global");
      }
      policies.push_back(*policy);
    }
    base = device_name.empty() ? Device::get_default() : Device::get(device_name);
    if (resident && base->backend() != "cuda") {
      throw Error(ErrorKind::kInvalidArgument,
                  "--resident needs a cuda device; " + base->name() + " (backend " +
                      base->backend() + ") has no resident mode");
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "tandem bench: %s\n", e.what());
    return kExitUsage;
  }
  if (resident && (model != "mlp" || batch != 1)) {
    std::fprintf(stderr, "tandem bench: --resident serves the mlp one sample at a time; got "
                         "--model %s --batch %d (use --model mlp --batch 1)\n",
                 model.c_str(), batch);
    return kExitUsage;
  }
  const BenchWorkload workload =
      resident             ? resident_workload(/*seed=*/0)
      : model == "seed"    ? seed_workload(size)
      : model == "empty" ? empty_workload(graphs)
                         : model_workload(model, batch, /*seed=*/0, graphs, into);

  std::printf("tandem bench: %s, model %s, batch %d, %.2f s per point\n", base->name().c_str(),
              workload.model.c_str(), workload.batch, seconds);
  std::printf("%-8s %8s %14s %14s %11s\n", "policy", "threads", "ops/s", "samples/s", "efficiency");
  std::vector<Point> points;
  try {
    for (EncodingLockPolicy policy : policies) {
      RuntimeConfig config = base->config();
      config.encoding_lock = policy;
      // A private device per policy, so each point runs with exactly that policy.
      auto device = Device::open(base->name(), config);
      double single = 0;
      for (int threads : thread_counts) {
        std::string detail;
        const double ops = measure(device, workload, threads, seconds, &detail);
        if (threads == thread_counts.front()) single = ops / threads;
        Point pt{base->name(), workload.model, std::string(to_string(policy)), threads,
                 workload.batch, ops, ops * workload.batch, ops / (threads * single)};
        std::printf("%-8s %8d %14.0f %14.0f %10.0f%%\n", pt.policy.c_str(), threads, ops,
                    pt.samples_per_s, 100.0 * pt.efficiency);
        if (!detail.empty()) std::printf("  %s\n", detail.c_str());
        std::fflush(stdout);
        points.push_back(pt);
      }
      device->close();
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "tandem bench: %s\n", e.what());
    return kExitFailure;
  }
  std::printf("efficiency = ops/s at N threads / (N x ops/s per thread at %d thread%s)\n",
              thread_counts.front(), thread_counts.front() == 1 ? "" : "s");
  if (!json_path.empty()) {
    nlohmann::json records = nlohmann::json::array();
    for (const auto& p : points) {
      records.push_back({{"device", p.device}, {"model", p.model}, {"threads", p.threads},
                         {"batch", p.batch}, {"policy", p.policy}, {"ops_per_s", p.ops_per_s},
                         {"samples_per_s", p.samples_per_s}, {"efficiency", p.efficiency}});
    }
    std::ofstream out(json_path);
    out << records.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "tandem bench: cannot write %s\n", json_path.c_str());
      return kExitFailure;
    }
  }
  return kExitOk;
}

TANDEM_REGISTER_COMMAND(Command{"bench", "throughput and scaling per thread count and lock policy",
                                run_bench});

}  // namespace
}  // namespace tandem::cli
