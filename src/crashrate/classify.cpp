// classify.cpp — see classify.h.
#include "classify.h"

#include <sys/wait.h>

#include <string_view>

namespace tandem::crashrate::detail {

Filters Filters::compile(const Options& o) {
  Filters f;
  if (o.expect) f.expect.emplace(*o.expect, std::regex::ECMAScript);
  if (o.failure) f.failure.emplace(*o.failure, std::regex::ECMAScript);
  if (o.ignore) f.ignore.emplace(*o.ignore, std::regex::ECMAScript);
  return f;
}

bool has_sanitizer_report(const std::string& output) {
  static constexpr std::string_view kMarkers[] = {
      "ERROR: AddressSanitizer",   "ERROR: LeakSanitizer",        "WARNING: ThreadSanitizer",
      "ERROR: ThreadSanitizer",    "WARNING: MemorySanitizer",    "ERROR: MemorySanitizer",
      "ERROR: UndefinedBehaviorSanitizer", ": runtime error: ",   "SUMMARY: AddressSanitizer",
      "SUMMARY: ThreadSanitizer",  "SUMMARY: UndefinedBehaviorSanitizer",
  };
  for (std::string_view m : kMarkers) {
    if (output.find(m) != std::string::npos) return true;
  }
  return false;
}

bool any_line_matches(const std::regex& re, const std::string& text) {
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t nl = text.find('\n', pos);
    const std::size_t end = nl == std::string::npos ? text.size() : nl;
    if (std::regex_search(text.begin() + static_cast<std::ptrdiff_t>(pos),
                          text.begin() + static_cast<std::ptrdiff_t>(end), re)) {
      return true;
    }
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return false;
}

Outcome classify(const RunEnd& end, const std::string& output, const Filters& f) {
  if (end.timed_out) return Outcome::kHang;
  const int st = end.wait_status;
  if ((WIFEXITED(st) && WEXITSTATUS(st) == kSanitizerExitCode) || has_sanitizer_report(output)) {
    return Outcome::kSanitizer;
  }
  if (WIFSIGNALED(st)) return Outcome::kCrash;
  if (WIFEXITED(st) && WEXITSTATUS(st) != 0) return Outcome::kFail;
  if (end.wrong_line) return Outcome::kWrong;
  if (f.expect && !any_line_matches(*f.expect, output)) return Outcome::kWrong;
  return Outcome::kPass;
}

Outcome apply_filters(Outcome raw, const std::string& output, const Filters& f) {
  if (raw == Outcome::kPass || raw == Outcome::kHang) return raw;
  if (f.failure && !any_line_matches(*f.failure, output)) return Outcome::kPass;
  if (f.ignore && any_line_matches(*f.ignore, output)) return Outcome::kPass;
  return raw;
}

}  // namespace tandem::crashrate::detail
