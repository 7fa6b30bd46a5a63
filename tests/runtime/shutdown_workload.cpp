// shutdown_workload — a program that ends (return from main, or exit()) while other threads still
// hold leased streams with work in flight. Used by shutdown_test.cpp in fresh processes.
//   shutdown_workload return|exit THREADS
//   shutdown_workload free THREADS   each thread frees its buffers behind queued work, then main
//                                    returns: the frees must still run (LeakSanitizer checks it)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/device.h"
#include "tandem/stream.h"

int main(int argc, char** argv) {
  const bool known = argc == 3 && (std::strcmp(argv[1], "return") == 0 ||
                                   std::strcmp(argv[1], "exit") == 0 ||
                                   std::strcmp(argv[1], "free") == 0);
  if (!known) {
    std::fprintf(stderr, "usage: shutdown_workload return|exit|free THREADS\n");
    return 2;
  }
  const bool use_exit = std::strcmp(argv[1], "exit") == 0;
  const int threads = std::atoi(argv[2]);
  auto device = tandem::Device::get("cpu");
  static std::atomic<int> running{0};
  if (std::strcmp(argv[1], "free") == 0) {
    for (int i = 0; i < threads; ++i) {
      std::thread([device] {
        tandem::Stream& s = device->current_stream();
        {
          constexpr std::size_t kFloats = 1 << 18;
          tandem::Buffer t(device, kFloats * sizeof(float), s), y(device, kFloats * sizeof(float), s);
          tandem::fill(s, t, 1.0f);
          for (int k = 0; k < 64; ++k) tandem::scale(s, y, t, 2.0f);  // still queued at exit...
        }  // ...and the frees of t and y queued behind it
        running.fetch_add(1);
        for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // never returns its stream
      }).detach();
    }
    while (running.load() < threads) std::this_thread::yield();
    return 0;
  }
  for (int i = 0; i < threads; ++i) {
    std::thread([device] {
      tandem::Stream& s = device->current_stream();
      tandem::Buffer t(device, 4096 * sizeof(float), s), y(device, 4096 * sizeof(float), s);
      tandem::fill(s, t, 1.0f);
      running.fetch_add(1);
      for (unsigned k = 0;; ++k) {
        tandem::scale(s, y, t, 2.0f);    // work in flight...
        if (k % 3 == 0) s.synchronize();  // ...and threads blocked in synchronize
      }
    }).detach();
  }
  while (running.load() < threads) std::this_thread::yield();
  if (use_exit) std::exit(0);
  return 0;
}
