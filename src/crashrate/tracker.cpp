// tracker.cpp — see tracker.h.
#include "tracker.h"

#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <thread>

#include "unwind.h"

namespace tandem::crashrate::detail {
namespace {

constexpr long kOptions = PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;

// Signals worth a stack: those that usually end a run. Timer signals (SIGALRM, SIGPROF, ...)
// and job-control ones are left alone: runtimes send them often.
bool worth_capturing(int signo) {
  switch (signo) {
    case SIGSEGV: case SIGBUS: case SIGILL: case SIGFPE: case SIGABRT: case SIGSYS:
    case SIGTRAP: case SIGQUIT: case SIGTERM: case SIGINT: case SIGHUP: case SIGPIPE:
    case SIGXCPU: case SIGXFSZ: case SIGUSR1: case SIGUSR2:
      return true;
    default:
      return false;
  }
}

}  // namespace

ProcessTracker::ProcessTracker(pid_t pid, bool traced, Symbolizer& symbolizer)
    : pid_(pid), symbolizer_(symbolizer), traced_(traced) {
  if (traced_) tids_.push_back(pid);
}

void ProcessTracker::add_thread(pid_t tid) {
  if (std::find(tids_.begin(), tids_.end(), tid) == tids_.end()) tids_.push_back(tid);
}

void ProcessTracker::resume(pid_t tid, int signo) {
  // ESRCH: the thread died meanwhile (e.g. another thread's fatal signal); nothing to do.
  ::ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(signo)));
}

bool ProcessTracker::reap() {
  while (!ended_) {
    int st = 0;
    const pid_t r = ::waitpid(-pid_, &st, WNOHANG | __WALL);
    if (r > 0) {
      dispatch(r, st);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == ECHILD) {
      // The child left its process group (setpgid/setsid): wait for its threads one by one.
      bool any = false;
      std::vector<pid_t> ids = tids_;
      if (ids.empty()) ids.push_back(pid_);
      for (pid_t tid : ids) {
        const pid_t q = ::waitpid(tid, &st, WNOHANG | __WALL);
        if (q > 0) {
          dispatch(q, st);
          any = true;
        }
      }
      if (any) continue;
    }
    break;
  }
  return ended_;
}

void ProcessTracker::dispatch(pid_t tid, int st) {
  if (WIFEXITED(st) || WIFSIGNALED(st)) {
    // With tracing, the leader's status comes after every other thread has been reaped.
    if (tid == pid_) {
      ended_ = true;
      status_ = st;
    }
    tids_.erase(std::remove(tids_.begin(), tids_.end(), tid), tids_.end());
    frozen_.erase(tid);
    return;
  }
  if (!WIFSTOPPED(st) || !traced_) return;
  add_thread(tid);  // a new thread's first stop may come before its parent's clone event
  const unsigned event = static_cast<unsigned>(st) >> 16;
  const int sig = WSTOPSIG(st);
  bool swallow = false;  // a stop of ptrace's own making: resume without a signal
  if (!exec_seen_ && tid == pid_) {
    // The first stop: the SIGTRAP that PTRACE_TRACEME raises after exec. No thread but the
    // first exists yet, so setting TRACECLONE now misses none.
    exec_seen_ = true;
    started_.insert(tid);
    ::ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(kOptions));
    swallow = sig == SIGTRAP && event == 0;
  } else if (started_.insert(tid).second) {
    swallow = sig == SIGSTOP && event == 0;  // a new thread's first stop
  } else if (event == PTRACE_EVENT_CLONE) {
    unsigned long child = 0;
    if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && child != 0) {
      add_thread(static_cast<pid_t>(child));
    }
    swallow = true;
  } else if (event != 0) {
    swallow = true;
  } else if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
    // A group-stop looks like a signal-delivery-stop but has no siginfo. (The run is resumed at
    // once: runs are not meant to be stopped.)
    siginfo_t si;
    swallow = ::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) != 0 && errno == EINVAL;
  }
  switch (mode_) {
    case Mode::kDead:
      return;  // SIGKILL ends stopped threads too
    case Mode::kFreeze:
      frozen_.insert(tid);
      return;
    case Mode::kRun:
      break;
  }
  if (swallow) {
    resume(tid, 0);
    return;
  }
  // Signal-delivery-stop: `sig` is about to be delivered to `tid`.
  if (worth_capturing(sig) && captures_.size() < kMaxCaptures && !captured(sig)) {
    std::vector<ThreadStack> s = unwind_threads(pid_, {tid}, symbolizer_);
    captures_.emplace_back(sig, std::move(s.front()));
  }
  resume(tid, sig);
}

std::vector<ThreadStack> ProcessTracker::stop_all_and_unwind(std::chrono::milliseconds budget) {
  std::vector<ThreadStack> stacks;
  if (!traced_ || ended_) return stacks;
  mode_ = Mode::kFreeze;
  frozen_.clear();
  for (pid_t tid : tids_) ::syscall(SYS_tgkill, pid_, tid, SIGSTOP);  // stops come back to us
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (;;) {
    reap();
    const bool all = std::all_of(tids_.begin(), tids_.end(), [&](pid_t t) { return frozen_.count(t) != 0; });
    if (all || ended_ || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  std::vector<pid_t> stopped;
  for (pid_t tid : tids_) {
    if (frozen_.count(tid) != 0) stopped.push_back(tid);
  }
  if (!stopped.empty() && !ended_) stacks = unwind_threads(pid_, stopped, symbolizer_);
  for (pid_t tid : tids_) {
    if (frozen_.count(tid) == 0) {
      stacks.push_back({tid, {}, "stack unavailable: the thread did not stop within " +
                                     std::to_string(budget.count()) + " ms"});
    }
  }
  return stacks;
}

void ProcessTracker::kill_group() {
  mode_ = Mode::kDead;
  if (ended_) {
    ::kill(-pid_, SIGKILL);  // leftovers of the group (the child's own children)
    return;
  }
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
}

std::optional<ThreadStack> ProcessTracker::captured(int signo) const {
  for (const auto& [s, stack] : captures_) {
    if (s == signo) return stack;
  }
  return std::nullopt;
}

std::optional<std::pair<int, ThreadStack>> ProcessTracker::first_capture() const {
  if (captures_.empty()) return std::nullopt;
  return captures_.front();
}

}  // namespace tandem::crashrate::detail
