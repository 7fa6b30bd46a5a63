// stats.h — the statistics of crashrate: binomial intervals, Fisher's exact test, and the SPRT.
// Pure functions of their arguments; thread-safe.
#pragma once

#include <vector>

#include "crashrate/options.h"
#include "crashrate/results.h"

namespace tandem::crashrate {

struct Interval {
  double low = 0, high = 1;
};

// wilson_interval(k, n, z): Wilson's score interval for k successes in n trials (n > 0);
// z = 1.959963984540054 gives 95%. n == 0 gives [0, 1].
[[nodiscard]] Interval wilson_interval(int k, int n, double z = 1.959963984540054);

// clopper_pearson_interval(k, n, alpha): the exact (Clopper-Pearson) 1-alpha interval, from the
// quantiles of the beta distribution (inverse of the regularized incomplete beta function).
[[nodiscard]] Interval clopper_pearson_interval(int k, int n, double alpha = 0.05);

// regularized_incomplete_beta(a, b, x): I_x(a, b) for a, b > 0 and 0 <= x <= 1, by Lentz's
// continued fraction; absolute error below 1e-13.
[[nodiscard]] double regularized_incomplete_beta(double a, double b, double x);

// fisher_exact_two_sided(a, b, c, d): the two-sided p-value of Fisher's exact test for the
// table [[a, b], [c, d]]: the probability, given the margins, of every table no more likely
// than the observed one (relative tolerance 1e-7, as R's fisher.test).
[[nodiscard]] double fisher_exact_two_sided(int a, int b, int c, int d);

// sprt(first, second, options): Wald's SPRT on the pairs (first[i], second[i]) of failure flags
// (true = the run failed), pairs taken in order while both exist. See SprtOptions.
[[nodiscard]] SprtVerdict sprt(const std::vector<bool>& first, const std::vector<bool>& second,
                               const SprtOptions& options);

}  // namespace tandem::crashrate
