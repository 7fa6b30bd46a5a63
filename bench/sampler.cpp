// sampler.cpp — libtandem_sampler.so: a sampling profiler to LD_PRELOAD into any program on a
// machine without perf (the GPU host). With TANDEM_SAMPLE_OUT=FILE in the environment it records
// call stacks (backtrace(), up to 32 frames) and the sampled thread's id; at exit it writes FILE:
// the process's /proc/self/maps, then one line per sample: the thread id, then hexadecimal return
// addresses, innermost first. scripts/sample_report.py symbolizes and aggregates them
// (addr2line). Without TANDEM_SAMPLE_OUT it does nothing. TANDEM_SAMPLE_MODE picks what a sample
// is:
//   cpu  (default): setitimer(ITIMER_PROF), a SIGPROF every TANDEM_SAMPLE_US (default 500) us of
//        CPU time summed over the threads, delivered to a running thread: where the CPU goes;
//   wall: a sampler thread signals every other thread of the process every TANDEM_SAMPLE_US
//        (default 2000) us of wall time, running or blocked: where the threads *are* (waiting
//        on a lock, a condition variable, a future, the GPU), the view that cpu mode lacks.
// Every process that loads the library samples, wrappers included (`timeout`, `sh -c`, anything
// under LD_PRELOAD), and they exit at different times: so a `%p` in TANDEM_SAMPLE_OUT becomes the
// process id, and without one a process that finds FILE written by another process since it
// started (its child, which exited first) writes FILE.<pid> instead. The program's own profile
// then stays in FILE under a wrapper; stderr names each file written and its sample count.
//
// Limits, by design: the unwinder is not async-signal-safe in every corner (a sample that lands
// inside the dynamic loader could deadlock), acceptable for a diagnostic run; in wall mode a
// signal interrupts a blocking system call, which glibc and tandem's waits retry (they re-check
// their condition), so timing shifts a little; samples past kMaxSamples are dropped (counted).
#include <dirent.h>
#include <execinfo.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace {

constexpr int kDepth = 32;
constexpr std::size_t kMaxSamples = 1 << 20;

struct Sample {
  long tid;
  int depth;
  void* pc[kDepth];
};

Sample* samples = nullptr;
std::atomic<std::size_t> next{0};
std::atomic<bool> on{false};

void on_signal(int, siginfo_t*, void*) {
  if (!on.load(std::memory_order_relaxed)) return;
  const int saved = errno;
  const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
  if (i < kMaxSamples) {
    samples[i].tid = syscall(SYS_gettid);
    samples[i].depth = backtrace(samples[i].pc, kDepth);
  }
  errno = saved;
}

// output_path(spec, started): the file this process writes (see the header): `%p` in spec -> the
// process id; else spec, unless another process wrote spec since `started`: then spec.<pid>.
std::string output_path(const std::string& spec, const timespec& started) {
  const std::string pid = std::to_string(getpid());
  if (const auto at = spec.find("%p"); at != std::string::npos) {
    std::string path = spec;
    path.replace(at, 2, pid);
    return path;
  }
  struct stat st {};
  if (stat(spec.c_str(), &st) == 0 &&
      (st.st_mtim.tv_sec > started.tv_sec ||
       (st.st_mtim.tv_sec == started.tv_sec && st.st_mtim.tv_nsec >= started.tv_nsec))) {
    return spec + "." + pid;
  }
  return spec;
}

// signal_all_threads(): one SIGPROF to every thread of this process but the caller.
void signal_all_threads(long self) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return;
  const long pid = getpid();
  while (dirent* e = readdir(d)) {
    const long tid = std::atol(e->d_name);
    if (tid > 0 && tid != self) (void)syscall(SYS_tgkill, pid, tid, SIGPROF);
  }
  closedir(d);
}

struct Sampler {
  const char* out = std::getenv("TANDEM_SAMPLE_OUT");
  bool wall = false;
  std::atomic<bool> stop{false};
  std::thread ticker;
  timespec started{};  // wall clock at load: output_path

  Sampler() {
    if (!out || !*out) return;
    clock_gettime(CLOCK_REALTIME, &started);
    samples = static_cast<Sample*>(std::calloc(kMaxSamples, sizeof(Sample)));
    if (!samples) return;
    void* warm[2];
    (void)backtrace(warm, 2);  // loads the unwinder now, not inside the first signal
    const char* mode = std::getenv("TANDEM_SAMPLE_MODE");
    wall = mode && std::strcmp(mode, "wall") == 0;
    long us = wall ? 2000 : 500;
    if (const char* e = std::getenv("TANDEM_SAMPLE_US")) us = std::max(50L, std::atol(e));
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, nullptr);
    on.store(true);
    if (wall) {
      ticker = std::thread([this, us] {
        const long self = syscall(SYS_gettid);
        while (!stop.load()) {
          signal_all_threads(self);
          std::this_thread::sleep_for(std::chrono::microseconds(us));
        }
      });
      return;
    }
    itimerval t{};
    t.it_interval.tv_sec = us / 1000000;
    t.it_interval.tv_usec = us % 1000000;
    t.it_value = t.it_interval;
    setitimer(ITIMER_PROF, &t, nullptr);
  }
  ~Sampler() {
    if (!samples) return;
    if (ticker.joinable()) {
      stop.store(true);
      ticker.join();
    } else {
      itimerval t{};
      setitimer(ITIMER_PROF, &t, nullptr);
    }
    on.store(false);
    const std::size_t n = std::min(next.load(), kMaxSamples);
    const std::string path = output_path(out, started);
    std::ofstream f(path);
    std::ifstream maps("/proc/self/maps");
    std::string line;
    f << "# maps\n";
    while (std::getline(maps, line)) f << line << "\n";
    f << "# samples " << n << " dropped " << (next.load() - n) << " mode "
      << (wall ? "wall" : "cpu") << "\n";
    char buf[32];
    for (std::size_t i = 0; i < n; ++i) {
      f << samples[i].tid << ":";
      for (int d = 0; d < samples[i].depth; ++d) {
        std::snprintf(buf, sizeof buf, " %lx", reinterpret_cast<unsigned long>(samples[i].pc[d]));
        f << buf;
      }
      f << "\n";
    }
    std::fprintf(stderr, "tandem sampler: %zu samples (%s) of process %ld to %s\n", n,
                 wall ? "wall" : "cpu", static_cast<long>(getpid()), path.c_str());
  }
} sampler;

}  // namespace
