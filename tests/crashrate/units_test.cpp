// units_test.cpp — configuration parsing, option validation, the schedule, the phase protocol,
// output buffering and outcome classification, without running processes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <set>

#include "classify.h"
#include "crashrate/error.h"
#include "crashrate/options.h"
#include "run_io.h"
#include "schedule.h"

namespace cr = tandem::crashrate;
namespace d = tandem::crashrate::detail;

TEST(Options, ParsesAConfigurationWithSeveralVariables) {
  const auto c = cr::parse_configuration("nomutex:TANDEM_ENCODING_LOCK=none,X=1,EMPTY=");
  EXPECT_EQ(c.name, "nomutex");
  ASSERT_EQ(c.env.size(), 3u);
  EXPECT_EQ(c.env[0], (std::pair<std::string, std::string>{"TANDEM_ENCODING_LOCK", "none"}));
  EXPECT_EQ(c.env[2].second, "");
  EXPECT_TRUE(cr::parse_configuration("plain").env.empty());
}

TEST(Options, RejectsUnparsableConfigurationsWithAOneLineReason) {
  for (const char* bad : {":A=1", "a b:X=1", "n:X", "n:1X=2", "n:X=1,,Y=2"}) {
    try {
      (void)cr::parse_configuration(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const cr::Error& e) {
      EXPECT_EQ(e.kind(), cr::ErrorKind::kUsage);
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
}

TEST(Options, ValidateRejectsBadInputBeforeAnythingStarts) {
  cr::Options o;
  EXPECT_THROW((void)cr::validate(o), cr::Error);  // no command
  o.command = {"/bin/true"};
  EXPECT_EQ(cr::validate(o), "/bin/true");
  o.command = {"true"};
  EXPECT_NE(cr::validate(o).find("/true"), std::string::npos);  // found in PATH
  o.command = {"/nonexistent/crashrate-no-such-program"};
  EXPECT_THROW((void)cr::validate(o), cr::Error);
  o.command = {"/bin/true"};
  o.runs = 0;
  EXPECT_THROW((void)cr::validate(o), cr::Error);
  o.runs = 1;
  o.expect = "(unclosed";
  EXPECT_THROW((void)cr::validate(o), cr::Error);
  o.expect.reset();
  o.configs = {cr::parse_configuration("a"), cr::parse_configuration("a")};
  EXPECT_THROW((void)cr::validate(o), cr::Error);
}

TEST(Schedule, InterleavesConfigurationsRoundByRound) {
  const auto s = d::make_schedule(3, 4, 7);
  ASSERT_EQ(s.size(), 12u);
  for (std::size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].config, i % 3);
    EXPECT_EQ(s[i].index, static_cast<int>(i / 3));
    EXPECT_EQ(s[i].order, i);
  }
}

TEST(Schedule, SeedsAreDistinctReproducibleAndFitASignedInteger) {
  const auto a = d::make_schedule(2, 5000, 42);
  const auto b = d::make_schedule(2, 5000, 42);
  const auto c = d::make_schedule(2, 5000, 43);
  std::set<std::uint64_t> seen;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].seed, b[i].seed);
    EXPECT_LT(a[i].seed, 1ULL << 63);
    seen.insert(a[i].seed);
  }
  EXPECT_EQ(seen.size(), a.size());
  EXPECT_NE(a[0].seed, c[0].seed);
}

TEST(PhaseProtocol, TheLastPhaseWrittenIsThePhaseOfDeath) {
  d::PhaseParser p;
  const std::string bytes = "phase start\nphase past barr";
  p.feed(bytes.data(), bytes.size());
  EXPECT_EQ(p.last_phase(), "start");
  const std::string more = "ier 1\nnoise\nwrong sum was 41\nwrong second\nphase end";
  p.feed(more.data(), more.size());
  p.finish();
  EXPECT_EQ(p.last_phase(), "end");  // a last line without newline still counts
  EXPECT_EQ(p.wrong(), "sum was 41");  // the first wrong line
  EXPECT_EQ(p.phase_count(), 3u);
  EXPECT_EQ(p.bad_lines(), 1u);
  EXPECT_EQ(p.history(), (std::vector<std::string>{"start", "past barrier 1", "end"}));
}

TEST(OutputBuffer, KeepsTheHeadAndTheTailOfLongOutput) {
  d::OutputBuffer b(1000);
  const std::string head(500, 'h'), middle(100000, 'm'), tail = "\n==1==ERROR: AddressSanitizer: x\n";
  b.append(head.data(), head.size());
  b.append(middle.data(), middle.size());
  b.append(tail.data(), tail.size());
  const std::string t = b.text();
  EXPECT_EQ(t.substr(0, 500), head);
  EXPECT_NE(t.find("dropped"), std::string::npos);
  EXPECT_EQ(t.substr(t.size() - tail.size()), tail);
  EXPECT_LT(t.size(), 1100u);
}

TEST(Classify, AppliesTheDocumentedPrecedence) {
  const d::Filters none;
  auto st_exit = [](int code) { return code << 8; };
  auto st_signal = [](int sig) { return sig; };
  EXPECT_EQ(d::classify({st_exit(0), false, false}, "", none), cr::Outcome::kPass);
  EXPECT_EQ(d::classify({st_exit(1), false, false}, "", none), cr::Outcome::kFail);
  EXPECT_EQ(d::classify({st_signal(SIGSEGV), false, false}, "", none), cr::Outcome::kCrash);
  EXPECT_EQ(d::classify({st_signal(SIGKILL), true, false}, "", none), cr::Outcome::kHang);
  EXPECT_EQ(d::classify({st_exit(66), false, false}, "", none), cr::Outcome::kSanitizer);
  EXPECT_EQ(d::classify({st_signal(SIGABRT), false, false}, "WARNING: ThreadSanitizer: data race", none),
            cr::Outcome::kSanitizer);
  EXPECT_EQ(d::classify({st_exit(0), false, true}, "", none), cr::Outcome::kWrong);
  EXPECT_EQ(d::classify({st_signal(SIGSEGV), false, true}, "", none), cr::Outcome::kCrash);
}

TEST(Classify, ExpectFailureAndIgnoreFilterOnOutputLines) {
  cr::Options o;
  o.expect = "^result: 42$";
  auto f = d::Filters::compile(o);
  EXPECT_EQ(d::classify({0, false, false}, "x\nresult: 42\ny", f), cr::Outcome::kPass);
  EXPECT_EQ(d::classify({0, false, false}, "result: 41\n", f), cr::Outcome::kWrong);
  o.expect.reset();
  o.failure = "use-after-free";
  o.ignore = "flaky network";
  f = d::Filters::compile(o);
  EXPECT_EQ(d::apply_filters(cr::Outcome::kFail, "boom", f), cr::Outcome::kPass);
  EXPECT_EQ(d::apply_filters(cr::Outcome::kFail, "a use-after-free", f), cr::Outcome::kFail);
  EXPECT_EQ(d::apply_filters(cr::Outcome::kFail, "use-after-free\nflaky network", f), cr::Outcome::kPass);
  EXPECT_EQ(d::apply_filters(cr::Outcome::kHang, "boom", f), cr::Outcome::kHang);
}
