// phase.hpp — the header-only C++ client of crashrate's phase protocol.
//
// A workload run by `tandem crashrate` tells the harness where it is, so that a crash can be
// attributed to the phase in which it happened:
//
//     #include <crashrate/phase.hpp>
//     crashrate::phase("past barrier 1");   // the run is now in phase "past barrier 1"
//     crashrate::wrong("sum was 41");       // the run's result is wrong (outcome `wrong`)
//
// Protocol (docs/crashrate.md): the harness names the write end of a pipe in the environment
// variable CRASHRATE_PHASE_FD; each call writes ONE line, `phase NAME\n` or `wrong DETAIL\n`, with a
// single write(2). Nothing is buffered in the process, so the line reaches the harness even when
// the process dies on the next instruction. Lines are cut to 511 bytes so that each write is
// atomic (a pipe write of at most PIPE_BUF bytes is never interleaved with another thread's).
// Newlines inside NAME or DETAIL are replaced by spaces.
//
// Contracts:
//  - No-ops (cost: one cached integer test) when CRASHRATE_PHASE_FD is absent or not a number,
//    so a workload can keep its markers in production builds.
//  - Thread-safe; async-signal-safe once the first call of the process has returned (the first
//    call reads the environment).
//  - Never throws, never allocates; errors of write(2) are ignored (a harness that went away
//    must not change the workload's behaviour).
#pragma once

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <unistd.h>

namespace crashrate {
namespace detail {

// phase_fd(): the descriptor named by CRASHRATE_PHASE_FD, or -1. Read once per process.
inline int phase_fd() noexcept {
  static const int fd = [] {
    const char* s = std::getenv("CRASHRATE_PHASE_FD");
    if (s == nullptr || *s == '\0') return -1;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX) return -1;
    return static_cast<int>(v);
  }();
  return fd;
}

inline constexpr std::size_t kMaxLine = 512;  // bytes, newline included; <= PIPE_BUF (4096)

// write_line(kind, text): writes `kind text\n` (cut to kMaxLine bytes) with one write(2).
inline void write_line(std::string_view kind, std::string_view text) noexcept {
  const int fd = phase_fd();
  if (fd < 0) return;
  char buf[kMaxLine];
  std::size_t n = 0;
  for (char c : kind) buf[n++] = c;
  buf[n++] = ' ';
  for (char c : text) {
    if (n == kMaxLine - 1) break;
    buf[n++] = (c == '\n' || c == '\r') ? ' ' : c;
  }
  buf[n++] = '\n';
  ssize_t r;
  do {
    r = ::write(fd, buf, n);
  } while (r < 0 && errno == EINTR);
}

}  // namespace detail

// phase(name): the run enters phase `name`; if it dies before the next phase(), the harness
// reports `name` as its phase of death. See the contracts above.
inline void phase(std::string_view name) noexcept { detail::write_line("phase", name); }

// wrong(detail): the run's result is wrong; the harness classifies the run as `wrong` (unless it
// also crashed, hung, failed or tripped a sanitizer, which take precedence).
inline void wrong(std::string_view detail) noexcept { detail::write_line("wrong", detail); }

// enabled(): whether a harness is listening (CRASHRATE_PHASE_FD is set).
[[nodiscard]] inline bool enabled() noexcept { return detail::phase_fd() >= 0; }

}  // namespace crashrate
