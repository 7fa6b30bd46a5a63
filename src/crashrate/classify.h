// classify.h — a run's outcome from its end (private to src/crashrate). See Outcome in
// crashrate/results.h for the precedence.
#pragma once

#include <optional>
#include <regex>
#include <string>

#include "crashrate/options.h"
#include "crashrate/results.h"

namespace tandem::crashrate::detail {

inline constexpr int kSanitizerExitCode = 66;

// Filters: Options' regular expressions, compiled once.
struct Filters {
  std::optional<std::regex> expect, failure, ignore;
  static Filters compile(const Options& o);
};

struct RunEnd {
  int wait_status = 0;
  bool timed_out = false;
  bool wrong_line = false;
};

// has_sanitizer_report(output): an AddressSanitizer, LeakSanitizer, ThreadSanitizer,
// MemorySanitizer or UndefinedBehaviorSanitizer report is in the output.
[[nodiscard]] bool has_sanitizer_report(const std::string& output);

// any_line_matches(re, text): re matches some line of text (regex_search per line).
[[nodiscard]] bool any_line_matches(const std::regex& re, const std::string& text);

// classify(end, output, filters): the raw outcome (before --failure/--ignore).
[[nodiscard]] Outcome classify(const RunEnd& end, const std::string& output, const Filters& f);

// apply_filters(raw, output, filters): the outcome after --failure and --ignore (never touch
// pass or hang).
[[nodiscard]] Outcome apply_filters(Outcome raw, const std::string& output, const Filters& f);

}  // namespace tandem::crashrate::detail
