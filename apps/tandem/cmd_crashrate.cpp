// cmd_crashrate.cpp — `tandem crashrate [options] -- COMMAND [ARGS...]`: how often COMMAND
// crashes, where, and whether a configuration changes that (docs/crashrate.md).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "command.h"
#include "crashrate/campaign.h"
#include "crashrate/error.h"
#include "crashrate/report.h"
#include "parse.h"

namespace tandem::cli {
namespace {

namespace cr = tandem::crashrate;

std::atomic<bool> g_stop{false};  // set by the SIGINT/SIGTERM/SIGHUP handler, read by the campaign

extern "C" void on_stop_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

// StopSignals: while alive, SIGINT, SIGTERM and SIGHUP ask the campaign to stop (partial report);
// a second one of them kills the harness (SA_RESETHAND), whose children die with it.
class StopSignals {
 public:
  StopSignals() {
    struct sigaction sa{};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~StopSignals() {
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3];
};

// parse_duration("60") == 60 s; also "1.5s", "500ms", "2m".
std::optional<std::chrono::milliseconds> parse_duration(const std::string& s) {
  static const std::regex re(R"(^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  double v = std::stod(m[1].str());
  const std::string unit = m[2].str();
  if (unit == "ms") v /= 1000;
  if (unit == "m") v *= 60;
  if (!(v > 0) || v > 7 * 24 * 3600) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(v * 1000 + 0.5));
}

std::string eta_text(double seconds) {
  char buf[32];
  if (seconds < 90) {
    std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  } else if (seconds < 5400) {
    std::snprintf(buf, sizeof buf, "%.0fm", seconds / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fh", seconds / 3600);
  }
  return buf;
}

int usage_error(const std::string& prog, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", prog.c_str(), message.c_str());
  return kExitUsage;
}

int run_crashrate(std::vector<std::string> args) {
  const std::string prog = args[0];
  // Everything after the first "--" is the command; CLI11 sees only what comes before.
  std::vector<std::string> command;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") {
      command.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      args.resize(i);
      break;
    }
  }

  cr::Options o;
  std::string timeout = "60";
  std::vector<std::string> configs;
  std::optional<std::uint64_t> seed;
  std::optional<std::string> json_path, markdown_path, expect, failure, ignore, keep_logs;
  std::string stacks = "on";
  bool exact = false;
  int jobs = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));

  CLI::App app{"Runs COMMAND many times in fresh processes and reports how often it crashes, hangs, fails or\n"
               "gives a wrong result, in which phase, with confidence intervals; compares configurations.",
               prog};
  app.footer("The command to run follows '--': tandem crashrate [OPTIONS] -- COMMAND [ARGS...]\n"
             "Exit: 0 every run passed, 1 some did not, 2 usage error, 130 interrupted. See docs/crashrate.md.");
  app.add_option("-n,--runs", o.runs, "runs per configuration (default 100)");
  app.add_option("-j,--jobs", jobs, "runs at a time (default: the number of cores)");
  app.add_option("--timeout", timeout, "per run, e.g. 60, 1.5s, 500ms, 2m (default 60 s); past it: hang");
  app.add_option("--config", configs, "NAME:VAR=VALUE[,VAR=VALUE...], repeatable; runs interleave A B A B");
  app.add_option("--seed", seed, "schedule seed (each run gets its own CRASHRATE_SEED from it)");
  app.add_flag("--exact", exact, "Clopper-Pearson intervals instead of Wilson");
  app.add_flag("--until-decided", o.until_decided,
               "stop when a sequential test (SPRT) decides whether the first two configurations differ");
  app.add_option("--odds-ratio", o.sprt.odds_ratio, "smallest difference the SPRT looks for (default 3)");
  app.add_option("--expect", expect, "REGEX: a run whose output has no matching line is wrong");
  app.add_option("--failure", failure, "REGEX: a failing run counts only if its output matches");
  app.add_option("--ignore", ignore, "REGEX: a failing run whose output matches counts as a pass");
  app.add_option("--keep-logs", keep_logs, "DIR for the logs of failing runs (default: a new temp dir)");
  app.add_option("--json", json_path, "FILE: write the results as JSON");
  app.add_option("--markdown", markdown_path, "FILE: write the table as markdown");
  app.add_option("--stacks", stacks, "on|off: take stacks with ptrace (off for workloads that ptrace)");
  if (auto code = parse(app, args)) return *code;

  if (jobs < 1) return usage_error(prog, "-j " + std::to_string(jobs) + ": the number of jobs must be at least 1");
  if (o.runs < 1) return usage_error(prog, "-n " + std::to_string(o.runs) + ": the number of runs must be at least 1");
  o.jobs = jobs;
  const auto t = parse_duration(timeout);
  if (!t) return usage_error(prog, "--timeout '" + timeout + "': expected a positive duration like 60, 1.5s, 500ms, 2m");
  o.timeout = *t;
  if (stacks != "on" && stacks != "off") {
    return usage_error(prog, "--stacks '" + stacks + "': expected on or off");
  }
  o.stacks = stacks == "off" ? cr::StackMode::kOff : cr::StackMode::kAuto;
  o.interval = exact ? cr::IntervalMethod::kClopperPearson : cr::IntervalMethod::kWilson;
  o.seed = seed;
  o.expect = expect;
  o.failure = failure;
  o.ignore = ignore;
  o.keep_logs = keep_logs;
  o.command = command;
  try {
    for (const auto& c : configs) o.configs.push_back(cr::parse_configuration(c));
    (void)cr::validate(o);
  } catch (const cr::Error& e) {
    return usage_error(prog, e.what());
  }
  // Open the output files now, so that a bad path fails before anything runs.
  std::ofstream json_file, markdown_file;
  if (json_path) {
    json_file.open(*json_path);
    if (!json_file) return usage_error(prog, "--json '" + *json_path + "': cannot open for writing: " + std::strerror(errno));
  }
  if (markdown_path) {
    markdown_file.open(*markdown_path);
    if (!markdown_file) {
      return usage_error(prog, "--markdown '" + *markdown_path + "': cannot open for writing: " + std::strerror(errno));
    }
  }

  const bool live = ::isatty(STDERR_FILENO) != 0;
  auto last_print = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  cr::Hooks hooks;
  g_stop.store(false);
  hooks.stop = &g_stop;
  hooks.on_run = [&](const cr::RunResult&, const cr::Progress& p) {
    if (!live) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_print < std::chrono::milliseconds(100) && p.done != p.total) return;
    last_print = now;
    const double left = p.done > 0 ? p.elapsed_s / p.done * (p.total - p.done) : 0;
    std::fprintf(stderr, "\r\033[K%d/%d runs, %d failed (%.1f%%), %s left", p.done, p.total, p.failures,
                 p.done > 0 ? 100.0 * p.failures / p.done : 0.0, eta_text(left).c_str());
    std::fflush(stderr);
  };

  cr::CampaignResult result;
  try {
    StopSignals signals;
    result = cr::run_campaign(o, hooks);
  } catch (const cr::Error& e) {
    if (live) std::fputs("\r\033[K", stderr);
    if (e.kind() == cr::ErrorKind::kUsage) return usage_error(prog, e.what());
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), e.what());
    return kExitFailure;
  }
  if (live) std::fputs("\r\033[K", stderr);
  std::fputs(cr::format_report(result).c_str(), stdout);
  std::fflush(stdout);
  if (json_path) json_file << cr::to_json(result);
  if (markdown_path) markdown_file << cr::to_markdown(result);
  if (result.interrupted) return 130;
  return result.all_passed() ? kExitOk : kExitFailure;
}

}  // namespace

TANDEM_REGISTER_COMMAND(Command{"crashrate",
                                "how often a program crashes, where, and whether a change helps",
                                run_crashrate});

}  // namespace tandem::cli
