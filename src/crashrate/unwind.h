// unwind.h — stacks of stopped threads of a traced child (private to src/crashrate).
//
// With libdw (elfutils; CRASHRATE_HAVE_LIBDW), threads are unwound the way eu-stack does it:
// dwfl_linux_proc_attach(assume_ptrace_stopped) + dwfl_getthread_frames, and each frame is
// symbolized with dwfl_module_addrinfo (function) and dwfl_module_getsrc (file:line).
// Without libdw, no stack is taken and the note says so.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "crashrate/results.h"

namespace tandem::crashrate::detail {

// Symbolizer: function and file:line of (module, offset) pairs, cached for a campaign. Modules are
// opened once (offline, at their link-time addresses), so the DWARF of a large library (libc with
// its debug info: ~100 ms) is read once per campaign, not once per crash. Not thread-safe.
class Symbolizer {
 public:
  Symbolizer();
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;
  // fill(frame, activation): sets function, offset, file and line from module and module_offset.
  void fill(Frame& frame, bool activation);

 private:
  struct Impl;
  Impl* impl_;
};

// unwinder_support(): empty when this build can unwind; else the reason, one line.
[[nodiscard]] std::string unwinder_support();

// unwind_threads(pid, tids): the stack of each tid of process pid. Precondition: each tid is in
// a ptrace-stop under the calling thread. Cost: milliseconds (reads /proc/pid/maps and the
// ELF and DWARF of the modules met). Never throws; failures go into ThreadStack::note.
[[nodiscard]] std::vector<ThreadStack> unwind_threads(pid_t pid, const std::vector<pid_t>& tids,
                                                     Symbolizer& symbolizer);

}  // namespace tandem::crashrate::detail
