// options.h — what a crashrate campaign runs, and how (a plain struct with defaults).
//
// A campaign runs `command` `runs` times per configuration in fresh child processes, `jobs` at a
// time, interleaving the configurations (A B A B ...). See docs/crashrate.md for the protocol.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tandem::crashrate {

// Configuration: a name and the environment variables set (over the harness's environment) for
// each of its runs. CRASHRATE_CONFIG is set to `name`.
struct Configuration {
  std::string name;
  std::vector<std::pair<std::string, std::string>> env;
};

// parse_configuration("NAME:VAR=VALUE[,VAR=VALUE...]"), or "NAME" alone for no variables.
// NAME is [A-Za-z0-9_.+-]+, VAR a C identifier; a VALUE may be empty but cannot hold a comma.
// Throws Error(kUsage) naming the part that does not parse.
[[nodiscard]] Configuration parse_configuration(const std::string& spec);

enum class StackMode {
  kAuto,  // trace with ptrace and unwind with libdw where both are available; else say why
  kOff,   // never trace (for workloads that ptrace themselves, e.g. LeakSanitizer)
};

enum class IntervalMethod { kWilson, kClopperPearson };

// SprtOptions: the sequential test run by `until_decided` on the first two configurations.
// It is Wald's SPRT on discordant pairs (run i of A against run i of B), two one-sided tests
// of odds ratio 1 against `odds_ratio` and against 1/`odds_ratio` (docs/crashrate.md).
struct SprtOptions {
  double odds_ratio = 3.0;  // smallest difference worth detecting, as an odds ratio (> 1)
  double alpha = 0.05;      // probability of calling equal configurations different (two-sided)
  double beta = 0.10;       // probability of missing a difference of `odds_ratio`
};

struct Options {
  // The command and its arguments; command[0] is looked up in PATH unless it holds a '/'.
  std::vector<std::string> command;
  // Configurations in order; the first is the reference of every comparison. Empty: one
  // configuration named "baseline" with no variables.
  std::vector<Configuration> configs;
  int runs = 100;  // runs per configuration (> 0)
  int jobs = 0;    // concurrent runs (> 0); 0 means the number of cores
  std::chrono::milliseconds timeout{60'000};  // per run; past it the run is a `hang`
  std::optional<std::uint64_t> seed;          // schedule seed; none: drawn and reported
  IntervalMethod interval = IntervalMethod::kWilson;
  bool until_decided = false;  // stop when the SPRT decides (first two configurations)
  SprtOptions sprt;
  // Output filters (ECMAScript regular expressions, matched against each line of a run's
  // combined stdout and stderr):
  std::optional<std::string> expect;   // a run whose output has no match is `wrong`
  std::optional<std::string> failure;  // a failing run counts only if its output matches
  std::optional<std::string> ignore;   // a failing run whose output matches counts as a pass
  // Where the logs of failing runs go; none: a fresh directory under $TMPDIR (or /tmp).
  std::optional<std::string> keep_logs;
  StackMode stacks = StackMode::kAuto;
  std::size_t max_output_bytes = 1 << 20;  // per run kept in memory: first half and last half
};

// validate(options): throws Error(kUsage) with one line for the first problem found (no command,
// a command that cannot be executed, runs or jobs < 1, a bad timeout, duplicate configuration
// names, a regular expression that does not compile, bad SPRT parameters). Returns the command's
// resolved path.
std::string validate(const Options& options);

}  // namespace tandem::crashrate
