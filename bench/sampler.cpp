// sampler.cpp — libtandem_sampler.so: an on-CPU sampling profiler to LD_PRELOAD into any program
// on a machine without perf (the GPU host). With TANDEM_SAMPLE_OUT=FILE in the environment it
// samples the process's CPU time (setitimer(ITIMER_PROF): a SIGPROF every TANDEM_SAMPLE_US of
// CPU time summed over its threads, default 500 us, delivered to a thread that is running) and
// records each sample's call stack (backtrace(), up to 32 frames); at exit it writes FILE:
// the process's /proc/self/maps, then one line per sample of hexadecimal return addresses,
// innermost first. scripts/sample_report.py symbolizes and aggregates them (addr2line).
// Without TANDEM_SAMPLE_OUT it does nothing.
//
// Limits, by design: on-CPU time only (a thread asleep in a futex is not sampled; its wake-up
// and the system call are); the unwinder is not async-signal-safe in every corner (a sample that
// lands inside the dynamic loader could deadlock), acceptable for a diagnostic run; samples past
// kMaxSamples are dropped (and counted).
#include <execinfo.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

constexpr int kDepth = 32;
constexpr std::size_t kMaxSamples = 1 << 20;

struct Sample {
  int depth;
  void* pc[kDepth];
};

Sample* samples = nullptr;
std::atomic<std::size_t> next{0};
std::atomic<bool> on{false};

void on_sigprof(int, siginfo_t*, void*) {
  if (!on.load(std::memory_order_relaxed)) return;
  const int saved = errno;
  const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
  if (i < kMaxSamples) samples[i].depth = backtrace(samples[i].pc, kDepth);
  errno = saved;
}

struct Sampler {
  const char* out = std::getenv("TANDEM_SAMPLE_OUT");
  Sampler() {
    if (!out || !*out) return;
    samples = static_cast<Sample*>(std::calloc(kMaxSamples, sizeof(Sample)));
    if (!samples) return;
    void* warm[2];
    (void)backtrace(warm, 2);  // loads the unwinder now, not inside the first signal
    long us = 500;
    if (const char* e = std::getenv("TANDEM_SAMPLE_US")) us = std::max(50L, std::atol(e));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, nullptr);
    on.store(true);
    itimerval t{};
    t.it_interval.tv_sec = us / 1000000;
    t.it_interval.tv_usec = us % 1000000;
    t.it_value = t.it_interval;
    setitimer(ITIMER_PROF, &t, nullptr);
  }
  ~Sampler() {
    if (!samples) return;
    itimerval t{};
    setitimer(ITIMER_PROF, &t, nullptr);
    on.store(false);
    const std::size_t n = std::min(next.load(), kMaxSamples);
    std::ofstream f(out);
    std::ifstream maps("/proc/self/maps");
    std::string line;
    f << "# maps\n";
    while (std::getline(maps, line)) f << line << "\n";
    f << "# samples " << n << " dropped " << (next.load() - n) << "\n";
    char buf[32];
    for (std::size_t i = 0; i < n; ++i) {
      for (int d = 0; d < samples[i].depth; ++d) {
        std::snprintf(buf, sizeof buf, "%s%lx", d ? " " : "",
                      reinterpret_cast<unsigned long>(samples[i].pc[d]));
        f << buf;
      }
      f << "\n";
    }
    std::fprintf(stderr, "tandem sampler: %zu samples to %s\n", n, out);
  }
} sampler;

}  // namespace
