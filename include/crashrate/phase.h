/* phase.h — the header-only C client of crashrate's phase protocol (C99 and later, and C++).
 *
 *     #include <crashrate/phase.h>
 *     crashrate_phase("past barrier 1");
 *     crashrate_wrong("sum was 41");
 *
 * Same protocol and contracts as the C++ client <crashrate/phase.hpp>: one write(2) of
 * `phase NAME\n` or `wrong DETAIL\n` (cut to 511 bytes, newlines replaced by spaces) to the
 * descriptor named by CRASHRATE_PHASE_FD; a no-op when the variable is absent or malformed.
 * Thread-safe (it reads the environment on every call, so do not setenv() concurrently);
 * never allocates; write errors are ignored. */
#ifndef CRASHRATE_PHASE_H
#define CRASHRATE_PHASE_H

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#define CRASHRATE_MAX_LINE 512

static inline int crashrate_phase_fd(void) {
  const char* s = getenv("CRASHRATE_PHASE_FD");
  char* end = NULL;
  long v;
  if (s == NULL || *s == '\0') return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX) return -1;
  return (int)v;
}

static inline void crashrate_write_line_(const char* kind, const char* text) {
  char buf[CRASHRATE_MAX_LINE];
  size_t n = 0;
  ssize_t r;
  const int fd = crashrate_phase_fd();
  if (fd < 0) return;
  while (*kind != '\0') buf[n++] = *kind++;
  buf[n++] = ' ';
  for (; text != NULL && *text != '\0' && n < CRASHRATE_MAX_LINE - 1; ++text) {
    buf[n++] = (*text == '\n' || *text == '\r') ? ' ' : *text;
  }
  buf[n++] = '\n';
  do {
    r = write(fd, buf, n);
  } while (r < 0 && errno == EINTR);
}

/* crashrate_phase(name): the run enters phase `name` (its phase of death if it dies next). */
static inline void crashrate_phase(const char* name) { crashrate_write_line_("phase", name); }

/* crashrate_wrong(detail): the run's result is wrong (outcome `wrong`). */
static inline void crashrate_wrong(const char* detail) { crashrate_write_line_("wrong", detail); }

#endif /* CRASHRATE_PHASE_H */
