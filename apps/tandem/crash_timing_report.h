// crash_timing_report.h — the crash-timing experiment's table, from a crashrate campaign result.
//
// One row per encoding-lock policy: crash counts with a Wilson 95% interval, the phases in which
// the crashed runs died, how many crashes have a driver-model function (agx_model) as their
// innermost application frame, the most common innermost frames, Fisher's exact p of the crash
// counts against the first policy, and the loop's throughput read from the workload's
// `loop_ops_per_s X` line. Pure functions; thread-safe.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crashrate/results.h"

namespace tandem::cli::crash_timing {

// The phase between barrier 1 and barrier 2 (the workload's marker [5]).
inline constexpr const char* kLoopPhase = "[5] past barrier 1";

struct Experiment {
  std::string device;
  int threads = 0;
  int iterations = 0;
  int runs = 0;
  int jobs = 0;
  std::optional<int> window_us;
  std::string device_default_policy;  // the policy the backend declares it needs
};

struct PolicyRow {
  std::string policy;
  int runs = 0, pass = 0, crashes = 0, wrong = 0, fail = 0, hang = 0, sanitizer = 0;
  double crash_rate = 0, ci_low = 0, ci_high = 0;  // crashes / runs, Wilson 95%
  std::map<std::string, int> crash_phases;          // phase of death -> crashes ("(none)")
  int crashes_in_loop = 0;        // crashes whose phase of death is kLoopPhase
  int crashes_with_stack = 0;     // crashes with a symbolized stack
  int driver_frame_crashes = 0;   // ... whose innermost application frame is a driver function
  std::map<std::string, int> top_frames;  // innermost application frame -> crashes
  std::optional<double> p_vs_reference;   // Fisher, crashes vs not; none for the first policy
  std::vector<double> ops_per_s;          // one per run that printed it (finished the loop)
  [[nodiscard]] std::optional<double> median_ops_per_s() const;
};

// is_driver_frame("tandem::backends::agx::use_resource_common(...)") == true.
[[nodiscard]] bool is_driver_frame(const std::string& function);

// analyze(result, ex): one row per configuration of `result`, in its order (the first is the
// reference of the p-values).
[[nodiscard]] std::vector<PolicyRow> analyze(const crashrate::CampaignResult& result,
                                             const Experiment& ex);

[[nodiscard]] std::string format_table(const std::vector<PolicyRow>& rows, const Experiment& ex);
[[nodiscard]] std::string to_markdown(const std::vector<PolicyRow>& rows, const Experiment& ex);
// to_json(rows, ex, crashrate_json): {"experiment", "policies": [...], "crashrate": {...}}.
[[nodiscard]] nlohmann::json to_json(const std::vector<PolicyRow>& rows, const Experiment& ex,
                                     const std::string& crashrate_json);

}  // namespace tandem::cli::crash_timing
