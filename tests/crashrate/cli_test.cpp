// cli_test.cpp — `tandem crashrate` as a user runs it: usage errors, exit codes, --json, Ctrl-C.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"

using crashrate_test::TempDir;

namespace {

struct CliRun {
  int code = -1;
  std::string out, err;
};

// start_cli(args, env, dir): starts `tandem crashrate ARGS`, stdout/stderr into files in dir.
pid_t start_cli(const std::vector<std::string>& args, const std::vector<std::string>& env, const TempDir& dir) {
  std::vector<std::string> argv = {TANDEM_EXE, "crashrate"};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(dir.file("stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(dir.file("stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  return pid;
}

CliRun finish_cli(pid_t pid, const TempDir& dir) {
  CliRun r;
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = crashrate_test::read_file(dir.file("stdout"));
  r.err = crashrate_test::read_file(dir.file("stderr"));
  return r;
}

CliRun cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  TempDir dir;
  return finish_cli(start_cli(args, env, dir), dir);
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST(CrashrateCli, BadInputIsOneLineAndExitTwoWithNothingStarted) {
  TempDir dir;
  const std::string pids = "WL_PIDS=" + dir.file("pids");
  const std::vector<std::vector<std::string>> bad = {
      {"-n", "5"},                                            // no command
      {"-n", "0", "--", CRASHRATE_WORKLOAD},                  // -n 0
      {"-j", "0", "--", CRASHRATE_WORKLOAD},                  // -j 0
      {"--config", "bad config", "--", CRASHRATE_WORKLOAD},   // unparsable --config
      {"--config", "a:1X=2", "--", CRASHRATE_WORKLOAD},       // unparsable --config
      {"--no-such-option", "--", CRASHRATE_WORKLOAD},         // unknown option
      {"--", "/nonexistent/crashrate-no-such-program"},       // cannot be executed
      {"--", "crashrate-no-such-program-in-path"},            // not in PATH
      {"--timeout", "soon", "--", CRASHRATE_WORKLOAD},        // bad timeout
      {"--until-decided", "--", CRASHRATE_WORKLOAD},          // needs two configurations
  };
  for (const auto& args : bad) {
    const auto r = cli(args, {pids});
    EXPECT_EQ(r.code, 2) << args[0] << " " << r.err;
    EXPECT_EQ(lines(r.err), 1u) << r.err;
    EXPECT_EQ(r.out, "");
  }
  EXPECT_TRUE(crashrate_test::read_pids(dir.file("pids")).empty()) << "a run was started";
}

TEST(CrashrateCli, ExitsZeroWhenEveryRunPassedAndOneOtherwise) {
  EXPECT_EQ(cli({"-n", "3", "-j", "2", "--", CRASHRATE_WORKLOAD}).code, 0);
  const auto r = cli({"-n", "3", "-j", "2", "--config", "ok:WL_MODE=pass", "--config", "bad:WL_MODE=fail", "--",
                      CRASHRATE_WORKLOAD});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.out.find("bad vs ok: p = "), std::string::npos) << r.out;
}

TEST(CrashrateCli, WritesTheDocumentedJson) {
  TempDir dir;
  const auto r = cli({"-n", "4", "-j", "2", "--seed", "9", "--exact", "--json", dir.file("r.json"), "--markdown",
                      dir.file("r.md"), "--config", "ok:WL_MODE=pass", "--config",
                      "segv:WL_MODE=crash,WL_PHASE=past barrier 2", "--", CRASHRATE_WORKLOAD});
  EXPECT_EQ(r.code, 1) << r.err;
  const auto j = nlohmann::json::parse(crashrate_test::read_file(dir.file("r.json")));
  ASSERT_EQ(j["configs"].size(), 2u);
  const auto& segv = j["configs"][1];
  EXPECT_EQ(segv["name"], "segv");
  EXPECT_EQ(segv["runs"], 4);
  EXPECT_EQ(segv["crash"], 4);
  EXPECT_EQ(segv["rate"], 1.0);
  EXPECT_LT(segv["ci_low"].get<double>(), 0.5);  // Clopper-Pearson 4/4: [0.398, 1]
  EXPECT_EQ(segv["phases"]["past barrier 2"], 4);
  for (const char* k : {"pass", "hang", "fail", "sanitizer", "wrong", "ci_high"}) EXPECT_TRUE(segv.contains(k)) << k;
  ASSERT_EQ(j["comparisons"].size(), 1u);
  EXPECT_EQ(j["comparisons"][0]["a"], "segv");
  EXPECT_EQ(j["comparisons"][0]["b"], "ok");
  EXPECT_NEAR(j["comparisons"][0]["p_value"].get<double>(), 1.0 / 35.0, 1e-12);  // [[4,0],[0,4]]
  ASSERT_EQ(j["runs"].size(), 8u);
  for (const auto& run : j["runs"]) {
    for (const char* k : {"config", "seed", "outcome", "signal", "exit_code", "phase", "duration_s", "stack"}) {
      EXPECT_TRUE(run.contains(k)) << k;
    }
    if (run["config"] == "segv") {
      EXPECT_EQ(run["signal"], "SIGSEGV");
      EXPECT_TRUE(run["exit_code"].is_null());
    } else {
      EXPECT_TRUE(run["signal"].is_null());
      EXPECT_EQ(run["exit_code"], 0);
    }
  }
  EXPECT_NE(crashrate_test::read_file(dir.file("r.md")).find("| segv | 4 |"), std::string::npos);
}

TEST(CrashrateCli, CtrlCPrintsThePartialReportAndLeavesNoProcessBehind) {
  TempDir dir;
  const std::string pids = dir.file("pids");
  const pid_t pid = start_cli({"-n", "100", "-j", "2", "--timeout", "60", "--", CRASHRATE_WORKLOAD},
                              {"WL_MODE=hang", "WL_PIDS=" + pids}, dir);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (crashrate_test::read_pids(pids).size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(crashrate_test::read_pids(pids).size(), 2u);
  ::kill(pid, SIGINT);
  const auto r = finish_cli(pid, dir);
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_NE(r.out.find("INTERRUPTED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("baseline"), std::string::npos) << r.out;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int p : crashrate_test::read_pids(pids)) EXPECT_FALSE(crashrate_test::alive(p)) << "pid " << p << " survived";
}
