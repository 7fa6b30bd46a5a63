// spawn.h — starting one run's child process (private to src/crashrate).
//
// The child: its own process group (pgid == pid); stdin from /dev/null; stdout and stderr into
// one pipe; the phase pipe's write end at descriptor kPhaseFd; every other descriptor of the
// harness closed at exec; signal mask empty and ignored signals reset to their defaults;
// PR_SET_PDEATHSIG(SIGKILL), so it dies with the harness's thread that started it.
// It is started with vfork() (fork() of even a small harness costs milliseconds on some VMs; vfork
// shares the address space until exec, as posix_spawn does). With tracing, the child calls
// PTRACE_TRACEME before exec, so it stops with SIGTRAP right after exec, before running any code
// of the program; the ProcessTracker then sets PTRACE_O_TRACECLONE (every thread is traced) and
// PTRACE_O_EXITKILL and lets it go. All signals are blocked around vfork and the child resets
// every handler before unblocking, so no handler of the harness ever runs in the child.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "fd.h"

namespace tandem::crashrate::detail {

inline constexpr int kPhaseFd = 3;

// SpawnRequest: argv and envp are NULL-terminated arrays that outlive the call.
struct SpawnRequest {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  bool trace = false;
};

struct Spawned {
  pid_t pid = -1;
  Fd output;  // read end of stdout+stderr, non-blocking, close-on-exec
  Fd phase;   // read end of the phase pipe, non-blocking, close-on-exec
  bool traced = false;
  std::string trace_note;  // why tracing was asked for but is off (e.g. ptrace not permitted)
};

// spawn_child(request): starts the child. Throws Error(kSystem) when pipe() or fork() fails.
// A failing exec shows up as exit status 127 with a line naming the error in the output.
// Must be called from the thread that will trace and reap the child.
[[nodiscard]] Spawned spawn_child(const SpawnRequest& request);

// PtraceProbe: whether PTRACE_SEIZE works here (tried once on a short-lived child); empty when
// it does, else the reason.
[[nodiscard]] std::string ptrace_probe();

}  // namespace tandem::crashrate::detail
