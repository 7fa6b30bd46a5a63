// cmd_crash_timing_workload.cpp — `tandem crash-timing-workload` (hidden): the seed's 8-thread
// test, run once per fresh process by `tandem crash-timing` through crashrate.
//
// What one run does (the six phase markers, written unbuffered with the crashrate phase protocol,
// so that a crash's phase is known even when the process dies at once):
//   [1] imported             the process is up
//   [2] warm-up done         one thread ran the op once on the device and checked it
//   [3] threads created      T threads started; each makes its tensors (t = i + 1, and y)
//   [4] waiting at barrier 1 written by the first thread to reach barrier 1
//   [5] past barrier 1       written once all T arrived, before any of them goes on
//                            each thread loops N times: y = t * 2.0; synchronize()
//   [6] past barrier 2       written once all T finished the loop
// then every thread checks its y and the process exits. A mismatch writes `wrong DETAIL`; the run
// then exits 1, except under a crashrate harness, where it exits 0 so that the harness classifies
// it as `wrong` (its `fail` would take precedence over `wrong`). The encoding-lock policy comes from TANDEM_ENCODING_LOCK (RuntimeConfig).
//
// Throughput: T * N ops between [5] and [6], printed on stdout as `loop_ops_per_s X` (the harness
// keeps each run's output; `tandem crash-timing` reads the line from there).
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crashrate/phase.hpp"
#include "parse.h"
#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::cli {
namespace {

struct WorkloadOptions {
  std::string device = "agx_model";
  int threads = 8;
  int iterations = 5000;
  int elements = 256;
};

// A worker thread cannot hand an error to the barrier's other parties: it reports and ends the
// process (outcome `fail` for the harness), rather than leave the others waiting forever.
[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tandem crash-timing-workload: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(kExitFailure);
}

// check(y, expected): a `wrong` line for the first mismatching element; true when all match.
bool check(std::span<const float> y, float expected, int thread) {
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] != expected) {
      ::crashrate::wrong("thread " + std::to_string(thread) + " y[" + std::to_string(i) +
                                 "] = " + std::to_string(y[i]) + ", expected " +
                                 std::to_string(expected));
      return false;
    }
  }
  return true;
}

int run_workload(const WorkloadOptions& o) {
  ::crashrate::phase("[1] imported");
  std::shared_ptr<Device> device = Device::get(o.device);
  const int max_threads = device->streams().size() - 2;  // the main thread holds one stream
  if (o.threads > max_threads) {
    std::fprintf(stderr,
                 "tandem crash-timing-workload: --threads %d needs %d worker streams; %s has %d "
                 "(raise TANDEM_STREAM_POOL_SIZE)\n",
                 o.threads, o.threads + 1, device->name().c_str(), max_threads + 1);
    return kExitUsage;
  }
  const auto n = static_cast<std::size_t>(o.elements);
  const std::size_t bytes = n * sizeof(float);

  // Warm-up: one thread, one op, checked.
  {
    Buffer t(device, bytes);
    Buffer y(device, bytes);
    fill(t, 1.0f);
    scale(y, t, 2.0f);
    std::vector<float> host(n);
    download(device->current_stream(), host, y);
    device->current_stream().synchronize();
    if (!check(host, 2.0f, -1)) return kExitFailure;
  }
  ::crashrate::phase("[2] warm-up done");

  using Clock = std::chrono::steady_clock;
  Clock::time_point loop_start;  // written by barrier 1's completion, read after barrier 2
  Clock::time_point loop_end;    // written by barrier 2's completion
  auto past_barrier_1 = [&]() noexcept {
    loop_start = Clock::now();
    ::crashrate::phase("[5] past barrier 1");
  };
  auto past_barrier_2 = [&]() noexcept {
    loop_end = Clock::now();
    ::crashrate::phase("[6] past barrier 2");
  };
  std::barrier barrier1(o.threads, past_barrier_1);
  std::barrier barrier2(o.threads, past_barrier_2);
  // Writer: the first thread to reach barrier 1 (exchange); it alone writes phase [4].
  std::atomic<bool> someone_waiting{false};
  std::atomic<int> wrong{0};  // threads that found a mismatch; read after join

  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(o.threads));
  for (int i = 0; i < o.threads; ++i) {
    threads.emplace_back([&, i] {
      try {
        const float value = static_cast<float>(i + 1);
        Buffer t(device, bytes);
        Buffer y(device, bytes);
        fill(t, value);  // y is left as allocated: only the loop writes it
        Stream& stream = device->current_stream();
        stream.synchronize();
        if (!someone_waiting.exchange(true)) ::crashrate::phase("[4] waiting at barrier 1");
        barrier1.arrive_and_wait();
        for (int k = 0; k < o.iterations; ++k) {
          scale(y, t, 2.0f);  // y = t * 2.0
          stream.synchronize();
        }
        barrier2.arrive_and_wait();
        std::vector<float> host(n);
        if (device->host_visible()) {
          std::memcpy(host.data(), y.host_data(), bytes);  // the stream is synchronized
        } else {
          download(stream, host, y);
          stream.synchronize();
        }
        if (!check(host, 2.0f * value, i)) wrong.fetch_add(1);
      } catch (const std::exception& e) {
        die("thread " + std::to_string(i) + ": " + e.what());
      }
    });
  }
  ::crashrate::phase("[3] threads created");
  for (auto& th : threads) th.join();

  const double seconds = std::chrono::duration<double>(loop_end - loop_start).count();
  const double ops_per_s =
      seconds > 0 ? static_cast<double>(o.threads) * o.iterations / seconds : 0.0;
  std::printf("device %s policy %s threads %d iterations %d\nloop_ops_per_s %.3f\n",
              device->name().c_str(), std::string(to_string(device->encoding_lock_policy())).c_str(),
              o.threads, o.iterations, ops_per_s);
  std::fflush(stdout);
  if (wrong.load() > 0) return ::crashrate::enabled() ? kExitOk : kExitFailure;
  return kExitOk;
}

int workload_main(std::vector<std::string> args) {
  WorkloadOptions o;
  CLI::App app{"The seed's crash-timing test (one run); used by `tandem crash-timing`."};
  app.add_option("--device", o.device, "device name (agx_model, cpu, cuda, ...)");
  app.add_option("--threads", o.threads, "threads doing the loop")->check(CLI::Range(1, 62));
  app.add_option("--iterations", o.iterations, "loop iterations per thread")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--elements", o.elements, "floats per tensor")->check(CLI::Range(1, 1 << 26));
  if (auto rc = parse(app, args)) return *rc;
  try {
    return run_workload(o);
  } catch (const Error& e) {
    std::fprintf(stderr, "tandem crash-timing-workload: %s\n", e.what());
    return e.kind() == ErrorKind::kConfig || e.kind() == ErrorKind::kNotFound ? kExitUsage
                                                                               : kExitFailure;
  }
}

}  // namespace

TANDEM_REGISTER_COMMAND(Command{"crash-timing-workload",
                                "one run of the crash-timing test (used by crash-timing)",
                                workload_main, /*hidden=*/true});

}  // namespace tandem::cli
