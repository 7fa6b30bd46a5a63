// report.cpp — the text report and the markdown table (crashrate/report.h).
#include "crashrate/report.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

namespace tandem::crashrate {
namespace {

constexpr std::size_t kGroupsShown = 5;
constexpr std::size_t kFramesShown = 8;
constexpr std::size_t kFailuresShown = 3;
constexpr std::size_t kLinesShown = 5;

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * x);
  return buf;
}

std::string p_value_text(double p) {
  char buf[32];
  if (p >= 0.001) {
    std::snprintf(buf, sizeof buf, "%.3f", p);
  } else {
    std::snprintf(buf, sizeof buf, "%.2g", p);
  }
  return buf;
}

std::string phases_text(const std::map<std::string, int>& phases) {
  std::vector<std::pair<std::string, int>> v(phases.begin(), phases.end());
  std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second > b.second; });
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < 3; ++i) {
    if (!s.empty()) s += ", ";
    s += v[i].first + ": " + std::to_string(v[i].second);
  }
  if (v.size() > 3) s += ", +" + std::to_string(v.size() - 3) + " more";
  return s.empty() ? "-" : s;
}

std::string frame_text(std::size_t i, const Frame& f) {
  char pc[32];
  std::snprintf(pc, sizeof pc, "0x%llx", static_cast<unsigned long long>(f.pc));
  std::string s = "#" + std::to_string(i) + " " + pc + " ";
  s += f.function.empty() ? std::string("??") : f.function;
  if (!f.file.empty()) s += " (" + f.file + ":" + std::to_string(f.line) + ")";
  if (!f.module.empty()) {
    const auto slash = f.module.rfind('/');
    s += " in " + (slash == std::string::npos ? f.module : f.module.substr(slash + 1));
  }
  return s;
}

const char* interval_name(IntervalMethod m) {
  return m == IntervalMethod::kClopperPearson ? "Clopper-Pearson" : "Wilson";
}

}  // namespace

std::string format_stack(const ThreadStack& stack) {
  std::string s;
  for (std::size_t i = 0; i < stack.frames.size(); ++i) s += "    " + frame_text(i, stack.frames[i]) + "\n";
  if (!stack.note.empty()) s += "    (" + stack.note + ")\n";
  return s;
}

std::string format_report(const CampaignResult& r) {
  std::ostringstream o;
  std::size_t w = 6;
  for (const auto& s : r.summaries) w = std::max(w, s.name.size());
  char line[512];
  std::snprintf(line, sizeof line, "%-*s %6s %6s %6s %6s %6s %6s %6s %7s  %-17s %s\n",
                static_cast<int>(w), "config", "runs", "pass", "crash", "hang", "fail", "san",
                "wrong", "rate", "95% CI", "phase of death (failing runs)");
  o << line;
  for (const auto& s : r.summaries) {
    const std::string ci = "[" + percent(s.ci_low) + ", " + percent(s.ci_high) + "]";
    std::snprintf(line, sizeof line, "%-*s %6d %6d %6d %6d %6d %6d %6d %7s  %-17s %s\n",
                  static_cast<int>(w), s.name.c_str(), s.runs, s.count(Outcome::kPass),
                  s.count(Outcome::kCrash), s.count(Outcome::kHang), s.count(Outcome::kFail),
                  s.count(Outcome::kSanitizer), s.count(Outcome::kWrong), percent(s.rate).c_str(),
                  ci.c_str(), phases_text(s.failure_phases).c_str());
    o << line;
  }
  o << "(rate: runs that did not pass; 95% " << interval_name(r.interval) << " interval)\n";
  for (const auto& c : r.comparisons) {
    o << r.configs[c.a].name << " vs " << r.configs[c.b].name << ": p = " << p_value_text(c.p_value)
      << " (Fisher's exact test, two-sided)\n";
  }
  if (r.sprt) {
    const SprtVerdict& v = *r.sprt;
    o << "sequential test (SPRT) of " << r.configs[1].name << " against " << r.configs[0].name << ": ";
    switch (v.decision) {
      case SprtDecision::kDifferent: o << "DIFFERENT"; break;
      case SprtDecision::kNoDifference: o << "no difference as large as the odds ratio sought"; break;
      case SprtDecision::kUndecided: o << "undecided (stopped at -n)"; break;
    }
    o << " after " << v.pairs << " pairs (" << v.discordant << " discordant, " << v.second_worse
      << " with " << r.configs[1].name << " failing)\n";
  }

  if (!r.crash_groups.empty()) {
    o << "\ncrashes by top frames (largest groups first):\n";
    for (std::size_t g = 0; g < r.crash_groups.size() && g < kGroupsShown; ++g) {
      const CrashGroup& cg = r.crash_groups[g];
      std::string sigs, cfgs;
      for (const auto& [k, n] : cg.signals) sigs += (sigs.empty() ? "" : ", ") + k + " " + std::to_string(n);
      for (const auto& [k, n] : cg.configs) cfgs += (cfgs.empty() ? "" : ", ") + k + ": " + std::to_string(n);
      o << "  " << cg.count << "x  " << sigs << "  [" << cfgs << "]\n";
      const RunResult& ex = r.runs[cg.example];
      if (!ex.stacks.empty()) {
        const ThreadStack& s = ex.stacks.front();
        for (std::size_t i = 0; i < s.frames.size() && i < kFramesShown; ++i) {
          o << "      " << frame_text(i, s.frames[i]) << "\n";
        }
        if (!s.note.empty()) o << "      (" << s.note << ")\n";
      } else if (!ex.stack_note.empty()) {
        o << "      (" << ex.stack_note << ")\n";
      }
      if (ex.log) o << "      e.g. " << *ex.log << "\n";
    }
    if (r.crash_groups.size() > kGroupsShown) {
      o << "  ... and " << r.crash_groups.size() - kGroupsShown << " smaller groups (see --json)\n";
    }
  }
  // The first hang, every thread's top frames.
  for (const RunResult& run : r.runs) {
    if (run.outcome != Outcome::kHang) continue;
    o << "\nfirst hang: " << r.configs[run.config].name << " run " << run.index << ", phase "
      << (run.phase ? "\"" + *run.phase + "\"" : std::string("(none)")) << "; threads at the kill:\n";
    for (const ThreadStack& s : run.stacks) {
      o << "  thread " << s.tid << ":\n";
      for (std::size_t i = 0; i < s.frames.size() && i < 4; ++i) o << "      " << frame_text(i, s.frames[i]) << "\n";
      if (!s.note.empty()) o << "      (" << s.note << ")\n";
    }
    if (run.stacks.empty() && !run.stack_note.empty()) o << "  (" << run.stack_note << ")\n";
    break;
  }

  std::size_t failing = 0, shown = 0;
  for (const RunResult& run : r.runs) failing += run.raw_outcome != Outcome::kPass ? 1 : 0;
  if (failing > 0) {
    o << "\nlogs of " << failing << " failing runs: " << (r.logs_dir.empty() ? "(none written)" : r.logs_dir) << "\n";
    for (const RunResult& run : r.runs) {
      if (run.raw_outcome == Outcome::kPass || shown == kFailuresShown) continue;
      ++shown;
      o << "  " << r.configs[run.config].name << " run " << run.index << ": " << outcome_name(run.raw_outcome);
      if (run.signal) o << " " << signal_name(*run.signal);
      if (run.exit_code && *run.exit_code != 0) o << " exit " << *run.exit_code;
      if (run.wrong) o << " wrong \"" << *run.wrong << "\"";
      o << ", phase " << (run.phase ? "\"" + *run.phase + "\"" : std::string("(none)"));
      if (run.log) o << "  " << *run.log;
      o << "\n";
      std::istringstream lines(run.output);
      std::string l;
      for (std::size_t n = 0; n < kLinesShown && std::getline(lines, l); ++n) o << "    | " << l << "\n";
    }
  }
  std::set<std::string> notes;
  for (const RunResult& run : r.runs) {
    if (run.outcome == Outcome::kCrash && run.stacks.empty() && !run.stack_note.empty()) notes.insert(run.stack_note);
  }
  for (const auto& n : notes) o << "note: " << n << "\n";
  for (const auto& n : r.notes) o << "note: " << n << "\n";
  if (r.interrupted) {
    o << "INTERRUPTED: partial results of " << r.runs.size() << " finished runs (" << r.cancelled
      << " runs in flight were killed and are not counted)\n";
  } else if (r.cancelled > 0) {
    o << r.cancelled << " runs in flight when the sequential test decided were killed and are not counted\n";
  }
  char tail[160];
  std::snprintf(tail, sizeof tail, "%zu runs in %.1f s (%.0f runs/s); seed %llu (replay with --seed %llu)\n",
                r.runs.size(), r.wall_s, r.wall_s > 0 ? static_cast<double>(r.runs.size()) / r.wall_s : 0.0,
                static_cast<unsigned long long>(r.seed), static_cast<unsigned long long>(r.seed));
  o << tail;
  return o.str();
}

std::string to_markdown(const CampaignResult& r) {
  std::ostringstream o;
  o << "| config | runs | pass | crash | hang | fail | sanitizer | wrong | rate | 95% CI ("
    << interval_name(r.interval) << ") | phase of death (failing runs) |\n"
    << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
  for (const auto& s : r.summaries) {
    o << "| " << s.name << " | " << s.runs << " | " << s.count(Outcome::kPass) << " | "
      << s.count(Outcome::kCrash) << " | " << s.count(Outcome::kHang) << " | " << s.count(Outcome::kFail)
      << " | " << s.count(Outcome::kSanitizer) << " | " << s.count(Outcome::kWrong) << " | "
      << percent(s.rate) << " | [" << percent(s.ci_low) << ", " << percent(s.ci_high) << "] | "
      << phases_text(s.failure_phases) << " |\n";
  }
  if (!r.comparisons.empty()) o << "\n";
  for (const auto& c : r.comparisons) {
    o << "- " << r.configs[c.a].name << " vs " << r.configs[c.b].name << ": p = " << p_value_text(c.p_value)
      << " (Fisher's exact test, two-sided)\n";
  }
  return o.str();
}

}  // namespace tandem::crashrate
