// names.cpp — names of outcomes and signals (crashrate/results.h).
#include <csignal>
#include <cstring>
#include <string>

#include "crashrate/results.h"

namespace tandem::crashrate {

const char* outcome_name(Outcome o) noexcept {
  switch (o) {
    case Outcome::kPass: return "pass";
    case Outcome::kCrash: return "crash";
    case Outcome::kHang: return "hang";
    case Outcome::kFail: return "fail";
    case Outcome::kSanitizer: return "sanitizer";
    case Outcome::kWrong: return "wrong";
  }
  return "?";
}

std::string signal_name(int signo) {
  // sigabbrev_np needs glibc 2.32; the table keeps older systems working.
  static const struct {
    int no;
    const char* name;
  } kNames[] = {{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},     {SIGQUIT, "SIGQUIT"},
                {SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"},   {SIGABRT, "SIGABRT"},
                {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},     {SIGKILL, "SIGKILL"},
                {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},   {SIGUSR2, "SIGUSR2"},
                {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},   {SIGTERM, "SIGTERM"},
                {SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"},   {SIGSTOP, "SIGSTOP"},
                {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},   {SIGTTOU, "SIGTTOU"},
                {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},   {SIGXFSZ, "SIGXFSZ"},
                {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"},
                {SIGIO, "SIGIO"},     {SIGPWR, "SIGPWR"},     {SIGSYS, "SIGSYS"}};
  for (const auto& n : kNames) {
    if (n.no == signo) return n.name;
  }
  if (signo >= SIGRTMIN && signo <= SIGRTMAX) return "SIGRTMIN+" + std::to_string(signo - SIGRTMIN);
  return "SIG" + std::to_string(signo);
}

bool CampaignResult::all_passed() const {
  if (interrupted) return false;
  for (const auto& r : runs) {
    if (r.outcome != Outcome::kPass) return false;
  }
  return true;
}

}  // namespace tandem::crashrate
