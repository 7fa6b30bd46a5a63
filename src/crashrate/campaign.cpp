// campaign.cpp — the event loop of a campaign (crashrate/campaign.h).
//
// One thread does everything: it forks each run, traces it (ptrace's tracer is a thread), reads
// its pipes, reaps it, and enforces its timeout. It sleeps in poll() on the runs' pipes and on a
// self-pipe written by a SIGCHLD handler, so a run's end or ptrace-stop wakes it at once; poll
// never sleeps more than kTick, so a stop request or a missed signal costs at most that.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <memory>
#include <thread>

#include "classify.h"
#include "crashrate/campaign.h"
#include "crashrate/error.h"
#include "crashrate/stats.h"
#include "fd.h"
#include "logs.h"
#include "run_io.h"
#include "schedule.h"
#include "spawn.h"
#include "tracker.h"
#include "unwind.h"

extern char** environ;

namespace tandem::crashrate {
namespace {

using Clock = std::chrono::steady_clock;
using detail::Fd;

constexpr auto kTick = std::chrono::milliseconds(50);
constexpr auto kHangCaptureBudget = std::chrono::milliseconds(1000);
constexpr auto kReapBudget = std::chrono::seconds(5);

// ---- SIGCHLD ownership (one campaign per process) ----------------------------------------
std::atomic<bool> g_running{false};  // written by SigchldScope; acquire/release pairs scopes
std::atomic<int> g_wake_fd{-1};      // written by SigchldScope, read by the handler
struct sigaction g_previous;         // written before the handler is installed

extern "C" void on_sigchld(int signo, siginfo_t* info, void* context) {
  const int saved = errno;
  const int fd = g_wake_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char c = 0;
    [[maybe_unused]] const ssize_t w = ::write(fd, &c, 1);  // full pipe: already awake
  }
  if ((g_previous.sa_flags & SA_SIGINFO) != 0) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(signo, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signo);
  }
  errno = saved;
}

class SigchldScope {
 public:
  SigchldScope() {
    if (g_running.exchange(true, std::memory_order_acquire)) {
      throw Error(ErrorKind::kUsage,
                  "another crashrate campaign is running in this process; run them one after the other");
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      g_running.store(false, std::memory_order_release);
      throw Error(ErrorKind::kSystem, std::string("pipe2 for SIGCHLD failed: ") + std::strerror(errno));
    }
    read_ = Fd(p[0]);
    write_ = Fd(p[1]);
    g_wake_fd.store(write_.get(), std::memory_order_relaxed);
    struct sigaction sa{};
    sa.sa_sigaction = on_sigchld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGCHLD, nullptr, &g_previous);
    ::sigaction(SIGCHLD, &sa, nullptr);
  }
  ~SigchldScope() {
    ::sigaction(SIGCHLD, &g_previous, nullptr);
    g_wake_fd.store(-1, std::memory_order_relaxed);
    g_running.store(false, std::memory_order_release);
  }
  SigchldScope(const SigchldScope&) = delete;
  SigchldScope& operator=(const SigchldScope&) = delete;
  [[nodiscard]] int fd() const { return read_.get(); }
  void drain() const {
    char buf[256];
    while (::read(read_.get(), buf, sizeof buf) > 0) {
    }
  }

 private:
  Fd read_, write_;
};

// ---- one run in flight ---------------------------------------------------------------------
struct Active {
  detail::RunSpec spec;
  std::unique_ptr<detail::ProcessTracker> tracker;
  Fd out, phase;
  detail::OutputBuffer output;
  detail::PhaseParser phases;
  Clock::time_point start, deadline;
  bool timed_out = false;
  std::vector<ThreadStack> hang_stacks;
  std::string trace_note;
  explicit Active(std::size_t output_limit) : output(output_limit) {}
};

// read_some(fd, sink): reads what is there; closes fd at end of file. Returns bytes read.
template <typename Sink>
std::size_t read_some(Fd& fd, Sink&& sink, bool until_empty) {
  char buf[65536];
  std::size_t total = 0;
  while (fd.valid()) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      sink(buf, static_cast<std::size_t>(n));
      total += static_cast<std::size_t>(n);
      if (!until_empty) break;
    } else if (n == 0) {
      fd.reset();
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) fd.reset();
      break;
    }
  }
  return total;
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    const bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?") == std::string::npos;
    s += plain ? a : "'" + a + "'";
  }
  return s;
}

class Campaign {
 public:
  Campaign(const Options& o, std::string path, const Hooks& hooks)
      : options_(o), path_(std::move(path)), hooks_(hooks), filters_(detail::Filters::compile(o)),
        logs_(o.keep_logs) {}

  ~Campaign() { abandon_all(); }  // an exception must not leave children behind
  Campaign(const Campaign&) = delete;
  Campaign& operator=(const Campaign&) = delete;

  CampaignResult run();

 private:
  void prepare();
  void start(const detail::RunSpec& spec);
  void wait_for_events();
  void service();
  void finish(Active& a);
  void abandon_all();
  bool sprt_decided();
  [[nodiscard]] bool stop_requested() const {
    return hooks_.stop != nullptr && hooks_.stop->load(std::memory_order_relaxed);
  }

  const Options& options_;
  std::string path_;
  const Hooks& hooks_;
  detail::Filters filters_;
  detail::LogKeeper logs_;
  SigchldScope sigchld_;
  detail::Symbolizer symbolizer_;  // outlives active_ (declared before it)
  CampaignResult result_;
  int jobs_ = 1;
  bool trace_ = false;
  std::vector<std::string> argv_storage_;
  std::vector<char*> argv_;
  std::vector<std::vector<std::string>> config_env_;  // per configuration, without the seed
  std::list<Active> active_;
  std::vector<std::vector<signed char>> failed_;  // [config][index]: -1 unknown, 0 pass, 1 fail
  Clock::time_point t0_;
  int total_ = 0, done_ = 0, failures_ = 0;
  bool lsan_noted_ = false, bad_lines_noted_ = false;
};

void Campaign::prepare() {
  result_.configs = options_.configs;
  if (result_.configs.empty()) result_.configs.push_back({"baseline", {}});
  result_.interval = options_.interval;
  result_.seed = options_.seed ? *options_.seed : detail::draw_seed();
  jobs_ = options_.jobs > 0 ? options_.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  if (options_.stacks == StackMode::kOff) {
    result_.stack_support = "stacks off (--stacks off)";
  } else if (std::string s = detail::unwinder_support(); !s.empty()) {
    result_.stack_support = s;
  } else if (std::string p = detail::ptrace_probe(); !p.empty()) {
    result_.stack_support = "stack unavailable: " + p;
  } else {
    trace_ = true;
  }

  argv_storage_ = options_.command;
  for (auto& a : argv_storage_) argv_.push_back(a.data());
  argv_.push_back(nullptr);

  for (const auto& c : result_.configs) {
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string_view kv(*e);
      const std::string_view key = kv.substr(0, kv.find('='));
      if (key.rfind("CRASHRATE_", 0) == 0) continue;
      const bool overridden = std::any_of(c.env.begin(), c.env.end(), [&](const auto& p) { return p.first == key; });
      if (!overridden) env.emplace_back(kv);
    }
    for (const auto& [k, v] : c.env) env.push_back(k + "=" + v);
    env.push_back("CRASHRATE_CONFIG=" + c.name);
    env.push_back("CRASHRATE_PHASE_FD=" + std::to_string(detail::kPhaseFd));
    config_env_.push_back(std::move(env));
  }
  failed_.assign(result_.configs.size(), std::vector<signed char>(static_cast<std::size_t>(options_.runs), -1));
}

void Campaign::start(const detail::RunSpec& spec) {
  std::vector<std::string> env = config_env_[spec.config];
  env.push_back("CRASHRATE_SEED=" + std::to_string(spec.seed));
  env.push_back("CRASHRATE_RUN=" + std::to_string(spec.index));
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  detail::SpawnRequest req;
  req.path = path_.c_str();
  req.argv = argv_.data();
  req.envp = envp.data();
  req.trace = trace_;
  detail::Spawned s = detail::spawn_child(req);

  Active& a = active_.emplace_back(options_.max_output_bytes);
  a.spec = spec;
  a.tracker = std::make_unique<detail::ProcessTracker>(s.pid, s.traced, symbolizer_);
  a.out = std::move(s.output);
  a.phase = std::move(s.phase);
  a.trace_note = s.trace_note;
  a.start = Clock::now();
  a.deadline = a.start + options_.timeout;
}

void Campaign::wait_for_events() {
  std::vector<pollfd> fds;
  fds.push_back({sigchld_.fd(), POLLIN, 0});
  auto wake = Clock::now() + kTick;
  for (Active& a : active_) {
    if (a.out.valid()) fds.push_back({a.out.get(), POLLIN, 0});
    if (a.phase.valid()) fds.push_back({a.phase.get(), POLLIN, 0});
    if (!a.timed_out) wake = std::min(wake, a.deadline);
  }
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now()).count();
  const int r = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(0, ms)));
  if (r < 0 && errno != EINTR) {
    throw Error(ErrorKind::kSystem, std::string("poll failed: ") + std::strerror(errno));
  }
  sigchld_.drain();
}

void Campaign::service() {
  const auto now = Clock::now();
  for (auto it = active_.begin(); it != active_.end();) {
    Active& a = *it;
    read_some(a.out, [&](const char* d, std::size_t n) { a.output.append(d, n); }, false);
    read_some(a.phase, [&](const char* d, std::size_t n) { a.phases.feed(d, n); }, false);
    a.tracker->reap();
    if (!a.tracker->ended() && !a.timed_out && now >= a.deadline) {
      a.timed_out = true;
      if (a.tracker->traced()) {
        a.hang_stacks = a.tracker->stop_all_and_unwind(kHangCaptureBudget);
      }
      a.tracker->kill_group();
      a.tracker->reap();
    }
    if (a.tracker->ended()) {
      finish(a);
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
}

void Campaign::finish(Active& a) {
  a.tracker->kill_group();  // what the run left in its group (its own children)
  read_some(a.out, [&](const char* d, std::size_t n) { a.output.append(d, n); }, true);
  read_some(a.phase, [&](const char* d, std::size_t n) { a.phases.feed(d, n); }, true);
  a.phases.finish();

  RunResult r;
  r.config = a.spec.config;
  r.index = a.spec.index;
  r.order = a.spec.order;
  r.seed = a.spec.seed;
  r.duration_s = std::chrono::duration<double>(Clock::now() - a.start).count();
  r.phase = a.phases.last_phase();
  r.wrong = a.phases.wrong();
  r.output = a.output.text();
  const int st = a.tracker->status();
  if (!a.timed_out) {
    if (WIFSIGNALED(st)) r.signal = WTERMSIG(st);
    if (WIFEXITED(st)) r.exit_code = WEXITSTATUS(st);
  }
  const detail::RunEnd end{st, a.timed_out, r.wrong.has_value()};
  r.raw_outcome = detail::classify(end, r.output, filters_);
  r.outcome = detail::apply_filters(r.raw_outcome, r.output, filters_);
  r.filtered = r.outcome != r.raw_outcome;

  // Stacks: the crashing thread for a crash, every thread for a hang, the faulting thread for a
  // sanitizer report or failure that followed a fatal signal.
  const std::string why_none = !a.trace_note.empty() ? "stack unavailable: " + a.trace_note : result_.stack_support;
  switch (r.raw_outcome) {
    case Outcome::kHang:
      r.stacks = std::move(a.hang_stacks);
      if (r.stacks.empty()) r.stack_note = why_none;
      break;
    case Outcome::kCrash:
      if (!a.tracker->traced()) {
        r.stack_note = why_none;
      } else if (auto s = a.tracker->captured(*r.signal)) {
        r.stacks.push_back(std::move(*s));
      } else if (*r.signal == SIGKILL) {
        r.stack_note = "stack unavailable: killed by SIGKILL, which cannot be intercepted "
                       "(out of memory? killed by another process?)";
      } else {
        r.stack_note = "stack unavailable: no delivery of " + signal_name(*r.signal) + " was seen";
      }
      break;
    case Outcome::kSanitizer:
    case Outcome::kFail:
      if (auto s = a.tracker->first_capture()) {
        s->second.note += (s->second.note.empty() ? "" : "; ") + std::string("taken when ") +
                          signal_name(s->first) + " was delivered";
        r.stacks.push_back(std::move(s->second));
      }
      break;
    case Outcome::kPass:
    case Outcome::kWrong:
      break;
  }
  if (a.tracker->traced() && !lsan_noted_ && r.output.find("LeakSanitizer does not work under ptrace") != std::string::npos) {
    lsan_noted_ = true;
    result_.notes.push_back("LeakSanitizer cannot run under ptrace; use --stacks off or ASAN_OPTIONS=detect_leaks=0");
  }
  if (a.phases.bad_lines() > 0 && !bad_lines_noted_) {
    bad_lines_noted_ = true;
    result_.notes.push_back("a run wrote lines on CRASHRATE_PHASE_FD that are neither `phase NAME` nor `wrong DETAIL`; they were ignored");
  }
  if (r.raw_outcome != Outcome::kPass) {
    r.log = logs_.write(r, result_.configs[r.config].name, a.phases.history(), join_command(options_.command));
  }

  ++done_;
  if (r.outcome != Outcome::kPass) ++failures_;
  failed_[r.config][static_cast<std::size_t>(r.index)] = r.outcome != Outcome::kPass ? 1 : 0;
  result_.runs.push_back(std::move(r));
  if (hooks_.on_run) {
    Progress p{done_, total_, failures_, static_cast<int>(active_.size()) - 1,
               std::chrono::duration<double>(Clock::now() - t0_).count()};
    hooks_.on_run(result_.runs.back(), p);
  }
}

bool Campaign::sprt_decided() {
  if (!options_.until_decided || failed_.size() < 2) return false;
  std::vector<bool> a, b;
  for (std::size_t i = 0; i < failed_[0].size() && failed_[0][i] >= 0 && failed_[1][i] >= 0; ++i) {
    a.push_back(failed_[0][i] == 1);
    b.push_back(failed_[1][i] == 1);
  }
  return sprt(a, b, options_.sprt).decision != SprtDecision::kUndecided;
}

void Campaign::abandon_all() {
  for (Active& a : active_) a.tracker->kill_group();
  const auto deadline = Clock::now() + kReapBudget;
  while (!active_.empty() && Clock::now() < deadline) {
    for (auto it = active_.begin(); it != active_.end();) {
      // Drain the pipes so that nothing blocks on a full one while dying.
      read_some(it->out, [](const char*, std::size_t) {}, true);
      read_some(it->phase, [](const char*, std::size_t) {}, true);
      if (it->tracker->reap()) {
        it->tracker->kill_group();
        it = active_.erase(it);
        ++result_.cancelled;
      } else {
        ++it;
      }
    }
    if (!active_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

CampaignResult Campaign::run() {
  prepare();
  const auto schedule = detail::make_schedule(result_.configs.size(), options_.runs, result_.seed);
  total_ = static_cast<int>(schedule.size());
  t0_ = Clock::now();
  std::size_t next = 0;
  bool decided = false;
  while (true) {
    if (stop_requested()) {
      result_.interrupted = true;
      break;
    }
    while (!decided && next < schedule.size() && active_.size() < static_cast<std::size_t>(jobs_)) {
      start(schedule[next++]);
    }
    if (active_.empty()) break;
    wait_for_events();
    service();
    if (!decided && sprt_decided()) {
      decided = true;
      break;
    }
  }
  abandon_all();
  std::sort(result_.runs.begin(), result_.runs.end(), [](const RunResult& x, const RunResult& y) { return x.order < y.order; });
  result_.logs_dir = logs_.dir();
  if (!logs_.error().empty()) result_.notes.push_back(logs_.error());
  result_.wall_s = std::chrono::duration<double>(Clock::now() - t0_).count();
  summarize(result_, options_);
  return std::move(result_);
}

}  // namespace

CampaignResult run_campaign(const Options& options, const Hooks& hooks) {
  const std::string path = validate(options);
  Campaign c(options, path, hooks);
  return c.run();
}

}  // namespace tandem::crashrate
