#include "crash_timing_report.h"

#include <algorithm>
#include <cstdio>
#include <regex>
#include <sstream>

#include "crashrate/stats.h"

namespace tandem::cli::crash_timing {
namespace {

namespace cr = tandem::crashrate;

constexpr const char* kDriverFrames[] = {"use_resource_common", "prepare_for_enqueue",
                                         "allocate_usc_spill_buffer", "deferred_end_encoding"};

// The function name without its parameter list ("ns::f(int) const" -> "ns::f").
std::string short_name(const std::string& function) {
  const auto paren = function.find('(');
  return paren == std::string::npos ? function : function.substr(0, paren);
}

bool system_module(const std::string& module) {
  for (const char* m : {"libc.so", "libc-", "libstdc++", "ld-linux", "libpthread", "libgcc_s"}) {
    if (module.find(m) != std::string::npos) return true;
  }
  return false;
}

// The innermost frame with a function name outside the C and C++ runtimes, or "".
std::string innermost_application_frame(const cr::RunResult& run) {
  if (run.stacks.empty()) return "";
  for (const auto& f : run.stacks.front().frames) {
    if (!f.function.empty() && !system_module(f.module)) return short_name(f.function);
  }
  return "";
}

std::optional<double> parse_ops_per_s(const std::string& output) {
  static const std::regex re(R"((?:^|\n)loop_ops_per_s ([0-9.eE+-]+))");
  std::smatch m;
  if (!std::regex_search(output, m, re)) return std::nullopt;
  try {
    return std::stod(m[1].str());
  } catch (...) {
    return std::nullopt;
  }
}

std::string percent(double f) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100 * f);
  return b;
}

std::string p_text(const std::optional<double>& p) {
  if (!p) return "(reference)";
  char b[32];
  std::snprintf(b, sizeof b, *p < 1e-3 ? "%.1e" : "%.3f", *p);
  return b;
}

std::string ops_text(const PolicyRow& r) {
  const auto m = r.median_ops_per_s();
  if (!m) return "n/a (no run finished the loop)";
  char b[64];
  std::snprintf(b, sizeof b, "%.0f (n=%zu)", *m, r.ops_per_s.size());
  return b;
}

std::string ratio_text(const PolicyRow& r, const PolicyRow& ref) {
  const auto a = r.median_ops_per_s(), b = ref.median_ops_per_s();
  if (!a || !b || *b <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", *a / *b);
  return buf;
}

std::string phases_text(const PolicyRow& r) {
  std::string s;
  for (const auto& [phase, n] : r.crash_phases) {
    s += (s.empty() ? "" : ", ") + phase + ": " + std::to_string(n);
  }
  return s.empty() ? "-" : s;
}

std::string frames_text(const PolicyRow& r, std::size_t top) {
  std::vector<std::pair<std::string, int>> v(r.top_frames.begin(), r.top_frames.end());
  std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second > b.second; });
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < top; ++i) {
    s += (s.empty() ? "" : ", ") + v[i].first + " " + std::to_string(v[i].second);
  }
  return s.empty() ? "-" : s;
}

std::string header(const Experiment& ex) {
  std::string s = ex.device + ", " + std::to_string(ex.threads) + " threads x " +
                  std::to_string(ex.iterations) + " iterations of `y = t * 2.0; synchronize()`, " +
                  std::to_string(ex.runs) + " runs per policy, " + std::to_string(ex.jobs) +
                  " at a time";
  if (ex.window_us) s += ", TANDEM_AGX_MODEL_WINDOW_US=" + std::to_string(*ex.window_us);
  return s + "; the device's own policy: " + ex.device_default_policy;
}

}  // namespace

std::optional<double> PolicyRow::median_ops_per_s() const {
  if (ops_per_s.empty()) return std::nullopt;
  std::vector<double> v = ops_per_s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

bool is_driver_frame(const std::string& function) {
  const std::string name = short_name(function);
  for (const char* f : kDriverFrames) {
    const std::string full = std::string("tandem::backends::agx::") + f;
    if (name == full) return true;
  }
  return false;
}

std::vector<PolicyRow> analyze(const cr::CampaignResult& result, const Experiment&) {
  std::vector<PolicyRow> rows(result.configs.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i].policy = result.configs[i].name;
  for (const auto& run : result.runs) {
    if (run.config >= rows.size()) continue;
    PolicyRow& r = rows[run.config];
    ++r.runs;
    switch (run.outcome) {
      case cr::Outcome::kPass: ++r.pass; break;
      case cr::Outcome::kCrash: ++r.crashes; break;
      case cr::Outcome::kWrong: ++r.wrong; break;
      case cr::Outcome::kFail: ++r.fail; break;
      case cr::Outcome::kHang: ++r.hang; break;
      case cr::Outcome::kSanitizer: ++r.sanitizer; break;
    }
    if (const auto ops = parse_ops_per_s(run.output)) r.ops_per_s.push_back(*ops);
    if (run.outcome != cr::Outcome::kCrash) continue;
    const std::string phase = run.phase.value_or("(none)");
    ++r.crash_phases[phase];
    if (phase == kLoopPhase) ++r.crashes_in_loop;
    const std::string frame = innermost_application_frame(run);
    if (!frame.empty()) {
      ++r.crashes_with_stack;
      ++r.top_frames[frame];
      if (is_driver_frame(frame)) ++r.driver_frame_crashes;
    }
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    PolicyRow& r = rows[i];
    if (r.runs > 0) {
      r.crash_rate = static_cast<double>(r.crashes) / r.runs;
      const cr::Interval ci = cr::wilson_interval(r.crashes, r.runs);
      r.ci_low = ci.low;
      r.ci_high = ci.high;
    }
    if (i > 0 && r.runs > 0 && rows[0].runs > 0) {
      r.p_vs_reference = cr::fisher_exact_two_sided(r.crashes, r.runs - r.crashes, rows[0].crashes,
                                                    rows[0].runs - rows[0].crashes);
    }
  }
  return rows;
}

std::string format_table(const std::vector<PolicyRow>& rows, const Experiment& ex) {
  std::ostringstream out;
  char line[512];
  out << "crash-timing: " << header(ex) << "\n";
  const std::string ref = rows.empty() ? std::string() : rows[0].policy;
  std::snprintf(line, sizeof line, "%-8s %5s %7s  %-24s %-13s %-13s %-12s %-30s %s\n", "policy",
                "runs", "crashed", "crash rate [95% CI]", "died in loop", "driver frame",
                ("p vs " + ref).c_str(), "loop ops/s (median)", ("vs " + ref).c_str());
  out << line;
  for (const auto& r : rows) {
    const std::string rate =
        percent(r.crash_rate) + " [" + percent(r.ci_low) + ", " + percent(r.ci_high) + "]";
    const std::string in_loop =
        r.crashes ? std::to_string(r.crashes_in_loop) + "/" + std::to_string(r.crashes) : "-";
    const std::string driver =
        r.crashes ? std::to_string(r.driver_frame_crashes) + "/" + std::to_string(r.crashes) : "-";
    std::snprintf(line, sizeof line, "%-8s %5d %7d  %-24s %-13s %-13s %-12s %-30s %s\n",
                  r.policy.c_str(), r.runs, r.crashes, rate.c_str(), in_loop.c_str(),
                  driver.c_str(), p_text(r.p_vs_reference).c_str(), ops_text(r).c_str(),
                  ratio_text(r, rows[0]).c_str());
    out << line;
  }
  out << "phase of death (crashed runs):\n";
  for (const auto& r : rows) out << "  " << r.policy << ": " << phases_text(r) << "\n";
  out << "top crash frames (innermost application frame):\n";
  for (const auto& r : rows) {
    out << "  " << r.policy << ": " << frames_text(r, 3);
    if (r.crashes > r.crashes_with_stack) {
      out << " (" << r.crashes - r.crashes_with_stack << " crash(es) without a stack)";
    }
    out << "\n";
  }
  for (const auto& r : rows) {
    const int other = r.wrong + r.fail + r.hang + r.sanitizer;
    if (other > 0) {
      out << "  " << r.policy << ": " << other << " run(s) neither passed nor crashed (wrong "
          << r.wrong << ", fail " << r.fail << ", hang " << r.hang << ", sanitizer "
          << r.sanitizer << ")\n";
    }
  }
  return out.str();
}

std::string to_markdown(const std::vector<PolicyRow>& rows, const Experiment& ex) {
  std::ostringstream out;
  const std::string ref = rows.empty() ? "" : rows[0].policy;
  out << "Crash timing: " << header(ex) << ".\n\n";
  out << "| policy | runs | crashed | crash rate [95% CI] | died in loop | driver frame | p vs "
      << ref << " | loop ops/s (median) | vs " << ref << " | top crash frames |\n";
  out << "|---|---:|---:|---|---|---|---|---:|---:|---|\n";
  for (const auto& r : rows) {
    out << "| " << r.policy << " | " << r.runs << " | " << r.crashes << " | "
        << percent(r.crash_rate) << " [" << percent(r.ci_low) << ", " << percent(r.ci_high)
        << "] | "
        << (r.crashes ? std::to_string(r.crashes_in_loop) + "/" + std::to_string(r.crashes) : "-")
        << " | "
        << (r.crashes ? std::to_string(r.driver_frame_crashes) + "/" + std::to_string(r.crashes)
                      : "-")
        << " | " << p_text(r.p_vs_reference) << " | " << ops_text(r) << " | "
        << ratio_text(r, rows[0]) << " | " << frames_text(r, 3) << " |\n";
  }
  return out.str();
}

nlohmann::json to_json(const std::vector<PolicyRow>& rows, const Experiment& ex,
                       const std::string& crashrate_json) {
  nlohmann::json j;
  j["experiment"] = {{"device", ex.device},
                     {"threads", ex.threads},
                     {"iterations", ex.iterations},
                     {"runs", ex.runs},
                     {"jobs", ex.jobs},
                     {"window_us", ex.window_us ? nlohmann::json(*ex.window_us) : nlohmann::json()},
                     {"device_default_policy", ex.device_default_policy},
                     {"loop_phase", kLoopPhase}};
  nlohmann::json policies = nlohmann::json::array();
  for (const auto& r : rows) {
    const auto median = r.median_ops_per_s();
    policies.push_back({{"policy", r.policy},
                        {"runs", r.runs},
                        {"pass", r.pass},
                        {"crash", r.crashes},
                        {"wrong", r.wrong},
                        {"fail", r.fail},
                        {"hang", r.hang},
                        {"sanitizer", r.sanitizer},
                        {"crash_rate", r.crash_rate},
                        {"ci_low", r.ci_low},
                        {"ci_high", r.ci_high},
                        {"crash_phases", r.crash_phases},
                        {"crashes_in_loop", r.crashes_in_loop},
                        {"crashes_with_stack", r.crashes_with_stack},
                        {"driver_frame_crashes", r.driver_frame_crashes},
                        {"top_frames", r.top_frames},
                        {"p_vs_reference", r.p_vs_reference ? nlohmann::json(*r.p_vs_reference)
                                                            : nlohmann::json()},
                        {"ops_per_s_median", median ? nlohmann::json(*median) : nlohmann::json()},
                        {"ops_per_s", r.ops_per_s}});
  }
  j["policies"] = policies;
  j["crashrate"] = nlohmann::json::parse(crashrate_json, nullptr, /*allow_exceptions=*/false);
  return j;
}

}  // namespace tandem::cli::crash_timing
