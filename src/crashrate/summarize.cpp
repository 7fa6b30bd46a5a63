// summarize.cpp — summaries, comparisons, the SPRT verdict and crash groups from the runs
// (crashrate/campaign.h: summarize()).
#include <algorithm>
#include <map>

#include "crashrate/campaign.h"
#include "crashrate/stats.h"

namespace tandem::crashrate {
namespace {

constexpr std::size_t kGroupFrames = 3;

std::string basename_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A frame of the C/C++ runtime or the loader: skipped at the top of a stack when grouping, so that
// abort(), raise() and std::terminate() do not put every abort in one group.
bool is_system_frame(const Frame& f) {
  static constexpr const char* kPrefixes[] = {"libc.so", "libc-", "libpthread", "libstdc++",
                                              "libgcc_s", "ld-linux", "libasan", "libtsan",
                                              "libubsan", "libclang_rt"};
  const std::string base = basename_of(f.module);
  for (const char* p : kPrefixes) {
    if (base.rfind(p, 0) == 0) return true;
  }
  return false;
}

// without_clone_suffix("f.cold") == "f": GCC's split and cloned parts of a function (.cold,
// .part.N, .isra.N, .constprop.N, .lto_priv.N) group with the function itself.
std::string without_clone_suffix(const std::string& name) {
  static constexpr const char* kSuffixes[] = {".cold", ".part.", ".isra.", ".constprop.", ".lto_priv."};
  std::size_t cut = name.size();
  for (const char* sfx : kSuffixes) {
    const auto at = name.find(sfx);
    if (at != std::string::npos && at > 0) cut = std::min(cut, at);
  }
  return name.substr(0, cut);
}

std::string frame_key(const Frame& f) {
  if (!f.function.empty()) return without_clone_suffix(f.function);
  char buf[32];
  std::snprintf(buf, sizeof buf, "+0x%llx", static_cast<unsigned long long>(f.module_offset));
  return (f.module.empty() ? std::string("?") : basename_of(f.module)) + buf;
}

std::vector<std::string> group_key(const ThreadStack& s) {
  std::size_t first = 0;
  while (first < s.frames.size() && is_system_frame(s.frames[first])) ++first;
  if (first == s.frames.size()) first = 0;  // all system frames: keep them
  std::vector<std::string> key;
  for (std::size_t i = first; i < s.frames.size() && key.size() < kGroupFrames; ++i) {
    key.push_back(frame_key(s.frames[i]));
  }
  return key;
}

}  // namespace

void summarize(CampaignResult& r, const Options& options) {
  r.summaries.assign(r.configs.size(), {});
  for (std::size_t c = 0; c < r.configs.size(); ++c) r.summaries[c].name = r.configs[c].name;
  for (const RunResult& run : r.runs) {
    ConfigSummary& s = r.summaries[run.config];
    ++s.runs;
    ++s.counts[static_cast<int>(run.outcome)];
    if (run.outcome == Outcome::kPass) continue;
    const std::string phase = run.phase ? *run.phase : "(none)";
    ++s.failure_phases[phase];
    if (run.outcome == Outcome::kCrash) ++s.crash_phases[phase];
  }
  for (ConfigSummary& s : r.summaries) {
    s.failures = s.runs - s.count(Outcome::kPass);
    s.rate = s.runs > 0 ? static_cast<double>(s.failures) / s.runs : 0.0;
    const Interval ci = r.interval == IntervalMethod::kClopperPearson
                            ? clopper_pearson_interval(s.failures, s.runs)
                            : wilson_interval(s.failures, s.runs);
    s.ci_low = ci.low;
    s.ci_high = ci.high;
  }
  r.comparisons.clear();
  for (std::size_t c = 1; c < r.summaries.size(); ++c) {
    const ConfigSummary& a = r.summaries[c];
    const ConfigSummary& b = r.summaries[0];
    r.comparisons.push_back(
        {c, 0, fisher_exact_two_sided(a.failures, a.runs - a.failures, b.failures, b.runs - b.failures)});
  }

  r.sprt.reset();
  if (options.until_decided && r.configs.size() >= 2) {
    // Pairs in schedule order: run i of the first configuration with run i of the second, while
    // both finished (the prefix the campaign decided on).
    std::map<int, bool> first, second;
    for (const RunResult& run : r.runs) {
      if (run.config == 0) first[run.index] = run.outcome != Outcome::kPass;
      if (run.config == 1) second[run.index] = run.outcome != Outcome::kPass;
    }
    std::vector<bool> a, b;
    for (int i = 0; first.count(i) != 0 && second.count(i) != 0; ++i) {
      a.push_back(first[i]);
      b.push_back(second[i]);
    }
    r.sprt = sprt(a, b, options.sprt);
  }

  std::map<std::vector<std::string>, CrashGroup> groups;
  for (std::size_t i = 0; i < r.runs.size(); ++i) {
    const RunResult& run = r.runs[i];
    if (run.outcome != Outcome::kCrash) continue;
    std::vector<std::string> key;
    if (!run.stacks.empty()) key = group_key(run.stacks.front());
    if (key.empty()) key = {"(no stack)"};
    CrashGroup& g = groups[key];
    if (g.count == 0) {
      g.key = key;
      g.example = i;
    }
    ++g.count;
    ++g.signals[run.signal ? signal_name(*run.signal) : "?"];
    ++g.configs[r.configs[run.config].name];
  }
  r.crash_groups.clear();
  for (auto& [k, g] : groups) r.crash_groups.push_back(std::move(g));
  std::stable_sort(r.crash_groups.begin(), r.crash_groups.end(),
                   [](const CrashGroup& x, const CrashGroup& y) { return x.count > y.count; });
}

}  // namespace tandem::crashrate
