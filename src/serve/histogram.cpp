#include "serve/histogram.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace tandem::serve::detail {

int LatencyHistogram::bucket_of(double us) noexcept {
  if (!(us > 1.0)) return 0;  // NaN too
  // floor(log2(us) * 8) without log2 (which cost ~60 instructions per request on the executors,
  // once per queue time): the octave is the binary exponent, the eighth comes from comparing
  // the mantissa with 2^(j/8). It differs from the log2 form only within rounding of a bucket
  // boundary. us > 1 is a normal double (or infinity: clamped below).
  // The table is 2^(j/8), j = 1..7: a change of kBucketsPerOctave must rewrite it (a larger
  // one would otherwise leave zeros at its end, and every mantissa would pass them).
  static_assert(kBucketsPerOctave == 8, "kEighths holds 2^(j/8): recompute it");
  static constexpr std::array<double, kBucketsPerOctave - 1> kEighths = {
      1.0905077326652577, 1.189207115002721,  1.2968395546510096, 1.4142135623730951,
      1.5422108254079407, 1.681792830507429,  1.8340080864093424};
  constexpr std::uint64_t kMantissa = (std::uint64_t{1} << 52) - 1;
  const auto bits = std::bit_cast<std::uint64_t>(us);
  const int octave = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  const double m = std::bit_cast<double>((bits & kMantissa) | (std::uint64_t{1023} << 52));  // [1, 2)
  int eighth = 0;
  while (eighth < kBucketsPerOctave - 1 && m >= kEighths[static_cast<std::size_t>(eighth)]) ++eighth;
  return std::clamp(octave * kBucketsPerOctave + eighth, 0, kBuckets - 1);
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
