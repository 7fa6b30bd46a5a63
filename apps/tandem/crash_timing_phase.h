// crash_timing_phase.h — the phase markers of the crash-timing workload, in crashrate's phase
// protocol: `phase NAME\n` and `wrong DETAIL\n` lines written with one write(2) each (unbuffered,
// atomic under 512 bytes) to the descriptor named by CRASHRATE_PHASE_FD; no-ops when it is unset.
//
// INTERIM: this is a local copy of the protocol until crashrate's client header
// (include/crashrate/phase.hpp) is on main; then these forward to it.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace tandem::cli::crash_timing {

namespace detail {
inline int phase_fd() noexcept {
  static const int fd = [] {
    const char* v = std::getenv("CRASHRATE_PHASE_FD");  // NOLINT(concurrency-mt-unsafe)
    if (v == nullptr || *v == '\0') return -1;
    char* end = nullptr;
    const long fd = std::strtol(v, &end, 10);
    return (*end == '\0' && fd >= 0 && fd < 1 << 20) ? static_cast<int>(fd) : -1;
  }();
  return fd;
}
inline void write_line(const char* kind, const char* text) noexcept {
  const int fd = phase_fd();
  if (fd < 0) return;
  char line[512];
  const std::size_t k = std::strlen(kind);
  std::size_t t = std::strlen(text);
  if (k + 2 + t > sizeof line) t = sizeof line - k - 2;
  std::memcpy(line, kind, k);
  line[k] = ' ';
  std::memcpy(line + k + 1, text, t);
  line[k + 1 + t] = '\n';
  (void)!::write(fd, line, k + 2 + t);
}
}  // namespace detail

// phase(name): marks the start of phase `name`. Async-signal-safe apart from the first call.
inline void phase(const char* name) noexcept { detail::write_line("phase", name); }
// harness_listening(): whether CRASHRATE_PHASE_FD names a descriptor.
inline bool harness_listening() noexcept { return detail::phase_fd() >= 0; }
// report_wrong(detail): marks the run's result as wrong.
inline void report_wrong(const std::string& detail) noexcept {
  detail::write_line("wrong", detail.c_str());
}

}  // namespace tandem::cli::crash_timing
