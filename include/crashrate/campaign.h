// campaign.h — run a crashrate campaign from C++ (what `tandem crashrate` does, as a function).
//
//     namespace cr = tandem::crashrate;
//     cr::Options o;
//     o.command = {"build/default/tests/crashrate/crashrate_workload"};
//     o.configs = {cr::parse_configuration("mutex:LOCK=global"),
//                  cr::parse_configuration("nomutex:LOCK=none")};
//     o.runs = 200;
//     cr::CampaignResult r = cr::run_campaign(o);
//     std::fputs(cr::format_report(r).c_str(), stdout);
//
// Threading: run_campaign() runs on the calling thread (one event loop: poll, waitpid, ptrace;
// ptrace requires that the thread that starts a child is the one that traces it). At most one
// campaign runs per process at a time (it owns SIGCHLD while it runs: a handler that chains to
// the previous one, restored on return); a second concurrent call throws Error(kUsage).
// Children: each run is a fresh process in its own process group, killed (the whole group) on
// timeout, on stop, on an exception, and when the harness dies (PR_SET_PDEATHSIG and
// PTRACE_O_EXITKILL). Processes that leave the group (setsid) are beyond its reach.
#pragma once

#include <atomic>
#include <functional>

#include "crashrate/options.h"
#include "crashrate/results.h"

namespace tandem::crashrate {

struct Progress {
  int done = 0;       // finished runs
  int total = 0;      // scheduled runs
  int failures = 0;   // finished runs that did not pass
  int active = 0;     // runs in flight
  double elapsed_s = 0;
};

struct Hooks {
  // Called on the campaign's thread after every finished run (keep it short).
  std::function<void(const RunResult&, const Progress&)> on_run;
  // Polled at least every 50 ms; when it becomes true the campaign kills the runs in flight,
  // drops them, and returns the partial result with `interrupted` set. May be set from a
  // signal handler.
  const std::atomic<bool>* stop = nullptr;
};

// run_campaign(options, hooks): validates the options (Error(kUsage), nothing started), then
// runs the campaign and returns its result, summaries and comparisons filled in. Blocks until
// every run is done, the SPRT decides (until_decided), or hooks.stop is set. Throws
// Error(kSystem) when the OS refuses a pipe or a fork (the runs in flight are killed first).
[[nodiscard]] CampaignResult run_campaign(const Options& options, const Hooks& hooks = {});

// summarize(result): recomputes summaries, comparisons, SPRT verdict and crash groups from
// result.runs (run_campaign calls it; exposed for tools that merge or filter runs).
void summarize(CampaignResult& result, const Options& options);

}  // namespace tandem::crashrate
