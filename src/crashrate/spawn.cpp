// spawn.cpp — vfork, (PTRACE_TRACEME), exec (see spawn.h).
#include "spawn.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "crashrate/error.h"

namespace tandem::crashrate::detail {
namespace {

// Child-side helpers: only async-signal-safe calls between vfork and exec, and no writes to
// memory other than the plan's trace_errno (the address space is the parent's).
void write_all(int fd, const char* s) {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  while (n > 0) {
    const ssize_t w = ::write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

[[noreturn]] void child_fail(int fd, const char* what, const char* path, int err) {
  char num[16];
  int i = 15;
  num[i] = '\0';
  unsigned v = static_cast<unsigned>(err);
  do {
    num[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  write_all(fd, "crashrate: ");
  write_all(fd, what);
  write_all(fd, " '");
  write_all(fd, path);
  write_all(fd, "' failed: errno ");
  write_all(fd, num + i);
  write_all(fd, "\n");
  ::_exit(127);
}

struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  int in_fd, out_fd, phase_fd;
  bool trace;
  volatile int trace_errno;  // written by the child (shared memory under vfork)
};

// child_main(plan): runs in the vfork child; never returns.
[[noreturn]] __attribute__((noinline)) void child_main(ChildPlan* plan) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Move what the child keeps above the standard descriptors first, so that dup2 onto 0..3
  // never meets one of its own sources (and clears close-on-exec on the targets).
  const int n = ::fcntl(plan->in_fd, F_DUPFD_CLOEXEC, 10);
  const int o = ::fcntl(plan->out_fd, F_DUPFD_CLOEXEC, 10);
  const int p = ::fcntl(plan->phase_fd, F_DUPFD_CLOEXEC, 10);
  if (n < 0 || o < 0 || p < 0) child_fail(plan->out_fd, "fcntl(F_DUPFD) for", plan->path, errno);
  if (::dup2(n, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(o, 2) < 0 || ::dup2(p, kPhaseFd) < 0) {
    child_fail(o, "dup2 for", plan->path, errno);
  }
#ifdef SYS_close_range
  // Descriptors the embedding program left without close-on-exec must not leak into runs.
  ::syscall(SYS_close_range, kPhaseFd + 1, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
#endif
  // Every handler back to the default while all signals are still blocked (a harness handler
  // must never run here), ignored signals too; then unblock everything. Raw system calls: a
  // sanitizer's interceptors must not touch the (shared) memory of the parent here.
  struct KernelSigaction {  // the kernel's layout on x86_64 and aarch64
    void* handler;
    unsigned long flags;
    void* restorer;
    unsigned long long mask;
  };
  for (int s = 1; s < 65; ++s) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    KernelSigaction old{}, dfl{};
    if (::syscall(SYS_rt_sigaction, s, nullptr, &old, 8) == 0 && old.handler != nullptr /* SIG_DFL */) {
      ::syscall(SYS_rt_sigaction, s, &dfl, nullptr, 8);
    }
  }
  if (plan->trace && ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) plan->trace_errno = errno;
  const unsigned long long none = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, 8);
  ::execve(plan->path, plan->argv, plan->envp);
  child_fail(1, "execve of", plan->path, errno);
}

// start_child(plan): vfork + child_main, with every signal blocked around it.
pid_t start_child(ChildPlan* plan) {
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::vfork();
  if (pid == 0) child_main(plan);
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return pid;
}

struct Pipe {
  Fd read, write;
};

Pipe make_pipe(const char* what) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    throw Error(ErrorKind::kSystem, std::string("pipe2 for the ") + what + " failed: " +
                                        std::strerror(errno) + " (too many open files? lower -j)");
  }
  return {Fd(p[0]), Fd(p[1])};
}

}  // namespace

Spawned spawn_child(const SpawnRequest& req) {
  Pipe out = make_pipe("output");
  Pipe phase = make_pipe("phase protocol");
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) {
    throw Error(ErrorKind::kSystem, std::string("open /dev/null failed: ") + std::strerror(errno));
  }
  ChildPlan plan{req.path, req.argv, req.envp, devnull.get(), out.write.get(), phase.write.get(),
                 req.trace, 0};
  const pid_t pid = start_child(&plan);
  if (pid < 0) {
    throw Error(ErrorKind::kSystem, std::string("vfork failed: ") + std::strerror(errno) +
                                        " (process limit or memory? lower -j)");
  }
  ::setpgid(pid, pid);  // the child did it too; whichever ran first won
  Spawned s;
  s.pid = pid;
  if (req.trace) {
    if (plan.trace_errno == 0) {
      s.traced = true;
    } else {
      s.trace_note = std::string("ptrace not permitted (PTRACE_TRACEME: ") + std::strerror(plan.trace_errno) +
                     "); run with CAP_SYS_PTRACE or kernel.yama.ptrace_scope <= 1";
    }
  }
  ::fcntl(out.read.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(phase.read.get(), F_SETFL, O_NONBLOCK);
  s.output = std::move(out.read);
  s.phase = std::move(phase.read);
  return s;
}

std::string ptrace_probe() {
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork failed: ") + std::strerror(errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::pause();
    ::_exit(0);
  }
  std::string result;
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) {
    result = std::string("ptrace not permitted (PTRACE_SEIZE: ") + std::strerror(errno) +
             "); run with CAP_SYS_PTRACE or kernel.yama.ptrace_scope <= 1";
  }
  ::kill(pid, SIGKILL);
  int st;
  while (::waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
  }
  return result;
}

}  // namespace tandem::crashrate::detail
