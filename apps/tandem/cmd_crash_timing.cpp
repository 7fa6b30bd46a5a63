// cmd_crash_timing.cpp — `tandem crash-timing`: the seed's crash-timing experiment in one command
// (docs/crash-timing.md).
//
// Runs `tandem crash-timing-workload` (cmd_crash_timing_workload.cpp: T threads, barrier 1,
// `y = t * 2.0; synchronize()` N times, barrier 2, six phase markers) in fresh processes through
// the crashrate library, once per encoding-lock policy (global, stream, none; TANDEM_ENCODING_LOCK
// set per configuration; runs interleaved), and prints crashrate's report followed by the
// experiment's table: crash rate with its 95% interval, phase of death, the crashes whose top
// frame is a driver-model function, the top crash frame, Fisher's p against `global`, and the
// loop's throughput (ops/s, median over the runs that finished the loop).
//
// Exit status: 0 when the experiment ran and nothing unexpected happened; 1 when a run gave a
// wrong result, failed, hung or tripped a sanitizer, or crashed under the device's own default
// policy (the one its backend declares safe); 2 for a usage error. Crashes under the other
// policies are the measurement, not a failure.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "crash_timing_report.h"
#include "crashrate/campaign.h"
#include "crashrate/error.h"
#include "crashrate/report.h"
#include "parse.h"
#include "tandem/device.h"
#include "tandem/error.h"

namespace tandem::cli {
namespace {

namespace cr = tandem::crashrate;
using crash_timing::PolicyRow;

struct Options {
  std::string device = "agx_model";
  int threads = 8;
  int runs = 100;
  int iterations = 5000;
  int jobs = 1;
  int timeout_s = 120;
  std::optional<int> window_us;
  std::vector<std::string> policies{"global", "stream", "none"};
  std::optional<std::uint64_t> seed;
  std::optional<std::string> json_path, markdown_path, keep_logs;
};

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) {
    throw Error(ErrorKind::kIo, "cannot read /proc/self/exe to find the tandem executable");
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

// The device's canonical name ("agx_model:0"), or an Error(kNotFound) listing what exists.
std::string check_device(const std::string& name) {
  const auto available = Device::available();
  for (const auto& a : available) {
    if (a == name || a == name + ":0") return a;
  }
  std::string list;
  for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
  throw Error(ErrorKind::kNotFound, "--device " + name + ": no such device here; available: " + list);
}

int run_crash_timing(std::vector<std::string> args) {
  const std::string prog = args[0];
  Options o;
  std::string policies_csv = "global,stream,none";
  CLI::App app{
      "The crash-timing experiment: the seed's 8-thread test (barrier 1, `y = t * 2.0; "
      "synchronize()` N times, barrier 2) in fresh processes, once per encoding-lock policy, "
      "interleaved; crash rates with 95% intervals, phase of death, crash frames, Fisher's p "
      "against `global`, and each policy's throughput.",
      prog};
  app.add_option("--device", o.device, "device to run on: agx_model (default), cpu, cuda, ...");
  app.add_option("--threads", o.threads, "threads doing the loop (default 8)")
      ->check(CLI::Range(1, 62));
  app.add_option("-n,--runs", o.runs, "runs per policy (default 100)")->check(CLI::Range(1, 1000000));
  app.add_option("--iterations", o.iterations, "loop iterations per thread (default 5000)")
      ->check(CLI::Range(1, 10000000));
  app.add_option("-j,--jobs", o.jobs,
                 "runs at a time (default 1: concurrent runs would disturb the throughput and the "
                 "interleavings being measured)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--timeout", o.timeout_s, "seconds per run before it counts as a hang (default 120)")
      ->check(CLI::Range(1, 86400));
  app.add_option("--window-us", o.window_us,
                 "set TANDEM_AGX_MODEL_WINDOW_US in every run (agx_model's race window; default: "
                 "the environment's, else 0)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--policies", policies_csv,
                 "comma-separated encoding-lock policies, the first the reference (default "
                 "global,stream,none)");
  app.add_option("--seed", o.seed, "crashrate schedule seed (replays the interleaving of runs)");
  app.add_option("--json", o.json_path, "FILE: the experiment's table and crashrate's JSON");
  app.add_option("--markdown", o.markdown_path, "FILE: the experiment's table as markdown");
  app.add_option("--keep-logs", o.keep_logs, "DIR for the logs of failing runs (default: a temp dir)");
  if (auto code = parse(app, args)) return *code;

  o.policies.clear();
  std::stringstream ss(policies_csv);
  for (std::string p; std::getline(ss, p, ',');) {
    if (!parse_encoding_lock_policy(p)) {
      std::fprintf(stderr, "%s: --policies: '%s' is not one of global, stream, none\n",
                   prog.c_str(), p.c_str());
      return kExitUsage;
    }
    if (std::find(o.policies.begin(), o.policies.end(), p) != o.policies.end()) {
      std::fprintf(stderr, "%s: --policies: '%s' given twice\n", prog.c_str(), p.c_str());
      return kExitUsage;
    }
    o.policies.push_back(p);
  }
  if (o.policies.empty()) {
    std::fprintf(stderr, "%s: --policies: no policy given\n", prog.c_str());
    return kExitUsage;
  }

  std::string device_name;
  EncodingLockPolicy device_default{};
  try {
    device_name = check_device(o.device);
    // The policy the backend declares it needs: a private device with the default config.
    auto probe = Device::open(device_name, RuntimeConfig{});
    device_default = probe->encoding_lock_policy();
    probe->close();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), e.what());
    return kExitUsage;
  }

  cr::Options co;
  co.command = {self_exe(),  "crash-timing-workload", "--device",
                device_name, "--threads",             std::to_string(o.threads),
                "--iterations", std::to_string(o.iterations)};
  for (const auto& p : o.policies) {
    cr::Configuration c{p, {{"TANDEM_ENCODING_LOCK", p}}};
    if (o.window_us) c.env.emplace_back("TANDEM_AGX_MODEL_WINDOW_US", std::to_string(*o.window_us));
    co.configs.push_back(std::move(c));
  }
  co.runs = o.runs;
  co.jobs = o.jobs;
  co.timeout = std::chrono::seconds(o.timeout_s);
  co.seed = o.seed;
  co.keep_logs = o.keep_logs;

  std::ofstream json_file, markdown_file;
  if (o.json_path) {
    json_file.open(*o.json_path);
    if (!json_file) {
      std::fprintf(stderr, "%s: --json %s: cannot open for writing\n", prog.c_str(),
                   o.json_path->c_str());
      return kExitUsage;
    }
  }
  if (o.markdown_path) {
    markdown_file.open(*o.markdown_path);
    if (!markdown_file) {
      std::fprintf(stderr, "%s: --markdown %s: cannot open for writing\n", prog.c_str(),
                   o.markdown_path->c_str());
      return kExitUsage;
    }
  }

  std::printf("crash-timing: %s, %d threads x %d iterations of `y = t * 2.0; synchronize()`, %d "
              "runs per policy (%d at a time), policies interleaved\n",
              device_name.c_str(), o.threads, o.iterations, o.runs, o.jobs);
  std::fflush(stdout);

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  cr::Hooks hooks;
  hooks.on_run = [tty](const cr::RunResult&, const cr::Progress& p) {
    if (!tty) return;
    std::fprintf(stderr, "\r  %d/%d runs, %d not passed, %.0f s", p.done, p.total, p.failures,
                 p.elapsed_s);
    std::fflush(stderr);
  };
  cr::CampaignResult result;
  try {
    result = cr::run_campaign(co, hooks);
  } catch (const cr::Error& e) {
    if (tty) std::fputc('\n', stderr);
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), e.what());
    return e.kind() == cr::ErrorKind::kUsage ? kExitUsage : kExitFailure;
  }
  if (tty) std::fputc('\n', stderr);

  crash_timing::Experiment ex;
  ex.device = device_name;
  ex.threads = o.threads;
  ex.iterations = o.iterations;
  ex.runs = o.runs;
  ex.jobs = o.jobs;
  ex.window_us = o.window_us;
  ex.device_default_policy = std::string(to_string(device_default));
  const std::vector<PolicyRow> rows = crash_timing::analyze(result, ex);

  std::fputs(cr::format_report(result).c_str(), stdout);
  std::fputs("\n", stdout);
  std::fputs(crash_timing::format_table(rows, ex).c_str(), stdout);
  std::fflush(stdout);

  if (json_file.is_open()) {
    json_file << crash_timing::to_json(rows, ex, cr::to_json(result)).dump(2) << "\n";
  }
  if (markdown_file.is_open()) markdown_file << crash_timing::to_markdown(rows, ex);

  bool unexpected = false;
  for (const auto& r : rows) {
    unexpected = unexpected || r.wrong + r.fail + r.hang + r.sanitizer > 0 ||
                 (r.policy == ex.device_default_policy && r.crashes > 0);
  }
  return unexpected ? kExitFailure : kExitOk;
}

}  // namespace

TANDEM_REGISTER_COMMAND(Command{
    "crash-timing",
    "the seed's crash-timing experiment: crash rate per encoding-lock policy, in fresh processes",
    run_crash_timing});

}  // namespace tandem::cli
