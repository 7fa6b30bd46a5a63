// json.cpp — the --json document (crashrate/report.h; fields in docs/crashrate.md).
#include <nlohmann/json.hpp>

#include "crashrate/report.h"

namespace tandem::crashrate {
namespace {

nlohmann::json stack_json(const ThreadStack& s) {
  nlohmann::json frames = nlohmann::json::array();
  for (const Frame& f : s.frames) {
    frames.push_back({{"pc", f.pc},
                      {"function", f.function.empty() ? nlohmann::json() : nlohmann::json(f.function)},
                      {"module", f.module},
                      {"module_offset", f.module_offset},
                      {"file", f.file.empty() ? nlohmann::json() : nlohmann::json(f.file)},
                      {"line", f.line > 0 ? nlohmann::json(f.line) : nlohmann::json()}});
  }
  nlohmann::json j = {{"tid", s.tid}, {"frames", frames}};
  if (!s.note.empty()) j["note"] = s.note;
  return j;
}

template <typename T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

}  // namespace

std::string to_json(const CampaignResult& r) {
  nlohmann::json configs = nlohmann::json::array();
  for (const auto& s : r.summaries) {
    configs.push_back({{"name", s.name},
                       {"runs", s.runs},
                       {"pass", s.count(Outcome::kPass)},
                       {"crash", s.count(Outcome::kCrash)},
                       {"hang", s.count(Outcome::kHang)},
                       {"fail", s.count(Outcome::kFail)},
                       {"sanitizer", s.count(Outcome::kSanitizer)},
                       {"wrong", s.count(Outcome::kWrong)},
                       {"rate", s.rate},
                       {"ci_low", s.ci_low},
                       {"ci_high", s.ci_high},
                       {"phases", s.crash_phases},
                       {"failure_phases", s.failure_phases}});
  }
  nlohmann::json comparisons = nlohmann::json::array();
  for (const auto& c : r.comparisons) {
    comparisons.push_back({{"a", r.configs[c.a].name}, {"b", r.configs[c.b].name}, {"p_value", c.p_value}});
  }
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : r.runs) {
    nlohmann::json stack;  // null when none
    if (!run.stacks.empty()) {
      stack = nlohmann::json::array();
      for (const auto& s : run.stacks) stack.push_back(stack_json(s));
    }
    nlohmann::json j = {{"config", r.configs[run.config].name},
                        {"index", run.index},
                        {"seed", run.seed},
                        {"outcome", outcome_name(run.outcome)},
                        {"signal", run.signal ? nlohmann::json(signal_name(*run.signal)) : nlohmann::json()},
                        {"exit_code", opt(run.exit_code)},
                        {"phase", opt(run.phase)},
                        {"duration_s", run.duration_s},
                        {"stack", stack}};
    if (run.filtered) j["raw_outcome"] = outcome_name(run.raw_outcome);
    if (run.wrong) j["wrong"] = *run.wrong;
    if (!run.stack_note.empty()) j["stack_note"] = run.stack_note;
    if (run.log) j["log"] = *run.log;
    runs.push_back(std::move(j));
  }
  nlohmann::json doc = {{"configs", configs},
                        {"comparisons", comparisons},
                        {"runs", runs},
                        {"seed", r.seed},
                        {"interval", r.interval == IntervalMethod::kClopperPearson ? "clopper-pearson" : "wilson"},
                        {"interrupted", r.interrupted},
                        {"cancelled", r.cancelled},
                        {"wall_s", r.wall_s},
                        {"logs_dir", r.logs_dir}};
  if (r.sprt) {
    const char* d = r.sprt->decision == SprtDecision::kDifferent     ? "different"
                    : r.sprt->decision == SprtDecision::kNoDifference ? "no_difference"
                                                                       : "undecided";
    doc["sprt"] = {{"decision", d}, {"pairs", r.sprt->pairs}, {"discordant", r.sprt->discordant},
                   {"second_worse", r.sprt->second_worse}};
  }
  return doc.dump(2) + "\n";
}

}  // namespace tandem::crashrate
