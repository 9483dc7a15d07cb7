#include "rapport/simulator/simulator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "rapport/events/codec.h"
#include "rapport/events/event_type.h"
#include "rapport/events/validation.h"
#include "rapport/simulator/random.h"

namespace rapport::simulator {
namespace {

absl::Time RecordedAt(const v1::Envelope& e) {
  return absl::FromUnixSeconds(e.recorded_at().seconds()) + absl::Nanoseconds(e.recorded_at().nanos());
}
absl::Time OccurredAt(const v1::Envelope& e) {
  return absl::FromUnixSeconds(e.occurred_at().seconds()) + absl::Nanoseconds(e.occurred_at().nanos());
}

SimulationOptions Options(uint64_t customers, int days, uint64_t seed, double invalid_rate = 0) {
  SimulationOptions options;
  options.customers = customers;
  options.days = days;
  options.seed = seed;
  options.invalid_rate = invalid_rate;
  return options;
}

std::vector<std::string> Stream(const SimulationOptions& options) {
  std::vector<std::string> lines;
  Simulator simulator(options);
  SimulatedRecord record;
  while (simulator.Next(record))
    lines.push_back(record.valid ? events::EventToJson(record.event) : record.invalid_json);
  return lines;
}

TEST(Simulator, SameSeedSameStreamOtherSeedOtherStream) {
  SimulationOptions options = Options(300, 90, 42, 0.02);
  auto first = Stream(options);
  auto second = Stream(options);
  ASSERT_GT(first.size(), 3000u);
  EXPECT_EQ(first, second);
  options.seed = 43;
  EXPECT_NE(Stream(options), first);
}

TEST(Simulator, EveryValidEventPassesValidationAndTimeNeverGoesBack) {
  Simulator simulator(Options(2000, 365, 3));
  SimulatedRecord record;
  std::map<std::string, absl::Time> last_per_customer;
  std::set<std::string> ids;
  absl::Time last = absl::InfinitePast();
  uint64_t count = 0;
  std::map<std::string, uint64_t> types;
  while (simulator.Next(record)) {
    ASSERT_TRUE(record.valid);
    const v1::Envelope& e = record.event;
    auto violations = events::Validate(e, {.reference_time = RecordedAt(e)});
    ASSERT_TRUE(violations.empty()) << violations.front().ToString() << "\n" << events::EventToJson(e);
    absl::Time at = OccurredAt(e);
    EXPECT_EQ(at, record.time);
    ASSERT_GE(at, last) << "the stream is interleaved by time";
    last = at;
    auto [it, inserted] = last_per_customer.emplace(e.customer_id(), at);
    if (!inserted) {
      ASSERT_GE(at, it->second) << e.customer_id();
      it->second = at;
    }
    EXPECT_TRUE(ids.insert(e.event_id()).second) << "duplicate event id " << e.event_id();
    ++types[std::string(events::EventTypeName(e))];
    ++count;
  }
  EXPECT_EQ(simulator.records(), count);
  EXPECT_EQ(last_per_customer.size(), 2000u);
  EXPECT_LT(last, simulator.end());
  EXPECT_EQ(types.size(), events::EventTypeNames().size()) << "every event type occurs";
  EXPECT_EQ(types["customer_registered"], 2000u);
}

TEST(Simulator, NearZeroPurchaseRatesNeverGiveTimesOutsideThePeriod) {
  // With r this small, most customers draw a purchase rate near zero, whose
  // waits once overflowed into times before the period (found by the benchmark).
  SimulationOptions options = Options(3000, 365, 8);
  options.model.r = 0.02;
  Simulator simulator(options);
  SimulatedRecord record;
  const absl::Time start = options.start;
  while (simulator.Next(record)) {
    ASSERT_GE(record.time, start);
    ASSERT_LT(record.time, simulator.end());
    auto violations = events::Validate(record.event, {.reference_time = RecordedAt(record.event)});
    ASSERT_TRUE(violations.empty()) << violations.front().ToString();
  }
}

TEST(Simulator, InvalidRecordsComeAtTheRequestedRateAndAreRejectedAsExpected) {
  Simulator simulator(Options(500, 120, 5, 0.1));
  SimulatedRecord record;
  uint64_t total = 0;
  std::map<InvalidKind, uint64_t> kinds;
  while (simulator.Next(record)) {
    ++total;
    if (record.valid) continue;
    ++kinds[record.invalid_kind];
    // The JSON form, as `rapport publish` sees it.
    v1::Envelope parsed;
    auto parse_error = events::ParseEventJson(record.invalid_json, parsed);
    // The binary form, as a consumer sees it.
    v1::Envelope decoded;
    auto decode_error = events::DecodeEvent(record.invalid_value, decoded);
    events::Violations violations;
    if (!decode_error) violations = events::Validate(decoded, {.reference_time = RecordedAt(decoded)});
    switch (record.invalid_kind) {
      case InvalidKind::kGarbageBytes:
        ASSERT_TRUE(parse_error.has_value());
        EXPECT_EQ(parse_error->ToString().rfind("invalid JSON: ", 0), 0u) << parse_error->ToString();
        EXPECT_TRUE(decode_error.has_value());
        break;
      case InvalidKind::kWrongFieldType:
        ASSERT_TRUE(parse_error.has_value());
        EXPECT_EQ(parse_error->ToString(), "review_submitted.rating: expected an integer, got \"five\"");
        ASSERT_FALSE(decode_error.has_value());
        ASSERT_EQ(violations.size(), 1u);
        EXPECT_EQ(violations[0].ToString(), "review_submitted.rating: must be from 1 to 5, got 0");
        break;
      case InvalidKind::kRatingOutOfRange: {
        ASSERT_FALSE(parse_error.has_value());
        auto json_violations = events::Validate(parsed, {.reference_time = RecordedAt(parsed)});
        ASSERT_EQ(json_violations.size(), 1u);
        EXPECT_EQ(json_violations[0].ToString().rfind("review_submitted.rating: must be from 1 to 5, got ", 0), 0u);
        ASSERT_EQ(violations.size(), 1u);
        EXPECT_EQ(violations[0].ToString(), json_violations[0].ToString());
        break;
      }
      case InvalidKind::kMissingCustomer:
        ASSERT_FALSE(parse_error.has_value());
        ASSERT_EQ(violations.size(), 1u);
        EXPECT_EQ(violations[0].ToString(), "customer_id: required");
        EXPECT_TRUE(record.invalid_key.empty());
        break;
    }
  }
  uint64_t invalid = 0;
  for (const auto& [kind, n] : kinds) invalid += n;
  EXPECT_EQ(kinds.size(), 4u) << "every kind of invalid record occurs";
  double share = static_cast<double>(invalid) / static_cast<double>(total);
  EXPECT_NEAR(share, 0.1, 0.01) << invalid << " of " << total;
}

// The distribution checks run on 10,000 customers over a year.
class Population : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    options_ = Options(10000, 365, 11);
    Simulator simulator(options_);
    SimulatedRecord record;
    while (simulator.Next(record)) {
      const v1::Envelope& e = record.event;
      ++channels_[e.channel()];
      ++events_;
      if (e.has_purchase_completed()) ++purchase_channels_[e.channel()];
    }
    truth_ = simulator.Truth();
    end_ = simulator.end();
  }
  static SimulationOptions options_;
  static std::vector<CustomerTruth> truth_;
  static std::map<v1::Channel, uint64_t> channels_, purchase_channels_;
  static uint64_t events_;
  static absl::Time end_;
};
SimulationOptions Population::options_;
std::vector<CustomerTruth> Population::truth_;
std::map<v1::Channel, uint64_t> Population::channels_, Population::purchase_channels_;
uint64_t Population::events_ = 0;
absl::Time Population::end_;

TEST_F(Population, RatesAndDropoutsAreDrawnFromTheModelsDistributions) {
  double lambda_sum = 0, p_sum = 0;
  for (const auto& c : truth_) {
    lambda_sum += c.purchase_rate_per_day;
    p_sum += c.dropout_probability;
  }
  const auto& m = options_.model;
  double n = static_cast<double>(truth_.size());
  // Gamma(r, alpha) has mean r/alpha and sd sqrt(r)/alpha: the sample mean of
  // 10,000 draws is within 3% of r/alpha with overwhelming probability.
  EXPECT_NEAR(lambda_sum / n, m.r / m.alpha, 0.04 * m.r / m.alpha);
  EXPECT_NEAR(p_sum / n, m.a / (m.a + m.b), 0.01);
}

TEST_F(Population, RepeatPurchasesAndSurvivalMatchTheBgNbdExpectation) {
  // Given lambda and p, over a customer's T days: E[repeat purchases] =
  // (1 - exp(-lambda p T)) / p and P(alive at the end) = exp(-lambda p T)
  // (Fader, Hardie and Lee 2005, eq. 7 and its derivation).
  double expected_repeats = 0, observed_repeats = 0, expected_alive = 0, observed_alive = 0;
  for (const auto& c : truth_) {
    double t = absl::ToDoubleHours(end_ - c.acquired_at) / 24;
    double lp = c.purchase_rate_per_day * c.dropout_probability;
    expected_repeats += (1 - std::exp(-lp * t)) / c.dropout_probability;
    expected_alive += std::exp(-lp * t);
    observed_repeats += static_cast<double>(c.purchases - 1);
    observed_alive += c.alive_at_end;
    if (!c.alive_at_end) {
      EXPECT_GE(c.purchases, 2) << c.customer_id << " dropped out without a repeat purchase";
      EXPECT_GT(c.dropped_out_at, c.acquired_at);
    }
  }
  EXPECT_NEAR(observed_repeats / expected_repeats, 1.0, 0.05) << observed_repeats << " vs " << expected_repeats;
  EXPECT_NEAR(observed_alive / expected_alive, 1.0, 0.03) << observed_alive << " vs " << expected_alive;
}

TEST_F(Population, RevenueConcentratesRoughlyEightyTwenty) {
  std::vector<int64_t> revenue;
  for (const auto& c : truth_) revenue.push_back(c.revenue_eur_cents);
  std::sort(revenue.rbegin(), revenue.rend());
  int64_t total = std::accumulate(revenue.begin(), revenue.end(), int64_t{0});
  int64_t top = std::accumulate(revenue.begin(), revenue.begin() + static_cast<long>(revenue.size() / 5), int64_t{0});
  double share = static_cast<double>(top) / static_cast<double>(total);
  EXPECT_GT(share, 0.6);
  EXPECT_LT(share, 0.9);
}

TEST_F(Population, EveryChannelIsUsedInAPlausibleMix) {
  for (int c = v1::CHANNEL_STORE; c <= v1::CHANNEL_OTHER; ++c) {
    double share = static_cast<double>(channels_[static_cast<v1::Channel>(c)]) / static_cast<double>(events_);
    EXPECT_GT(share, 0.005) << v1::Channel_Name(c);
    EXPECT_LT(share, 0.4) << v1::Channel_Name(c);
  }
  uint64_t purchases = 0;
  for (const auto& [channel, n] : purchase_channels_) purchases += n;
  double store = static_cast<double>(purchase_channels_[v1::CHANNEL_STORE]) / static_cast<double>(purchases);
  double partner = static_cast<double>(purchase_channels_[v1::CHANNEL_PARTNER]) / static_cast<double>(purchases);
  EXPECT_GT(store, 0.25);
  EXPECT_LT(store, 0.6);
  EXPECT_GT(partner, 0.01);
  EXPECT_LT(partner, 0.15);
  EXPECT_EQ(purchase_channels_.size(), 4u) << "purchases only in store, web, app and through partners";
}

TEST(Random, SamplersHaveTheirDistributionsMoments) {
  Random random(1);
  constexpr int kDraws = 200000;
  double gamma = 0, gamma_small = 0, beta = 0, normal = 0, normal_sq = 0;
  for (int i = 0; i < kDraws; ++i) {
    gamma += random.Gamma(3.0, 2.0);
    gamma_small += random.Gamma(0.3, 1.0);  // the shape < 1 path
    beta += random.Beta(0.8, 2.5);
    double x = random.Normal(1.0, 2.0);
    normal += x;
    normal_sq += x * x;
  }
  EXPECT_NEAR(gamma / kDraws, 1.5, 0.01);
  EXPECT_NEAR(gamma_small / kDraws, 0.3, 0.005);
  EXPECT_NEAR(beta / kDraws, 0.8 / 3.3, 0.003);
  EXPECT_NEAR(normal / kDraws, 1.0, 0.02);
  EXPECT_NEAR(normal_sq / kDraws - 1.0, 4.0, 0.05);
}

TEST(Random, SameSeedSameNumbers) {
  Random a(99), b(99);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(a.NextU64(), b.NextU64());
  // The reference xoshiro256** seeded by splitmix64 from 7 (computed independently).
  EXPECT_EQ(Random(7).NextU64(), 0xb358faf74ef9765aULL) << "the generator's output is part of the stream's contract";
}

}  // namespace
}  // namespace rapport::simulator
