// stats.cpp — binomial intervals, Fisher's exact test, and the SPRT (see crashrate/stats.h).
#include "crashrate/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tandem::crashrate {
namespace {

// Continued fraction of the incomplete beta function (modified Lentz), valid and fast for
// x < (a + 1) / (a + b + 2).
double beta_continued_fraction(double a, double b, double x) {
  constexpr int kMaxIterations = 100000;
  constexpr double kEps = 1e-16;
  constexpr double kTiny = 1e-300;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= kMaxIterations; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < kEps) break;
  }
  return h;
}

// beta_quantile(p, a, b): the x with I_x(a, b) = p, by bisection (I is increasing in x).
double beta_quantile(double p, double a, double b) {
  double lo = 0, hi = 1;
  for (int i = 0; i < 200 && hi - lo > 1e-16; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (regularized_incomplete_beta(a, b, mid) < p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

double log_choose(int n, int k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

}  // namespace

double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                           a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) {
    return std::exp(log_front) * beta_continued_fraction(a, b, x) / a;
  }
  return 1 - std::exp(log_front) * beta_continued_fraction(b, a, 1 - x) / b;
}

Interval wilson_interval(int k, int n, double z) {
  if (n <= 0) return {0, 1};
  const double p = static_cast<double>(k) / n;
  const double z2 = z * z;
  const double denom = 1 + z2 / n;
  const double centre = (p + z2 / (2.0 * n)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / denom;
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

Interval clopper_pearson_interval(int k, int n, double alpha) {
  if (n <= 0) return {0, 1};
  Interval r;
  r.low = k == 0 ? 0.0 : beta_quantile(alpha / 2, k, n - k + 1);
  r.high = k == n ? 1.0 : beta_quantile(1 - alpha / 2, k + 1, n - k);
  return r;
}

double fisher_exact_two_sided(int a, int b, int c, int d) {
  const int r1 = a + b, r2 = c + d, c1 = a + c, n = r1 + r2;
  if (n == 0) return 1;
  const double log_denominator = log_choose(n, c1);
  auto log_p = [&](int x) { return log_choose(r1, x) + log_choose(r2, c1 - x) - log_denominator; };
  const double observed = log_p(a);
  // A table counts when it is no more likely than the observed one; the relative tolerance
  // keeps tables of equal probability (ties computed with rounding error) in, as R does.
  const double threshold = observed + std::log1p(1e-7);
  double p = 0;
  for (int x = std::max(0, c1 - r2); x <= std::min(r1, c1); ++x) {
    const double lp = log_p(x);
    if (lp <= threshold) p += std::exp(lp);
  }
  return std::min(1.0, p);
}

SprtVerdict sprt(const std::vector<bool>& first, const std::vector<bool>& second,
                 const SprtOptions& options) {
  SprtVerdict v;
  const double r = options.odds_ratio;
  const double upper = std::log((1 - options.beta) / (options.alpha / 2));
  const double lower = std::log(options.beta / (1 - options.alpha / 2));
  const double toward = std::log(2 * r / (1 + r));  // discordant pair in the test's direction
  const double away = std::log(2 / (1 + r));        // ... against it
  enum class State { kOpen, kH0, kH1 };
  State up = State::kOpen, down = State::kOpen;  // "second worse" test, "second better" test
  const std::size_t pairs = std::min(first.size(), second.size());
  for (std::size_t i = 0; i < pairs && v.decision == SprtDecision::kUndecided; ++i) {
    ++v.pairs;
    if (first[i] == second[i]) continue;
    ++v.discordant;
    const bool second_failed = second[i];
    if (second_failed) ++v.second_worse;
    if (up == State::kOpen) {
      v.llr_up += second_failed ? toward : away;
      if (v.llr_up >= upper) up = State::kH1;
      if (v.llr_up <= lower) up = State::kH0;
    }
    if (down == State::kOpen) {
      v.llr_down += second_failed ? away : toward;
      if (v.llr_down >= upper) down = State::kH1;
      if (v.llr_down <= lower) down = State::kH0;
    }
    if (up == State::kH1 || down == State::kH1) {
      v.decision = SprtDecision::kDifferent;
    } else if (up == State::kH0 && down == State::kH0) {
      v.decision = SprtDecision::kNoDifference;
    }
  }
  return v;
}

}  // namespace tandem::crashrate
