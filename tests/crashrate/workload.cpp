// workload.cpp — the program the crashrate tests run. Driven by its environment:
//   WL_MODE      pass | crash | hang | fail | wrong | sanitizer | exit66 | thread_crash | grandchild
//   WL_PROB      probability (0..1) that the run misbehaves as WL_MODE says, drawn from
//                CRASHRATE_SEED (default 1)
//   WL_SIGNAL    SEGV (a real null write) | ABRT (abort()) | BUS | FPE | ILL | any number (raise)
//   WL_PHASE     the phase in which it misbehaves: start | past barrier 1 | past barrier 2 | end
//   WL_THREADS   threads that run alongside (hang: all of them block; default 2)
//   WL_LOG       a file to which each run appends "CONFIG\n" (interleaving tests)
//   WL_PIDS      a file to which each run appends the pids it starts (no-process-left tests)
// Phases written with the C++ client: "start", "past barrier 1", "past barrier 2", "end".
#include <crashrate/phase.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

int signal_from(const std::string& s) {
  if (s == "SEGV") return SIGSEGV;
  if (s == "ABRT") return SIGABRT;
  if (s == "BUS") return SIGBUS;
  if (s == "FPE") return SIGFPE;
  if (s == "ILL") return SIGILL;
  return std::atoi(s.c_str());
}

void append(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  [[maybe_unused]] const ssize_t w = ::write(fd, line.data(), line.size());
  ::close(fd);
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

// The function every crash of this workload happens in; tests look for its name in the stack.
extern "C" __attribute__((noinline)) void crashrate_workload_crash_here(int signo) {
  if (signo == SIGSEGV) {
    volatile int* null = nullptr;
    *null = 42;  // a real fault, not raise()
  } else if (signo == SIGABRT) {
    std::abort();
  }
  std::raise(signo);
  std::_Exit(3);  // a signal that did not kill
}

extern "C" __attribute__((noinline)) void crashrate_workload_block_forever() {
  for (;;) ::pause();
}

// Exits with std::_Exit everywhere: the pool threads are parked, never joined.
int main() {
  const std::string mode = env("WL_MODE", "pass");
  const double prob = std::atof(env("WL_PROB", "1").c_str());
  const int signo = signal_from(env("WL_SIGNAL", "SEGV"));
  const std::string where = env("WL_PHASE", "past barrier 1");
  const int threads = std::atoi(env("WL_THREADS", "2").c_str());
  const std::uint64_t seed = std::strtoull(env("CRASHRATE_SEED", "0").c_str(), nullptr, 10);
  append(env("WL_LOG", ""), env("CRASHRATE_CONFIG", "?") + "\n");
  append(env("WL_PIDS", ""), std::to_string(::getpid()) + "\n");
  const bool misbehave = static_cast<double>(splitmix64(seed) >> 11) * 0x1.0p-53 < prob;

  std::atomic<bool> crash_in_thread{false};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      while (!crash_in_thread.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      crashrate_workload_crash_here(signo);
    });
  }
  for (const char* phase : {"start", "past barrier 1", "past barrier 2", "end"}) {
    crashrate::phase(phase);
    if (!misbehave || where != phase) continue;
    if (mode == "crash") crashrate_workload_crash_here(signo);
    if (mode == "thread_crash") {
      crash_in_thread.store(true);
      crashrate_workload_block_forever();
    }
    if (mode == "hang") crashrate_workload_block_forever();
    if (mode == "fail") {
      std::fprintf(stderr, "workload: failing on purpose in phase %s\n", phase);
      std::fflush(stderr);
      std::_Exit(3);
    }
    if (mode == "wrong") crashrate::wrong("sum was 41, expected 42");
    if (mode == "sanitizer") {
      std::fprintf(stderr, "==%d==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n", ::getpid());
      std::fflush(stderr);
      std::_Exit(1);
    }
    if (mode == "exit66") std::_Exit(66);
    if (mode == "grandchild") {
      // A child of the run that would outlive it: the harness must kill it with the group.
      const pid_t p = ::fork();
      if (p == 0) {
        append(env("WL_PIDS", ""), std::to_string(::getpid()) + "\n");
        crashrate_workload_block_forever();
      }
      ::usleep(20000);
    }
  }
  std::printf("workload done\n");
  std::fflush(stdout);
  std::_Exit(0);  // the pool threads are parked; do not join them
}
