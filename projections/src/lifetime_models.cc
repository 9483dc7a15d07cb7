#include "rapport/projections/lifetime_models.h"

#include <algorithm>
#include <array>
#include <boost/math/policies/policy.hpp>
#include <boost/math/special_functions/expm1.hpp>
#include <boost/math/special_functions/gamma.hpp>
#include <boost/math/special_functions/hypergeometric_pFq.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"

namespace rapport::projections {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Report failures as NaN rather than exceptions: a query must answer.
using QuietPolicy =
    boost::math::policies::policy<boost::math::policies::evaluation_error<boost::math::policies::errno_on_error>,
                                  boost::math::policies::overflow_error<boost::math::policies::errno_on_error>,
                                  boost::math::policies::underflow_error<boost::math::policies::ignore_error>,
                                  boost::math::policies::domain_error<boost::math::policies::errno_on_error>,
                                  boost::math::policies::pole_error<boost::math::policies::errno_on_error>>;

template <size_t N>
using Point = std::array<double, N>;

// Minimises f by the Nelder-Mead simplex method (the standard coefficients
// 1, 2, 0.5, 0.5), from a simplex of `step` around `start`, until the
// objective's spread over the simplex falls below `tolerance` or after
// `max_evaluations`. Restarts from the best point found until a restart
// improves the objective by less than `tolerance`: a collapsed simplex is the
// method's known failure, and a fresh one around the optimum costs little.
template <size_t N>
Point<N> Minimise(const std::function<double(const Point<N>&)>& f, Point<N> start, int& evaluations,
                  double tolerance = 1e-13, int max_evaluations = 20000) {
  auto objective = [&](const Point<N>& x) {
    ++evaluations;
    double value = f(x);
    return std::isfinite(value) ? value : kInfinity;
  };
  double best = objective(start);
  for (int restart = 0; restart < 20; ++restart) {
    std::array<Point<N>, N + 1> simplex;
    std::array<double, N + 1> values;
    simplex[0] = start;
    values[0] = best;
    for (size_t i = 0; i < N; ++i) {
      simplex[i + 1] = start;
      simplex[i + 1][i] += 0.5;
      values[i + 1] = objective(simplex[i + 1]);
    }
    const int budget = evaluations + max_evaluations;
    while (evaluations < budget) {
      std::array<size_t, N + 1> order;
      for (size_t i = 0; i <= N; ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return values[x] < values[y]; });
      const size_t lo = order[0], hi = order[N], second = order[N - 1];
      if (std::abs(values[hi] - values[lo]) <= tolerance * (1 + std::abs(values[lo]))) break;
      Point<N> centroid{};
      for (size_t i = 0; i <= N; ++i) {
        if (i == hi) continue;
        for (size_t k = 0; k < N; ++k) centroid[k] += simplex[i][k] / N;
      }
      auto along = [&](double t) {
        Point<N> x;
        for (size_t k = 0; k < N; ++k) x[k] = centroid[k] + t * (simplex[hi][k] - centroid[k]);
        return x;
      };
      Point<N> reflected = along(-1);
      double fr = objective(reflected);
      if (fr < values[lo]) {
        Point<N> expanded = along(-2);
        double fe = objective(expanded);
        if (fe < fr) {
          simplex[hi] = expanded, values[hi] = fe;
        } else {
          simplex[hi] = reflected, values[hi] = fr;
        }
        continue;
      }
      if (fr < values[second]) {
        simplex[hi] = reflected, values[hi] = fr;
        continue;
      }
      Point<N> contracted = fr < values[hi] ? along(-0.5) : along(0.5);
      double fc = objective(contracted);
      if (fc < std::min(fr, values[hi])) {
        simplex[hi] = contracted, values[hi] = fc;
        continue;
      }
      for (size_t i = 0; i <= N; ++i) {  // shrink towards the best point
        if (i == lo) continue;
        for (size_t k = 0; k < N; ++k) simplex[i][k] = simplex[lo][k] + 0.5 * (simplex[i][k] - simplex[lo][k]);
        values[i] = objective(simplex[i]);
      }
    }
    size_t lo = static_cast<size_t>(std::min_element(values.begin(), values.end()) - values.begin());
    const bool improved = best - values[lo] > tolerance * (1 + std::abs(values[lo]));
    if (values[lo] < best) best = values[lo], start = simplex[lo];
    if (!improved && restart > 0) break;
  }
  return start;
}

Status CheckHistories(std::span<const PurchaseHistory> customers) {
  if (customers.empty()) return absl::InvalidArgumentError("no customers to fit the BG/NBD model to");
  for (size_t i = 0; i < customers.size(); ++i) {
    const auto& c = customers[i];
    if (!(c.frequency >= 0) || !(c.recency >= 0) || !(c.age >= c.recency) || (c.frequency == 0 && c.recency != 0) ||
        c.frequency != std::floor(c.frequency)) {
      return absl::InvalidArgumentError(absl::StrCat("customer ", i, " has an inconsistent history: frequency ",
                                                     c.frequency, ", recency ", c.recency, ", age ", c.age,
                                                     " (need a whole frequency >= 0, 0 <= recency <= age, "
                                                     "and recency 0 when frequency is 0)"));
    }
  }
  return absl::OkStatus();
}

// Customers condensed into distinct (x, t_x, T) patterns with counts, as
// Fader and Hardie fit the model: a population has far fewer patterns than
// customers, and the terms that depend on x alone are computed once per
// distinct x. Built once per fit; each evaluation then costs O(patterns).
struct Patterns {
  struct Pattern {
    double recency, age, count;
    size_t x;  // index into `frequencies`
  };
  std::vector<double> frequencies;  // distinct, ascending
  std::vector<Pattern> patterns;

  explicit Patterns(std::span<const PurchaseHistory> customers, double time_scale = 1) {
    std::map<std::array<double, 3>, double> counts;
    for (const auto& c : customers) counts[{c.frequency, c.recency * time_scale, c.age * time_scale}] += 1;
    for (const auto& [key, count] : counts) {
      if (frequencies.empty() || frequencies.back() != key[0]) frequencies.push_back(key[0]);
      patterns.push_back({key[1], key[2], count, frequencies.size() - 1});
    }
  }

  double LogLikelihood(const BgNbdParameters& p, std::vector<double>& by_frequency) const {
    const auto [r, alpha, a, b] = p;
    const double shared = r * std::log(alpha) - std::lgamma(r) + std::lgamma(a + b) - std::lgamma(b);
    by_frequency.resize(frequencies.size());
    for (size_t i = 0; i < frequencies.size(); ++i) {
      const double x = frequencies[i];
      by_frequency[i] = std::lgamma(r + x) + std::lgamma(b + x) - std::lgamma(a + b + x);
    }
    double total = 0;
    for (const auto& c : patterns) {
      const double x = frequencies[c.x];
      const double a3 = -(r + x) * std::log(alpha + c.age);
      double mixture = a3;
      if (x > 0) {
        const double a4 = std::log(a) - std::log(b + x - 1) - (r + x) * std::log(alpha + c.recency);
        const double hi = std::max(a3, a4);
        mixture = hi + std::log(std::exp(a3 - hi) + std::exp(a4 - hi));
      }
      total += c.count * (shared + by_frequency[c.x] + mixture);
    }
    return total;
  }
};

double SpendLogLikelihood(const GammaGammaParameters& params, std::span<const RepeatSpend> customers) {
  const auto [p, q, v] = params;
  double total = 0;
  for (const auto& c : customers) {
    const double x = c.frequency, m = c.mean_value;
    total += std::lgamma(p * x + q) - std::lgamma(p * x) - std::lgamma(q) + q * std::log(v) +
             (p * x - 1) * std::log(m) + p * x * std::log(x) - (p * x + q) * std::log(x * m + v);
  }
  return total;
}

// The numerator of E[Y(t) | x, t_x, T]: purchases expected if the customer is alive.
double ExpectedPurchasesIfAlive(const BgNbdParameters& params, const PurchaseHistory& h, double t) {
  const auto [r, alpha, a, b] = params;
  const double x = h.frequency, age = h.age;
  if (t <= 0) return 0;
  const double z = t / (alpha + age + t);
  const double log_hyp = LogHypergeometric2F1(r + x, b + x, a + b + x - 1, z);
  // 1 - 2F1(...) * ((alpha + T) / (alpha + T + t))^(r + x), kept accurate when the product is near 1.
  const double second = -std::expm1(log_hyp + (r + x) * std::log((alpha + age) / (alpha + age + t)));
  return (a + b + x - 1) / (a - 1) * second;
}

}  // namespace

double LogHypergeometric2F1(double a, double b, double c, double z) {
  if (!(c > 0) || !(z >= 0) || !(z < 1)) return kNaN;
  if (z == 0) return 0;
  const double ta = c - a, tb = c - b;
  const double series = boost::math::hypergeometric_pFq({ta, tb}, {c}, z, static_cast<double*>(nullptr), QuietPolicy());
  if (series > 0 && std::isfinite(series)) return (c - a - b) * std::log1p(-z) + std::log(series);
  // The transformed series can cancel to nothing; the direct one then may still serve.
  const double direct = boost::math::hypergeometric_pFq({a, b}, {c}, z, static_cast<double*>(nullptr), QuietPolicy());
  if (direct > 0 && std::isfinite(direct)) return std::log(direct);
  return kNaN;
}

double BgNbdLogLikelihood(const BgNbdParameters& params, std::span<const PurchaseHistory> customers) {
  std::vector<double> scratch;
  return Patterns(customers).LogLikelihood(params, scratch);
}

Result<BgNbdParameters> FitBgNbd(std::span<const PurchaseHistory> customers, FitReport* report) {
  if (Status checked = CheckHistories(customers); !checked.ok()) return checked;
  // Scale time so the oldest customer is 10 periods old, as lifetimes does:
  // alpha then starts near the right magnitude. Scaling time by s multiplies
  // alpha by s and shifts the log-likelihood by a constant, so the optimum is
  // the same.
  double oldest = 0;
  for (const auto& c : customers) oldest = std::max(oldest, c.age);
  const double scale = oldest > 0 ? 10 / oldest : 1;
  const Patterns scaled(customers, scale);
  std::vector<double> scratch;
  const double n = static_cast<double>(customers.size());
  auto objective = [&](const Point<4>& log_params) {
    for (double v : log_params) {
      if (std::abs(v) > 30) return kInfinity;  // exp overflows long before this means anything
    }
    BgNbdParameters p{std::exp(log_params[0]), std::exp(log_params[1]), std::exp(log_params[2]),
                      std::exp(log_params[3])};
    return -scaled.LogLikelihood(p, scratch) / n;
  };
  int evaluations = 0;
  Point<4> best = Minimise<4>(objective, {0.0, 0.0, 0.0, 0.0}, evaluations);
  if (std::any_of(best.begin(), best.end(), [](double v) { return std::abs(v) > 25; })) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the BG/NBD likelihood has no finite maximum on these ", customers.size(),
        " customers (a parameter ran off to 0 or infinity): too few customers or too little repeat buying to fit"));
  }
  BgNbdParameters fitted{std::exp(best[0]), std::exp(best[1]) / scale, std::exp(best[2]), std::exp(best[3])};
  const double log_likelihood = BgNbdLogLikelihood(fitted, customers);
  if (!std::isfinite(log_likelihood)) {
    return absl::InvalidArgumentError("the BG/NBD fit did not converge to a finite likelihood");
  }
  if (report) *report = {log_likelihood, evaluations, customers.size()};
  return fitted;
}

double ProbabilityAlive(const BgNbdParameters& params, const PurchaseHistory& h) {
  if (h.frequency == 0) return 1;
  const auto [r, alpha, a, b] = params;
  const double x = h.frequency;
  const double log_odds_gone = std::log(a / (b + x - 1)) + (r + x) * std::log((alpha + h.age) / (alpha + h.recency));
  return 1 / (1 + std::exp(log_odds_gone));
}

double ExpectedPurchases(const BgNbdParameters& params, const PurchaseHistory& h, double t) {
  return ProbabilityAlive(params, h) * ExpectedPurchasesIfAlive(params, h, t);
}

double GammaGammaLogLikelihood(const GammaGammaParameters& params, std::span<const RepeatSpend> customers) {
  return SpendLogLikelihood(params, customers);
}

Result<GammaGammaParameters> FitGammaGamma(std::span<const RepeatSpend> customers, FitReport* report) {
  if (customers.empty()) return absl::InvalidArgumentError("no repeat customers to fit the Gamma-Gamma model to");
  for (size_t i = 0; i < customers.size(); ++i) {
    if (!(customers[i].frequency > 0) || !(customers[i].mean_value > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("repeat customer ", i, " has frequency ", customers[i].frequency,
                                                     " and mean value ", customers[i].mean_value,
                                                     "; both must be positive"));
    }
  }
  const double n = static_cast<double>(customers.size());
  auto objective = [&](const Point<3>& log_params) {
    for (double v : log_params) {
      if (std::abs(v) > 30) return kInfinity;
    }
    GammaGammaParameters p{std::exp(log_params[0]), std::exp(log_params[1]), std::exp(log_params[2])};
    return -SpendLogLikelihood(p, customers) / n;
  };
  int evaluations = 0;
  Point<3> best = Minimise<3>(objective, {0.0, 0.0, 0.0}, evaluations);
  if (std::any_of(best.begin(), best.end(), [](double v) { return std::abs(v) > 25; })) {
    return absl::FailedPreconditionError(
        absl::StrCat("the Gamma-Gamma likelihood has no finite maximum on these ", customers.size(), " customers"));
  }
  GammaGammaParameters fitted{std::exp(best[0]), std::exp(best[1]), std::exp(best[2])};
  const double log_likelihood = SpendLogLikelihood(fitted, customers);
  if (!std::isfinite(log_likelihood)) {
    return absl::InvalidArgumentError("the Gamma-Gamma fit did not converge to a finite likelihood");
  }
  if (report) *report = {log_likelihood, evaluations, customers.size()};
  return fitted;
}

double ExpectedOrderValue(const GammaGammaParameters& params, double frequency, double mean_value) {
  const auto [p, q, v] = params;
  if (!(q > 1)) return kNaN;
  const double individual_weight = p * frequency / (p * frequency + q - 1);
  const double population_mean = v * p / (q - 1);
  return (1 - individual_weight) * population_mean + individual_weight * mean_value;
}

double LifetimeValue(const BgNbdParameters& params, const PurchaseHistory& history, double order_value, int months,
                     double monthly_discount_rate, double periods_per_month, bool if_alive) {
  auto cumulative = [&](double t) {
    return if_alive ? ExpectedPurchasesIfAlive(params, history, t) : ExpectedPurchases(params, history, t);
  };
  double value = 0;
  double before = 0;
  for (int month = 1; month <= months; ++month) {
    const double through = cumulative(month * periods_per_month);
    value += order_value * (through - before) / std::pow(1 + monthly_discount_rate, month);
    before = through;
  }
  return value;
}

}  // namespace rapport::projections
