// results.h — what a crashrate campaign found: one RunResult per run, one ConfigSummary per
// configuration, the comparisons, and the sequential test's verdict.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crashrate/options.h"

namespace tandem::crashrate {

// Outcome of one run, by precedence (the first that applies wins):
//   hang       the run outlived the timeout and was killed
//   sanitizer  exit status 66, or a sanitizer report in its output
//   crash      killed by a signal
//   fail       non-zero exit status
//   wrong      a `wrong` line on the phase pipe, or --expect not matched
//   pass       none of the above
// --failure / --ignore then turn a failing run into a pass (RunResult::filtered).
enum class Outcome { kPass, kCrash, kHang, kFail, kSanitizer, kWrong };
inline constexpr int kOutcomeCount = 6;

[[nodiscard]] const char* outcome_name(Outcome o) noexcept;  // "pass", "crash", ...
// signal_name(SIGSEGV) == "SIGSEGV"; unknown numbers give "SIG<n>".
[[nodiscard]] std::string signal_name(int signo);

// Frame: one symbolized stack frame. function/file are empty and line 0 where unknown.
struct Frame {
  std::uint64_t pc = 0;
  std::string function;  // demangled
  std::uint64_t offset = 0;         // pc - function start (when function is known)
  std::uint64_t module_offset = 0;  // pc - the module's load address
  std::string module;    // the ELF file (path) holding pc
  std::string file;      // source file, where debug info exists
  int line = 0;
};

struct ThreadStack {
  int tid = 0;
  std::vector<Frame> frames;  // innermost first
  std::string note;           // why the stack is missing or cut short; empty if complete
};

struct RunResult {
  std::size_t config = 0;   // index into CampaignResult::configs
  int index = 0;            // this run's number within its configuration (0-based)
  std::size_t order = 0;    // position in the schedule (start order)
  std::uint64_t seed = 0;   // CRASHRATE_SEED
  Outcome outcome = Outcome::kPass;
  Outcome raw_outcome = Outcome::kPass;  // before --failure / --ignore
  bool filtered = false;                 // outcome != raw_outcome
  std::optional<int> signal;     // the signal that killed it
  std::optional<int> exit_code;  // its exit status, if it exited
  std::optional<std::string> phase;  // the last phase it wrote (its phase of death)
  std::optional<std::string> wrong;  // the detail of its first `wrong` line
  double duration_s = 0;
  // Crash: the crashing thread. Hang: every thread, taken before the kill. Sanitizer: the
  // faulting thread when a fatal signal was seen.
  std::vector<ThreadStack> stacks;
  std::string stack_note;   // why there is no stack (e.g. "tandem was built without libdw")
  std::string output;       // stdout+stderr, cut to Options::max_output_bytes
  std::optional<std::string> log;  // the kept log of a failing run
};

struct ConfigSummary {
  std::string name;
  int runs = 0;
  int counts[kOutcomeCount] = {};  // by Outcome
  int failures = 0;                // runs - pass
  double rate = 0;                 // failures / runs (0 when no runs)
  double ci_low = 0, ci_high = 0;  // 95% interval (Wilson or Clopper-Pearson)
  std::map<std::string, int> crash_phases;    // crashes by phase of death ("(none)": no phase)
  std::map<std::string, int> failure_phases;  // all failing runs by phase of death
  [[nodiscard]] int count(Outcome o) const { return counts[static_cast<int>(o)]; }
};

struct Comparison {
  std::size_t a = 0, b = 0;  // b is the reference (the first configuration)
  double p_value = 1;        // Fisher's exact test, two-sided, failures vs passes
};

enum class SprtDecision { kUndecided, kDifferent, kNoDifference };

struct SprtVerdict {
  SprtDecision decision = SprtDecision::kUndecided;
  int pairs = 0;            // complete pairs examined
  int discordant = 0;       // pairs where exactly one run failed
  int second_worse = 0;     // ... of which the second configuration's run failed
  double llr_up = 0, llr_down = 0;  // log-likelihood ratios of the two one-sided tests
};

// CrashGroup: crashes whose first application frames (libc, libstdc++ and the loader skipped)
// have the same functions.
struct CrashGroup {
  std::vector<std::string> key;    // up to 3 function names (or module+offset)
  int count = 0;
  std::map<std::string, int> signals;  // by signal name
  std::map<std::string, int> configs;  // by configuration name
  std::size_t example = 0;             // index into CampaignResult::runs
};

struct CampaignResult {
  std::vector<Configuration> configs;
  std::vector<RunResult> runs;  // finished runs, in schedule order
  std::vector<ConfigSummary> summaries;
  std::vector<Comparison> comparisons;     // every configuration against the first
  std::optional<SprtVerdict> sprt;         // with Options::until_decided
  std::vector<CrashGroup> crash_groups;    // largest first
  IntervalMethod interval = IntervalMethod::kWilson;
  std::uint64_t seed = 0;       // the schedule seed (replay with --seed)
  bool interrupted = false;     // stopped early by the caller (Ctrl-C); runs cut short dropped
  int cancelled = 0;            // runs started but killed unfinished (interruption, SPRT stop)
  std::string logs_dir;         // where the logs of failing runs are
  std::string stack_support;    // empty when stacks are taken; else why not
  std::vector<std::string> notes;  // things the reader should know (a log not written, ...)
  double wall_s = 0;
  [[nodiscard]] bool all_passed() const;
};

}  // namespace tandem::crashrate
