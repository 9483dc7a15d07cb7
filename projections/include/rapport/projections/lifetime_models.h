#pragma once

#include <span>
#include <string>

#include "rapport/base/status.h"

// Customer-base models fitted to the business's own purchase history:
//  - BG/NBD (Fader, Hardie and Lee 2005, "Counting your customers the easy
//    way"): while active a customer buys at rate lambda ~ Gamma(r, alpha);
//    after each repeat purchase they become inactive for good with
//    probability p ~ Beta(a, b);
//  - Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and CLV"; Hardie's note
//    025): a customer's mean order value varies around their own mean, which
//    varies across customers.
// Conventions follow the Python `lifetimes` package so results compare:
// frequency = repeat purchase periods (purchases in one period count once),
// recency = age in periods at the last purchase, age (T) = periods from the
// first purchase to the as-of time.
//
// Pure functions of their inputs: deterministic, thread-safe.
namespace rapport::projections {

struct PurchaseHistory {
  double frequency = 0;  // x
  double recency = 0;    // t_x, 0 <= t_x <= T
  double age = 0;        // T
};

struct BgNbdParameters {
  double r = 0, alpha = 0, a = 0, b = 0;
};

struct GammaGammaParameters {
  double p = 0, q = 0, v = 0;
};

struct FitReport {
  double log_likelihood = 0;  // at the fitted parameters, summed over customers
  int iterations = 0;         // objective evaluations
  size_t customers = 0;
};

// ln 2F1(a, b; c; z), the Gaussian hypergeometric function, for a, b real,
// c > 0 and 0 <= z < 1, where its series has positive sum. Evaluated through
// Euler's transformation 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a,c-b;c;z), whose
// series converges fast when a and b grow with c (as in the BG/NBD, where
// a = r + x, b = b + x, c = a + b + x - 1); NaN when the series fails.
double LogHypergeometric2F1(double a, double b, double c, double z);

// Sum over customers of the BG/NBD log-likelihood (FHL 2005, eq. 6).
double BgNbdLogLikelihood(const BgNbdParameters& params, std::span<const PurchaseHistory> customers);

// Maximum-likelihood parameters: Nelder-Mead on the log-parameters (time
// scaled so the oldest customer's age is 10), restarted from its own optimum
// until a restart no longer improves the likelihood. Deterministic.
// InvalidArgument when there are no customers or a history is inconsistent.
Result<BgNbdParameters> FitBgNbd(std::span<const PurchaseHistory> customers, FitReport* report = nullptr);

// P(alive | x, t_x, T) (FHL 2005, eq. 13). 1 when x = 0: in the model a
// customer can only leave right after a repeat purchase.
double ProbabilityAlive(const BgNbdParameters& params, const PurchaseHistory& history);

// E[Y(t) | x, t_x, T]: purchases expected in the next t periods (FHL 2005, eq. 10).
double ExpectedPurchases(const BgNbdParameters& params, const PurchaseHistory& history, double t);

// A repeat customer for the spend model: x repeat purchase periods with a
// mean value of `mean_value` per period (the first purchase period excluded).
struct RepeatSpend {
  double frequency = 0;   // x > 0
  double mean_value = 0;  // > 0, in major currency units
};

double GammaGammaLogLikelihood(const GammaGammaParameters& params, std::span<const RepeatSpend> customers);

// Maximum-likelihood parameters, as FitBgNbd. InvalidArgument without
// customers, or when a frequency or mean value is not positive.
Result<GammaGammaParameters> FitGammaGamma(std::span<const RepeatSpend> customers, FitReport* report = nullptr);

// E[M | x, m]: the customer's expected value per purchase period, a weighted
// mean of their own mean and the population's (the population mean when
// x = 0). Needs q > 1 (else the population mean is infinite): NaN otherwise.
double ExpectedOrderValue(const GammaGammaParameters& params, double frequency, double mean_value);

// Customer lifetime value as `lifetimes` computes it: over `months` months of
// `periods_per_month` periods, each month's expected purchases times
// `order_value`, discounted by `monthly_discount_rate` per month.
// `if_alive` computes it as though P(alive) were 1.
double LifetimeValue(const BgNbdParameters& params, const PurchaseHistory& history, double order_value, int months,
                     double monthly_discount_rate, double periods_per_month, bool if_alive = false);

}  // namespace rapport::projections
