// tracker.h — reaping (and, when traced, steering) one run's child (private to src/crashrate).
//
// A traced child (PTRACE_TRACEME) first stops with SIGTRAP after exec: the tracker then sets
// PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL. Threads of a traced child stop at clone events, at every signal delivery and at group-stops;
// the tracker resumes each at once (re-injecting the signal), after unwinding the thread that
// receives a fatal signal (first delivery of each such signal, at most kMaxCaptures per run).
// States of the tracker:
//
//   mode     on a ptrace-stop                     entered by
//   kRun     resume (capture first if fatal sig)  construction
//   kFreeze  keep stopped, remember the thread    stop_all_and_unwind()
//   kDead    leave stopped; SIGKILL is coming     kill_group()
//
// Every call must come from the thread that spawned the child (ptrace's rule).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "crashrate/results.h"
#include "unwind.h"

namespace tandem::crashrate::detail {

class ProcessTracker {
 public:
  static constexpr int kMaxCaptures = 4;

  // symbolizer: used for every stack taken; must outlive the tracker.
  ProcessTracker(pid_t pid, bool traced, Symbolizer& symbolizer);

  // reap(): handles every pending wait event of the child's threads without blocking.
  // Returns true once the child has ended; then status() is its wait status.
  bool reap();
  [[nodiscard]] bool ended() const noexcept { return ended_; }
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool traced() const noexcept { return traced_; }

  // stop_all_and_unwind(budget): (traced only) stops every thread (tgkill SIGSTOP), waits up to `budget`
  // for all to stop, and returns every thread's stack (a note for those that did not stop).
  // Leaves the threads stopped: call kill_group() next.
  [[nodiscard]] std::vector<ThreadStack> stop_all_and_unwind(std::chrono::milliseconds budget);

  // kill_group(): SIGKILL to the child's process group and to the child itself. Idempotent.
  void kill_group();

  // captured(signo): the stack taken when `signo` was first delivered, if it was.
  [[nodiscard]] std::optional<ThreadStack> captured(int signo) const;
  // first_capture(): the first stack taken, with its signal.
  [[nodiscard]] std::optional<std::pair<int, ThreadStack>> first_capture() const;

 private:
  enum class Mode { kRun, kFreeze, kDead };
  void dispatch(pid_t tid, int status);
  void add_thread(pid_t tid);
  void resume(pid_t tid, int signo);

  pid_t pid_;
  Symbolizer& symbolizer_;
  bool traced_;
  bool ended_ = false;
  bool exec_seen_ = false;   // the post-exec SIGTRAP was handled
  std::set<pid_t> started_;  // threads whose first stop was seen
  int status_ = 0;
  Mode mode_ = Mode::kRun;
  std::vector<pid_t> tids_;  // live threads known to the tracker (traced only)
  std::set<pid_t> frozen_;   // threads stopped since stop_all_and_unwind() began
  std::vector<std::pair<int, ThreadStack>> captures_;
};

}  // namespace tandem::crashrate::detail
