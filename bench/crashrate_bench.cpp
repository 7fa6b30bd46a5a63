// crashrate_bench.cpp — the harness's own cost: runs per second of /bin/true, 2 at a time.
// The target: at least 500 runs/s with -j 2 on the 2-core development machine.
// Results and the command: docs/benchmarks.md (## crashrate).
#include <benchmark/benchmark.h>

#include "crashrate/campaign.h"

namespace cr = tandem::crashrate;

namespace {

// BM_CrashrateTrue/stacks:S/jobs:J — one campaign of 1000 runs of /bin/true per iteration.
void BM_CrashrateTrue(benchmark::State& state) {
  cr::Options o;
  o.command = {"/bin/true"};
  o.runs = 1000;
  o.jobs = static_cast<int>(state.range(1));
  o.stacks = state.range(0) != 0 ? cr::StackMode::kAuto : cr::StackMode::kOff;
  o.seed = 1;
  std::size_t runs = 0;
  for (auto _ : state) {
    const cr::CampaignResult r = cr::run_campaign(o);
    if (!r.all_passed()) state.SkipWithError("a run of /bin/true did not pass");
    runs += r.runs.size();
  }
  state.counters["runs_per_s"] = benchmark::Counter(static_cast<double>(runs), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_CrashrateTrue)
    ->ArgNames({"stacks", "jobs"})
    ->Args({1, 2})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

BENCHMARK_MAIN();
