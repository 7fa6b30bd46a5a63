#include "serve/histogram.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tandem::serve::detail {

int LatencyHistogram::bucket_of(double us) noexcept {
  if (!(us > 1.0)) return 0;
  const int b = static_cast<int>(std::floor(std::log2(us) * kBucketsPerOctave));
  return std::clamp(b, 0, kBuckets - 1);
}

double LatencyHistogram::upper_us(int bucket) noexcept {
  return std::exp2(static_cast<double>(bucket + 1) / kBucketsPerOctave);
}

void LatencyHistogram::record(std::chrono::nanoseconds d) noexcept {
  const auto ns = std::max<std::int64_t>(d.count(), 0);
  counts_[static_cast<std::size_t>(bucket_of(static_cast<double>(ns) / 1000.0))].fetch_add(
      1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
}

void LatencyHistogram::record_all(std::span<const std::chrono::nanoseconds> ds) noexcept {
  if (ds.empty()) return;
  std::array<std::uint32_t, kBuckets> local{};
  int lo = kBuckets, hi = -1;
  std::uint64_t sum = 0;
  for (const auto d : ds) {
    const auto ns = std::max<std::int64_t>(d.count(), 0);
    const int b = bucket_of(static_cast<double>(ns) / 1000.0);
    ++local[static_cast<std::size_t>(b)];
    lo = std::min(lo, b);
    hi = std::max(hi, b);
    sum += static_cast<std::uint64_t>(ns);
  }
  for (int b = lo; b <= hi; ++b) {
    if (local[static_cast<std::size_t>(b)] != 0) {
      counts_[static_cast<std::size_t>(b)].fetch_add(local[static_cast<std::size_t>(b)],
                                                     std::memory_order_relaxed);
    }
  }
  count_.fetch_add(ds.size(), std::memory_order_relaxed);
  sum_ns_.fetch_add(sum, std::memory_order_relaxed);
}

LatencySummary LatencyHistogram::summary() const noexcept {
  LatencySummary s;
  std::vector<std::uint64_t> c(kBuckets);
  std::uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    c[static_cast<std::size_t>(i)] = counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
    total += c[static_cast<std::size_t>(i)];
  }
  s.count = total;
  s.sum_ms = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e6;
  if (total == 0) return s;
  auto quantile = [&](double q) {
    const double rank = q * static_cast<double>(total);  // the rank-th smallest value, 1-based-ish
    double seen = 0.0;
    for (int i = 0; i < kBuckets; ++i) {
      const double n = static_cast<double>(c[static_cast<std::size_t>(i)]);
      if (n == 0.0) continue;
      if (seen + n >= rank) {
        const double lo = i == 0 ? 0.0 : upper_us(i - 1);
        const double hi = upper_us(i);
        const double frac = std::clamp((rank - seen) / n, 0.0, 1.0);
        // Geometric interpolation inside the bucket (linear for bucket 0, which starts at 0).
        const double us = i == 0 ? hi * frac : lo * std::pow(hi / lo, frac);
        return us / 1000.0;
      }
      seen += n;
    }
    return upper_us(kBuckets - 1) / 1000.0;
  };
  s.p50_ms = quantile(0.50);
  s.p90_ms = quantile(0.90);
  s.p99_ms = quantile(0.99);
  return s;
}

}  // namespace tandem::serve::detail
