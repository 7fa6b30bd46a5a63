// stats_test.cpp — intervals, Fisher's exact test and the SPRT against reference values.
//
// Reference values were computed offline with /usr/bin/python3 (scipy is not installed):
//  - Wilson: the closed form in mpmath at 50 digits;
//  - Clopper-Pearson: bisection (200 steps) on mpmath.betainc(..., regularized=True) at 50 digits,
//    an implementation independent of the continued fraction under test;
//  - Fisher: exact rational arithmetic (fractions.Fraction, math.comb), summing the tables no more
//    likely than the observed one (tolerance 1e-7, as R's fisher.test). Two are also published:
//    the tea-tasting table [[3,1],[1,3]] gives 17/35, and Wikipedia's [[1,9],[11,3]] 0.002759.
#include <gtest/gtest.h>

#include "crashrate/stats.h"

namespace cr = tandem::crashrate;

namespace {

struct IntervalCase {
  int k, n;
  double low, high;
};

}  // namespace

TEST(Stats, WilsonIntervalMatchesTheReference) {
  const IntervalCase cases[] = {
      {2, 100, 0.0055019675501623488, 0.0700117907285439},
      {60, 100, 0.50200258679106177, 0.69059871356754109},
      {0, 10, 0.0, 0.2775327998628892},
      {10, 10, 0.7224672001371108, 1.0},
      {7, 31, 0.11395135561262495, 0.39812418383342057},
      {1, 1000, 0.00017654637062607804, 0.0056425585979579349},
  };
  for (const auto& c : cases) {
    const auto ci = cr::wilson_interval(c.k, c.n);
    EXPECT_NEAR(ci.low, c.low, 1e-12) << c.k << "/" << c.n;
    EXPECT_NEAR(ci.high, c.high, 1e-12) << c.k << "/" << c.n;
  }
}

TEST(Stats, ClopperPearsonIntervalMatchesTheReference) {
  const IntervalCase cases[] = {
      {2, 100, 0.0024313368239425423, 0.07038393247107013},
      {60, 100, 0.49720915042233482, 0.6967052312971226},
      {0, 10, 0.0, 0.30849710781876082},
      {10, 10, 0.69150289218123918, 1.0},
      {7, 31, 0.095942168345751114, 0.41096386613867331},
      {1, 1000, 2.5317487491294043e-5, 0.0055589242798266729},
  };
  for (const auto& c : cases) {
    const auto ci = cr::clopper_pearson_interval(c.k, c.n);
    EXPECT_NEAR(ci.low, c.low, 1e-10) << c.k << "/" << c.n;
    EXPECT_NEAR(ci.high, c.high, 1e-10) << c.k << "/" << c.n;
  }
}

TEST(Stats, ClopperPearsonIntervalsHoldTheEstimateAndNarrowWithMoreRuns) {
  for (int n : {10, 100, 1000}) {
    const auto ci = cr::clopper_pearson_interval(n / 5, n);
    EXPECT_LT(ci.low, 0.2);
    EXPECT_GT(ci.high, 0.2);
  }
  EXPECT_LT(cr::clopper_pearson_interval(200, 1000).high - cr::clopper_pearson_interval(200, 1000).low,
            cr::clopper_pearson_interval(20, 100).high - cr::clopper_pearson_interval(20, 100).low);
}

TEST(Stats, RegularizedIncompleteBetaMatchesTheReference) {
  EXPECT_NEAR(cr::regularized_incomplete_beta(2, 5, 0.3), 0.579825, 1e-13);
  EXPECT_NEAR(cr::regularized_incomplete_beta(10, 10, 0.5), 0.5, 1e-13);
  EXPECT_NEAR(cr::regularized_incomplete_beta(1, 100, 0.01), 0.6339676587267705, 1e-13);
  EXPECT_NEAR(cr::regularized_incomplete_beta(50, 3, 0.9), 0.096633285137252209, 1e-13);
  EXPECT_EQ(cr::regularized_incomplete_beta(3, 4, 0), 0);
  EXPECT_EQ(cr::regularized_incomplete_beta(3, 4, 1), 1);
}

TEST(Stats, FisherExactTestMatchesTheReference) {
  EXPECT_NEAR(cr::fisher_exact_two_sided(3, 1, 1, 3), 17.0 / 35.0, 1e-12);
  EXPECT_NEAR(cr::fisher_exact_two_sided(1, 9, 11, 3), 41.0 / 14858.0, 1e-12);
  EXPECT_NEAR(cr::fisher_exact_two_sided(5, 95, 9, 91), 0.40676385540776966, 1e-10);
  EXPECT_NEAR(cr::fisher_exact_two_sided(12, 88, 5, 95), 0.12617886126369046, 1e-10);
  EXPECT_NEAR(cr::fisher_exact_two_sided(0, 100, 0, 100), 1.0, 1e-12);
  // The seed's numbers: 2% against 60% in 100 runs each.
  const double p = cr::fisher_exact_two_sided(2, 98, 60, 40);
  EXPECT_NEAR(p / 3.806667610193888e-21, 1.0, 1e-6);
  EXPECT_DOUBLE_EQ(p, cr::fisher_exact_two_sided(60, 40, 2, 98));
}

TEST(Stats, SprtDecidesQuicklyOnAClearDifference) {
  std::vector<bool> a(200, false), b(200, true);  // 0% against 100%
  const auto v = cr::sprt(a, b, {});
  EXPECT_EQ(v.decision, cr::SprtDecision::kDifferent);
  // Each discordant pair adds log(2*3/4) = 0.405 toward a bound of log(0.9/0.025) = 3.58.
  EXPECT_EQ(v.pairs, 9);
  EXPECT_EQ(v.second_worse, 9);
}

TEST(Stats, SprtAcceptsNoDifferenceWhenDiscordantPairsBalance) {
  std::vector<bool> a, b;
  for (int i = 0; i < 400; ++i) {
    a.push_back(i % 2 == 0);
    b.push_back(i % 2 == 1);
  }
  const auto v = cr::sprt(a, b, {});
  EXPECT_EQ(v.decision, cr::SprtDecision::kNoDifference);
}

TEST(Stats, SprtStaysUndecidedWithoutDiscordantPairs) {
  std::vector<bool> a(100, false), b(100, false);
  const auto v = cr::sprt(a, b, {});
  EXPECT_EQ(v.decision, cr::SprtDecision::kUndecided);
  EXPECT_EQ(v.pairs, 100);
  EXPECT_EQ(v.discordant, 0);
}
