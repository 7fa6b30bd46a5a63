// campaign_test.cpp — campaigns of the test workload (workload.cpp): outcomes, phases, stacks,
// interleaving, the SPRT, stopping, and no process left behind.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "crashrate/campaign.h"
#include "crashrate/report.h"
#include "test_util.h"

namespace cr = tandem::crashrate;
using crashrate_test::TempDir;

namespace {

cr::Options workload(std::vector<std::string> configs, int runs) {
  cr::Options o;
  o.command = {CRASHRATE_WORKLOAD};
  for (const auto& c : configs) o.configs.push_back(cr::parse_configuration(c));
  o.runs = runs;
  o.jobs = 2;
  o.timeout = std::chrono::milliseconds(5000);
  o.seed = 12345;
  return o;
}

bool stack_has(const cr::ThreadStack& s, const std::string& function) {
  for (const auto& f : s.frames) {
    // GCC may split a function: "f.cold" is f's cold part.
    if (f.function == function || f.function.rfind(function + ".", 0) == 0) return true;
  }
  return false;
}

// Skips the test when this build or this machine cannot take stacks, saying why.
#define SKIP_WITHOUT_STACKS(result)                                                   \
  if (!(result).stack_support.empty()) GTEST_SKIP() << (result).stack_support

}  // namespace

TEST(Campaign, ClassifiesEveryOutcome) {
  TempDir logs;
  auto o = workload({"pass:WL_MODE=pass", "crash:WL_MODE=crash", "hang:WL_MODE=hang",
                     "fail:WL_MODE=fail", "wrong:WL_MODE=wrong", "sanitizer:WL_MODE=sanitizer",
                     "exit66:WL_MODE=exit66"},
                    2);
  o.timeout = std::chrono::milliseconds(2000);  // generous: the machine may be loaded
  o.jobs = 4;                                   // the hangs wait in parallel
  o.keep_logs = logs.path();
  const auto r = cr::run_campaign(o);
  ASSERT_EQ(r.summaries.size(), 7u);
  const cr::Outcome expected[] = {cr::Outcome::kPass, cr::Outcome::kCrash, cr::Outcome::kHang,
                                  cr::Outcome::kFail, cr::Outcome::kWrong, cr::Outcome::kSanitizer,
                                  cr::Outcome::kSanitizer};
  for (std::size_t c = 0; c < 7; ++c) {
    EXPECT_EQ(r.summaries[c].runs, 2) << r.summaries[c].name;
    EXPECT_EQ(r.summaries[c].count(expected[c]), 2) << r.summaries[c].name << "\n" << cr::format_report(r);
  }
  for (const auto& run : r.runs) {
    if (run.outcome == cr::Outcome::kCrash) {
      EXPECT_EQ(run.signal, SIGSEGV);
    }
    if (run.config == 3) {
      EXPECT_EQ(run.exit_code, 3);
    }
    if (run.config == 4) {
      EXPECT_EQ(run.wrong, "sum was 41, expected 42");
    }
    if (run.outcome != cr::Outcome::kPass && run.outcome != cr::Outcome::kWrong) {
      ASSERT_TRUE(run.log.has_value());
      EXPECT_NE(crashrate_test::read_file(*run.log).find("phase of death: past barrier 1"), std::string::npos);
    }
  }
  EXPECT_FALSE(r.all_passed());
  EXPECT_EQ(r.summaries[0].rate, 0.0);
  EXPECT_EQ(r.summaries[1].rate, 1.0);
}

TEST(Campaign, AttributesEachCrashToItsPhaseOfDeath) {
  auto o = workload({"early:WL_MODE=crash,WL_PHASE=start", "late:WL_MODE=crash,WL_PHASE=past barrier 2",
                     "none:WL_MODE=fail,WL_PHASE=end"},
                    3);
  const auto r = cr::run_campaign(o);
  EXPECT_EQ(r.summaries[0].crash_phases, (std::map<std::string, int>{{"start", 3}}));
  EXPECT_EQ(r.summaries[1].crash_phases, (std::map<std::string, int>{{"past barrier 2", 3}}));
  EXPECT_TRUE(r.summaries[2].crash_phases.empty());
  EXPECT_EQ(r.summaries[2].failure_phases, (std::map<std::string, int>{{"end", 3}}));
}

TEST(Campaign, CrashesExactlyTheRunsWhoseSeedSaysSo) {
  auto o = workload({"p30:WL_MODE=crash,WL_PROB=0.3,WL_THREADS=0"}, 60);
  const auto r = cr::run_campaign(o);
  int crashes = 0;
  for (const auto& run : r.runs) {
    const bool expect_crash = crashrate_test::misbehaves(run.seed, 0.3);
    EXPECT_EQ(run.outcome == cr::Outcome::kCrash, expect_crash) << "seed " << run.seed;
    crashes += expect_crash ? 1 : 0;
  }
  EXPECT_GT(crashes, 5);
  EXPECT_LT(crashes, 35);
  EXPECT_EQ(r.summaries[0].count(cr::Outcome::kCrash), crashes);
  EXPECT_GE(r.summaries[0].rate, r.summaries[0].ci_low);
  EXPECT_LE(r.summaries[0].rate, r.summaries[0].ci_high);
}

TEST(Campaign, TheSameSeedGivesTheSameRuns) {
  auto o = workload({"a:WL_MODE=crash,WL_PROB=0.5,WL_THREADS=0", "b:WL_MODE=fail,WL_PROB=0.5,WL_THREADS=0"}, 10);
  const auto x = cr::run_campaign(o);
  const auto y = cr::run_campaign(o);
  ASSERT_EQ(x.runs.size(), y.runs.size());
  for (std::size_t i = 0; i < x.runs.size(); ++i) {
    EXPECT_EQ(x.runs[i].seed, y.runs[i].seed);
    EXPECT_EQ(x.runs[i].outcome, y.runs[i].outcome);
  }
}

TEST(Campaign, BacktraceNamesTheWorkloadsCrashingFunction) {
  auto o = workload({"segv:WL_MODE=crash,WL_SIGNAL=SEGV", "abrt:WL_MODE=crash,WL_SIGNAL=ABRT",
                     "thread:WL_MODE=thread_crash,WL_SIGNAL=SEGV,WL_THREADS=3"},
                    2);
  const auto r = cr::run_campaign(o);
  SKIP_WITHOUT_STACKS(r);
  for (const auto& run : r.runs) {
    ASSERT_EQ(run.outcome, cr::Outcome::kCrash) << cr::format_report(r);
    ASSERT_EQ(run.stacks.size(), 1u) << run.stack_note;
    const auto& s = run.stacks[0];
    EXPECT_TRUE(stack_has(s, "crashrate_workload_crash_here")) << cr::format_stack(s);
    if (run.config == 0) {
      EXPECT_EQ(s.frames.at(0).function, "crashrate_workload_crash_here") << cr::format_stack(s);
      EXPECT_NE(s.frames.at(0).file.find("workload.cpp"), std::string::npos) << cr::format_stack(s);
      EXPECT_GT(s.frames.at(0).line, 0);
    }
    if (run.config == 2) {
      EXPECT_NE(s.tid, 0);
    }
  }
  // Grouping skips the C library's abort() and raise(): each configuration is one group keyed by
  // the workload's function.
  ASSERT_FALSE(r.crash_groups.empty());
  for (const auto& g : r.crash_groups) {
    EXPECT_EQ(g.key.at(0), "crashrate_workload_crash_here") << g.key.size();
  }
  EXPECT_NE(cr::format_report(r).find("crashrate_workload_crash_here"), std::string::npos);
}

TEST(Campaign, AHangIsKilledAfterEveryThreadsStackIsTaken) {
  auto o = workload({"hang:WL_MODE=hang,WL_THREADS=2"}, 1);
  o.timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  const auto r = cr::run_campaign(o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ASSERT_EQ(r.runs.size(), 1u);
  const auto& run = r.runs[0];
  EXPECT_EQ(run.outcome, cr::Outcome::kHang);
  EXPECT_FALSE(run.signal.has_value());
  SKIP_WITHOUT_STACKS(r);
  ASSERT_EQ(run.stacks.size(), 3u) << run.stack_note;  // main and two threads
  bool main_blocked = false;
  for (const auto& s : run.stacks) main_blocked |= stack_has(s, "crashrate_workload_block_forever");
  EXPECT_TRUE(main_blocked);
}

TEST(Campaign, InterleavesConfigurationsInScheduleOrder) {
  TempDir dir;
  const std::string log = dir.file("order");
  auto o = workload({"A:WL_LOG=" + log, "B:WL_LOG=" + log, "C:WL_LOG=" + log}, 4);
  o.jobs = 1;
  const auto r = cr::run_campaign(o);
  EXPECT_EQ(crashrate_test::read_file(log), "A\nB\nC\nA\nB\nC\nA\nB\nC\nA\nB\nC\n");
  for (std::size_t i = 0; i < r.runs.size(); ++i) EXPECT_EQ(r.runs[i].order, i);
}

TEST(Campaign, SprtStopsEarlyOnAClearDifference) {
  auto o = workload({"good:WL_MODE=pass,WL_THREADS=0", "bad:WL_MODE=crash,WL_PROB=0.9,WL_THREADS=0"}, 200);
  o.until_decided = true;
  const auto r = cr::run_campaign(o);
  ASSERT_TRUE(r.sprt.has_value());
  EXPECT_EQ(r.sprt->decision, cr::SprtDecision::kDifferent);
  EXPECT_LT(r.runs.size(), 60u) << cr::format_report(r);
  EXPECT_LT(r.comparisons.at(0).p_value, 0.05);
}

TEST(Campaign, NoProcessOutlivesTheCampaign) {
  TempDir dir;
  const std::string pids = dir.file("pids");
  auto o = workload({"grandchild:WL_MODE=grandchild,WL_PIDS=" + pids,
                     "hang:WL_MODE=hang,WL_PIDS=" + pids, "crash:WL_MODE=crash,WL_PIDS=" + pids},
                    2);
  o.timeout = std::chrono::milliseconds(300);
  const auto r = cr::run_campaign(o);
  const auto list = crashrate_test::read_pids(pids);
  EXPECT_EQ(list.size(), 8u);  // 6 runs + 2 grandchildren
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // init reaps the orphans
  for (int pid : list) EXPECT_FALSE(crashrate_test::alive(pid)) << "pid " << pid << " survived";
}

TEST(Campaign, AStopRequestKillsTheRunsInFlightAndKeepsTheFinishedOnes) {
  TempDir dir;
  const std::string pids = dir.file("pids");
  auto o = workload({"hang:WL_MODE=hang,WL_PROB=0.5,WL_THREADS=0,WL_PIDS=" + pids}, 50);
  o.timeout = std::chrono::seconds(60);
  std::atomic<bool> stop{false};
  cr::Hooks hooks;
  hooks.stop = &stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stop.store(true);
  });
  const auto start = std::chrono::steady_clock::now();
  const auto r = cr::run_campaign(o, hooks);
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.cancelled, 2);  // both slots held a hanging run
  EXPECT_FALSE(r.all_passed());
  for (const auto& run : r.runs) EXPECT_EQ(run.outcome, cr::Outcome::kPass);
  EXPECT_NE(cr::format_report(r).find("INTERRUPTED"), std::string::npos);
  for (int pid : crashrate_test::read_pids(pids)) EXPECT_FALSE(crashrate_test::alive(pid)) << pid;
}

TEST(Campaign, TheCClientSpeaksTheProtocol) {
  cr::Options o;
  o.command = {CRASHRATE_C_CLIENT};
  o.runs = 2;
  o.jobs = 2;
  const auto r = cr::run_campaign(o);
  for (const auto& run : r.runs) {
    EXPECT_EQ(run.outcome, cr::Outcome::kWrong);
    EXPECT_EQ(run.phase, "c middle");
    EXPECT_EQ(run.wrong, "c says wrong");
  }
}

TEST(Campaign, ThePythonClientSpeaksTheProtocol) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 is not installed";
  cr::Options o;
  o.command = {"/usr/bin/python3", "-c",
               "import sys; sys.path.insert(0, '" CRASHRATE_PYTHON_DIR "'); import crashrate_phase as c; "
               "c.phase('py start'); c.phase('py end'); c.wrong('py wrong')"};
  o.runs = 1;
  const auto r = cr::run_campaign(o);
  ASSERT_EQ(r.runs.size(), 1u);
  EXPECT_EQ(r.runs[0].outcome, cr::Outcome::kWrong) << r.runs[0].output;
  EXPECT_EQ(r.runs[0].phase, "py end");
  EXPECT_EQ(r.runs[0].wrong, "py wrong");
}

TEST(Campaign, SaysWhyAStackIsMissing) {
  auto o = workload({"segv:WL_MODE=crash,WL_THREADS=0"}, 1);
  o.stacks = cr::StackMode::kOff;
  const auto r = cr::run_campaign(o);
  ASSERT_EQ(r.runs.size(), 1u);
  EXPECT_EQ(r.runs[0].outcome, cr::Outcome::kCrash);
  EXPECT_TRUE(r.runs[0].stacks.empty());
  EXPECT_NE(r.runs[0].stack_note.find("stacks off"), std::string::npos) << r.runs[0].stack_note;
  EXPECT_NE(cr::format_report(r).find("note: stacks off"), std::string::npos) << cr::format_report(r);
}
