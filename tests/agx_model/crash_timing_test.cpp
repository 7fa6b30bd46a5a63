// `tandem crash-timing` end to end (label racy: it runs the agx_model race on purpose, in child
// processes, and expects them to SIGSEGV; see CMakeLists.txt). What CI checks of the experiment:
// direction and significance of the difference between `none` and `global`, that every crash
// died between barrier 1 and barrier 2, and that every crash's innermost frame is a driver-model
// function. And that a correct driver (cpu) crashes under no policy.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

struct Campaign {
  int exit_status = -1;
  std::string log;
  nlohmann::json json;
};

Campaign run_crash_timing(const std::string& args, const std::string& name) {
  const std::string dir = ::testing::TempDir();
  const std::string json_path = dir + name + ".json", log_path = dir + name + ".log";
  const std::string cmd = std::string(TANDEM_EXE) + " crash-timing " + args + " --json " +
                          json_path + " > " + log_path + " 2>&1";
  const int rc = std::system(cmd.c_str());
  Campaign c;
  c.exit_status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  std::ifstream log(log_path);
  std::stringstream ss;
  ss << log.rdbuf();
  c.log = ss.str();
  std::ifstream in(json_path);
  if (in) c.json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return c;
}

const nlohmann::json& policy(const Campaign& c, const std::string& name) {
  for (const auto& p : c.json["policies"]) {
    if (p["policy"] == name) return p;
  }
  static const nlohmann::json kNone;
  ADD_FAILURE() << "no policy " << name << " in the JSON";
  return kNone;
}

TEST(CrashTiming, AgxModelCrashesWithoutTheGlobalLockInTheLoopInDriverFrames) {
  const Campaign c = run_crash_timing("--device agx_model --runs 40 --jobs 2", "agx_model");
  ASSERT_EQ(c.exit_status, 0) << c.log;
  ASSERT_TRUE(c.json.is_object()) << c.log;
  const auto& global = policy(c, "global");
  const auto& stream = policy(c, "stream");
  const auto& none = policy(c, "none");
  std::printf("%s\n", c.log.c_str());  // the table, in the test's output

  // global: the lock the backend declares it needs; the race is impossible by construction.
  EXPECT_EQ(global["runs"], 40);
  EXPECT_EQ(global["crash"], 0);
  EXPECT_EQ(global["pass"], 40);
  EXPECT_FALSE(global["ops_per_s_median"].is_null());

  for (const auto* p : {&stream, &none}) {
    const auto& r = *p;
    SCOPED_TRACE(r["policy"].get<std::string>());
    EXPECT_EQ(r["runs"], 40);
    // Direction and significance: more crashes than under global, Fisher's p < 0.01.
    EXPECT_GT(r["crash"].get<int>(), global["crash"].get<int>());
    ASSERT_FALSE(r["p_vs_reference"].is_null());
    EXPECT_LT(r["p_vs_reference"].get<double>(), 0.01);
    // Phase attribution: threads encode concurrently while making their tensors (after [3]
    // threads created, some already at [4] barrier 1) and in the loop ([5] past barrier 1).
    // Every crash died in one of those phases, most of them in the loop, where each thread
    // opens the window 5,000 times (a fresh clone's run had 2 of 40 die making tensors).
    int in_encoding_phases = 0;
    for (const auto& [phase, n] : r["crash_phases"].items()) {
      if (phase == "[3] threads created" || phase == "[4] waiting at barrier 1" ||
          phase == "[5] past barrier 1") {
        in_encoding_phases += n.get<int>();
      }
    }
    EXPECT_EQ(in_encoding_phases, r["crash"].get<int>()) << r["crash_phases"].dump();
    EXPECT_GT(2 * r["crashes_in_loop"].get<int>(), r["crash"].get<int>())
        << r["crash_phases"].dump();
    // Frames: every crash's innermost application frame is a driver-model function.
    EXPECT_EQ(r["crashes_with_stack"], r["crash"]) << "crashes without a stack: see the log";
    EXPECT_EQ(r["driver_frame_crashes"], r["crash"]) << r["top_frames"].dump();
    for (const auto& [frame, count] : r["top_frames"].items()) {
      EXPECT_EQ(frame.rfind("tandem::backends::agx::", 0), 0u) << frame;
    }
    // Nothing else went wrong: no wrong results, failures, hangs.
    EXPECT_EQ(r["wrong"], 0);
    EXPECT_EQ(r["fail"], 0);
    EXPECT_EQ(r["hang"], 0);
  }
}

TEST(CrashTiming, TheCpuBackendCrashesUnderNoPolicy) {
  const Campaign c =
      run_crash_timing("--device cpu --runs 8 --iterations 500 --jobs 2", "cpu");
  ASSERT_EQ(c.exit_status, 0) << c.log;
  ASSERT_TRUE(c.json.is_object()) << c.log;
  for (const char* name : {"global", "stream", "none"}) {
    const auto& r = policy(c, name);
    SCOPED_TRACE(name);
    EXPECT_EQ(r["runs"], 8);
    EXPECT_EQ(r["pass"], 8);
    EXPECT_EQ(r["ops_per_s"].size(), 8u);
  }
}

}  // namespace
