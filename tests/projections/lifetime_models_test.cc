#include "rapport/projections/lifetime_models.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

namespace rapport::projections {
namespace {

// FHL 2005's CDNOW fit (weeks): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426.
constexpr BgNbdParameters kCdnow{0.243, 4.414, 0.793, 2.426};

TEST(Hypergeometric, MatchesClosedForms) {
  for (double z : {0.0, 1e-6, 0.3, 0.5, 0.9, 0.99, 0.999}) {
    // 2F1(1, 1; 2; z) = -ln(1 - z) / z
    double expected = z == 0 ? 1.0 : -std::log1p(-z) / z;
    EXPECT_NEAR(LogHypergeometric2F1(1, 1, 2, z), std::log(expected), 1e-12) << "z=" << z;
    // 2F1(a, b; b; z) = (1 - z)^-a
    EXPECT_NEAR(LogHypergeometric2F1(2.5, 3.7, 3.7, z), -2.5 * std::log1p(-z), 1e-11) << "z=" << z;
    // 2F1(1/2, 1/2; 3/2; s^2) = asin(s) / s
    double s = std::sqrt(z);
    double arcsine = s == 0 ? 1.0 : std::asin(s) / s;
    EXPECT_NEAR(LogHypergeometric2F1(0.5, 0.5, 1.5, z), std::log(arcsine), 1e-12) << "z=" << z;
  }
}

TEST(Hypergeometric, MatchesHighPrecisionValuesAcrossTheBgNbdRange) {
  // ln 2F1(a, b; c; z) from mpmath 1.3 at 40 digits. The cases have the BG/NBD's
  // shape (a = r + x, b = b + x, c = a + b + x - 1) from x = 0 to x = 200 and z up to 0.999.
  struct Case {
    double a, b, c, z, log_value;
  };
  const Case cases[] = {
      {0.5, 2.5, 2.3, 0.3, 0.19555206698568018767},      {3.5, 5.5, 5.3, 0.9, 8.4410136044930880635},
      {20.5, 22.5, 22.3, 0.95, 61.995418389147848057},   {200.5, 202.5, 202.3, 0.95, 601.24176635484142516},
      {0.243, 4.414, 3.45, 0.5, 0.23384501068306813933}, {1.243, 5.414, 4.45, 0.995, 10.468123729597541654},
      {60.2, 61.7, 61.1, 0.999, 419.98259695500053179},
  };
  for (const auto& c : cases) {
    EXPECT_NEAR(LogHypergeometric2F1(c.a, c.b, c.c, c.z), c.log_value, 1e-10 * std::abs(c.log_value))
        << c.a << " " << c.b << " " << c.c << " " << c.z;
  }
}

TEST(Hypergeometric, OutsideItsDomainIsNaN) {
  EXPECT_TRUE(std::isnan(LogHypergeometric2F1(1, 1, 2, 1.0)));
  EXPECT_TRUE(std::isnan(LogHypergeometric2F1(1, 1, 2, -0.1)));
  EXPECT_TRUE(std::isnan(LogHypergeometric2F1(1, 1, 0, 0.5)));
}

TEST(BgNbd, ReproducesThePapersWorkedExample) {
  // FHL 2005, section 5: a CDNOW customer with x = 2, t_x = 30.43, T = 38.86
  // weeks is expected to make 1.226 purchases in the next 39 weeks.
  PurchaseHistory h{2, 30.43, 38.86};
  EXPECT_NEAR(ExpectedPurchases(kCdnow, h, 39), 1.226, 5e-4);
  EXPECT_NEAR(ExpectedPurchases(kCdnow, h, 39), 1.2260281747671318, 1e-9);  // lifetimes 0.11.3
  // P(alive) by hand: 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)).
  double odds = 0.793 / (2.426 + 1) * std::pow((4.414 + 38.86) / (4.414 + 30.43), 2.243);
  EXPECT_NEAR(ProbabilityAlive(kCdnow, h), 1 / (1 + odds), 1e-14);
  EXPECT_NEAR(ProbabilityAlive(kCdnow, h), 0.72657857, 1e-8);  // lifetimes 0.11.3
}

TEST(BgNbd, ACustomerWithoutRepeatPurchaseIsAliveByConstruction) {
  PurchaseHistory h{0, 0, 38.86};
  EXPECT_EQ(ProbabilityAlive(kCdnow, h), 1.0);
  // Their expected purchases still fall with age: that is where their risk shows.
  EXPECT_NEAR(ExpectedPurchases(kCdnow, h, 39), 0.19509805201125396, 1e-9);  // lifetimes 0.11.3
  EXPECT_LT(ExpectedPurchases(kCdnow, {0, 0, 80}, 39), ExpectedPurchases(kCdnow, h, 39));
}

TEST(BgNbd, AFrequentBuyerNeedsTheHypergeometricFarOutOfItsEasyRange) {
  EXPECT_NEAR(ExpectedPurchases(kCdnow, {40, 37, 38.86}, 52), 31.38594910341364, 1e-7);  // lifetimes 0.11.3
}

TEST(BgNbd, ExpectedPurchasesGrowWithTheHorizonAndPAliveFallsWithSilence) {
  PurchaseHistory h{3, 20, 30};
  double previous = 0;
  for (double t : {1.0, 5.0, 30.0, 90.0, 365.0}) {
    double expected = ExpectedPurchases(kCdnow, h, t);
    EXPECT_GT(expected, previous);
    previous = expected;
  }
  EXPECT_GT(ProbabilityAlive(kCdnow, {3, 29, 30}), ProbabilityAlive(kCdnow, {3, 20, 30}));
  EXPECT_GT(ProbabilityAlive(kCdnow, {3, 20, 30}), ProbabilityAlive(kCdnow, {3, 20, 60}));
}

TEST(BgNbd, LogLikelihoodIsTheSumOfTheCustomersTerms) {
  // One customer by hand, FHL 2005 eq. 6.
  const auto [r, alpha, a, b] = kCdnow;
  double x = 2, tx = 30.43, T = 38.86;
  double by_hand = std::lgamma(r + x) - std::lgamma(r) + r * std::log(alpha) + std::lgamma(a + b) + std::lgamma(b + x) -
                   std::lgamma(b) - std::lgamma(a + b + x) +
                   std::log(std::pow(alpha + T, -(r + x)) + a / (b + x - 1) * std::pow(alpha + tx, -(r + x)));
  std::vector<PurchaseHistory> one{{x, tx, T}};
  EXPECT_NEAR(BgNbdLogLikelihood(kCdnow, one), by_hand, 1e-12);
  std::vector<PurchaseHistory> two{{x, tx, T}, {0, 0, T}};
  double zero = std::lgamma(a + b) - std::lgamma(b) + std::lgamma(b) - std::lgamma(a + b) + r * std::log(alpha) -
                r * std::log(alpha + T);
  EXPECT_NEAR(BgNbdLogLikelihood(kCdnow, two), by_hand + zero, 1e-12);
}

// Draws customers from the BG/NBD process in continuous time, each observed
// for a time uniform on (0, horizon].
std::vector<PurchaseHistory> DrawCustomers(const BgNbdParameters& truth, size_t n, double horizon, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::gamma_distribution<double> rate(truth.r, 1 / truth.alpha);
  std::gamma_distribution<double> ga(truth.a, 1), gb(truth.b, 1);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<PurchaseHistory> customers;
  for (size_t i = 0; i < n; ++i) {
    const double lambda = rate(random);
    const double u = ga(random), v = gb(random);
    const double p = u / (u + v);
    const double age = horizon * (1 - uniform(random));
    double t = 0, last = 0, x = 0;
    while (true) {
      t += -std::log(1 - uniform(random)) / lambda;
      if (t > age) break;
      x += 1, last = t;
      if (uniform(random) < p) break;  // leaves after this repeat purchase
    }
    customers.push_back({x, last, age});
  }
  return customers;
}

TEST(BgNbd, RecoversTheGeneratingParametersWithinSamplingError) {
  const BgNbdParameters truth{0.5, 20.0, 0.8, 2.5};  // the simulator's population, in days
  const auto customers = DrawCustomers(truth, 20000, 365, 7);
  FitReport report;
  auto fitted = FitBgNbd(customers, &report);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  EXPECT_EQ(report.customers, customers.size());
  // The maximum: no better than the fit at the truth, or nearby.
  EXPECT_GE(report.log_likelihood, BgNbdLogLikelihood(truth, customers));
  for (int k = 0; k < 4; ++k) {
    BgNbdParameters nudged = *fitted;
    std::array<double*, 4> field{&nudged.r, &nudged.alpha, &nudged.a, &nudged.b};
    *field[k] *= 1.001;
    EXPECT_GE(report.log_likelihood, BgNbdLogLikelihood(nudged, customers)) << "parameter " << k;
  }

  // Standard errors of the log-parameters from the observed information
  // (the numerical Hessian of the log-likelihood at the fit).
  const std::array<double, 4> at{std::log(fitted->r), std::log(fitted->alpha), std::log(fitted->a),
                                 std::log(fitted->b)};
  auto ll = [&](std::array<double, 4> x) {
    return BgNbdLogLikelihood({std::exp(x[0]), std::exp(x[1]), std::exp(x[2]), std::exp(x[3])}, customers);
  };
  const double h = 1e-3;
  std::array<std::array<double, 4>, 4> info{};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      auto at_ = [&](double di, double dj) {
        auto x = at;
        x[i] += di, x[j] += dj;
        return ll(x);
      };
      info[i][j] = -(at_(h, h) - at_(h, -h) - at_(-h, h) + at_(-h, -h)) / (4 * h * h);
    }
  }
  // Invert the 4x4 information matrix (Gauss-Jordan) for the covariance.
  std::array<std::array<double, 8>, 4> m{};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) m[i][j] = info[i][j];
    m[i][4 + i] = 1;
  }
  for (int c = 0; c < 4; ++c) {
    int pivot = c;
    for (int r = c + 1; r < 4; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    std::swap(m[c], m[pivot]);
    for (int k = 7; k >= c; --k) m[c][k] /= m[c][c];
    for (int r = 0; r < 4; ++r) {
      if (r == c) continue;
      for (int k = 7; k >= c; --k) m[r][k] -= m[r][c] * m[c][k];
    }
  }
  const std::array<double, 4> truth_log{std::log(truth.r), std::log(truth.alpha), std::log(truth.a), std::log(truth.b)};
  const char* names[] = {"r", "alpha", "a", "b"};
  for (int i = 0; i < 4; ++i) {
    const double se = std::sqrt(m[i][4 + i]);
    ASSERT_GT(se, 0) << names[i];
    EXPECT_LT(std::abs(at[i] - truth_log[i]), 3 * se)
        << names[i] << ": fitted " << std::exp(at[i]) << ", truth " << std::exp(truth_log[i]) << ", standard error "
        << se << " on the log scale";
    EXPECT_LT(se, 0.25) << names[i] << " is barely identified by 20,000 customers";
  }
}

TEST(BgNbd, FitIsDeterministic) {
  const auto customers = DrawCustomers({0.3, 5.0, 1.2, 4.0}, 3000, 100, 11);
  auto first = FitBgNbd(customers);
  auto second = FitBgNbd(customers);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->r, second->r);
  EXPECT_EQ(first->alpha, second->alpha);
  EXPECT_EQ(first->a, second->a);
  EXPECT_EQ(first->b, second->b);
}

TEST(BgNbd, RejectsInconsistentHistoriesWithTheCustomerNamed) {
  std::vector<PurchaseHistory> customers{{1, 2, 3}, {2, 5, 4}};
  auto fitted = FitBgNbd(customers);
  ASSERT_FALSE(fitted.ok());
  EXPECT_NE(fitted.status().message().find("customer 1"), std::string::npos) << fitted.status();
  EXPECT_FALSE(FitBgNbd({}).ok());
}

TEST(BgNbd, DataThatCannotIdentifyTheModelAreAnErrorNotNonsense) {
  // Nobody ever bought again: the likelihood keeps rising as r runs to 0.
  std::vector<PurchaseHistory> one_time_buyers;
  for (int i = 1; i <= 50; ++i) one_time_buyers.push_back({0, 0, static_cast<double>(i)});
  auto fitted = FitBgNbd(one_time_buyers);
  ASSERT_FALSE(fitted.ok());
  EXPECT_EQ(fitted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(fitted.status().message().find("no finite maximum"), std::string::npos) << fitted.status();
}

TEST(GammaGamma, ExpectedOrderValueIsTheCredibilityWeightedMean) {
  // Hardie's note 025 CDNOW fit: p = 6.25, q = 3.74, v = 15.44.
  GammaGammaParameters cdnow{6.25, 3.74, 15.44};
  EXPECT_NEAR(ExpectedOrderValue(cdnow, 2, 35.0), 35.039370078740156, 1e-12);  // lifetimes 0.11.3
  EXPECT_NEAR(ExpectedOrderValue(cdnow, 0, 0), 15.44 * 6.25 / 2.74, 1e-12);    // the population mean
  EXPECT_TRUE(std::isnan(ExpectedOrderValue({1, 0.9, 1}, 1, 10)));
}

TEST(GammaGamma, RecoversTheGeneratingParameters) {
  // z ~ Gamma(p, nu) per order, nu ~ Gamma(q, v): the model's own process.
  const GammaGammaParameters truth{6.0, 4.0, 15.0};
  std::mt19937_64 random(3);
  std::gamma_distribution<double> nu_of(truth.q, 1 / truth.v);
  std::uniform_int_distribution<int> orders(1, 12);
  std::vector<RepeatSpend> customers;
  for (int i = 0; i < 20000; ++i) {
    const double nu = nu_of(random);
    std::gamma_distribution<double> value(truth.p, 1 / nu);
    const int x = orders(random);
    double sum = 0;
    for (int k = 0; k < x; ++k) sum += value(random);
    customers.push_back({static_cast<double>(x), sum / x});
  }
  FitReport report;
  auto fitted = FitGammaGamma(customers, &report);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  EXPECT_GE(report.log_likelihood, GammaGammaLogLikelihood(truth, customers));
  EXPECT_NEAR(fitted->p, truth.p, 0.1 * truth.p);
  EXPECT_NEAR(fitted->q, truth.q, 0.1 * truth.q);
  EXPECT_NEAR(fitted->v, truth.v, 0.15 * truth.v);
  // The population mean order value p v / (q - 1) is identified far better than each parameter.
  EXPECT_NEAR(fitted->p * fitted->v / (fitted->q - 1), truth.p * truth.v / (truth.q - 1), 0.02 * 30);
}

TEST(GammaGamma, RejectsNonPositiveSpend) {
  std::vector<RepeatSpend> customers{{1, 10}, {2, 0}};
  auto fitted = FitGammaGamma(customers);
  ASSERT_FALSE(fitted.ok());
  EXPECT_NE(fitted.status().message().find("repeat customer 1"), std::string::npos);
}

TEST(LifetimeValue, MatchesTheReferenceImplementation) {
  // lifetimes 0.11.3: GammaGammaFitter(p=6.25, q=3.74, v=15.44).customer_lifetime_value(
  //   BG/NBD CDNOW, x=2, t_x=30.43, T=38.86, m=35, time=12, discount_rate=0.01, freq='W').
  PurchaseHistory h{2, 30.43, 38.86};
  double order_value = ExpectedOrderValue({6.25, 3.74, 15.44}, 2, 35.0);
  EXPECT_NEAR(LifetimeValue(kCdnow, h, order_value, 12, 0.01, 4.345), 51.55554038196225, 1e-8);
  // As though alive: larger by the factor 1 / P(alive).
  EXPECT_NEAR(LifetimeValue(kCdnow, h, order_value, 12, 0.01, 4.345, true),
              51.55554038196225 / ProbabilityAlive(kCdnow, h), 1e-8);
  EXPECT_EQ(LifetimeValue(kCdnow, h, order_value, 0, 0.01, 4.345), 0);
}

}  // namespace
}  // namespace rapport::projections
