// histogram.h (private) — LatencyHistogram: a lock-free log-scale histogram of durations.
//
// 8 buckets per octave from 1 us up (about 9% wide), 36 octaves (to ~19 hours); anything below
// 1 us falls into bucket 0. record() is wait-free (relaxed fetch_add: the counters are
// statistics, read as a snapshot that may be mid-update across buckets; never torn per bucket).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

#include "tandem/serve/metrics.h"

namespace tandem::serve::detail {

class LatencyHistogram {
 public:
  static constexpr int kBucketsPerOctave = 8;
  static constexpr int kOctaves = 36;
  static constexpr int kBuckets = kBucketsPerOctave * kOctaves;

  void record(std::chrono::nanoseconds d) noexcept;
  // record_all(ds): record() of each, with one atomic add per bucket touched (a batch's queue
  // times fall into a few buckets), so executors completing large batches do not contend on
  // the shared counters once per request.
  void record_all(std::span<const std::chrono::nanoseconds> ds) noexcept;
  // summary(): count, sum and p50/p90/p99 in milliseconds (geometric interpolation in a bucket).
  [[nodiscard]] LatencySummary summary() const noexcept;
  // bucket_of(us), upper_us(i): exposed for the tests.
  [[nodiscard]] static int bucket_of(double us) noexcept;
  [[nodiscard]] static double upper_us(int bucket) noexcept;

 private:
  // Writers: record() (any thread), relaxed. Readers: summary(), relaxed.
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace tandem::serve::detail
