// The churn projection on hand-worked cases.
#include "rapport/projections/churn.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>

#include "absl/strings/str_format.h"
#include "projection_harness.h"
#include "rapport/projections/keys.h"
#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

const absl::Time kAsOf = absl::FromUnixSeconds(1775001600);  // 2026-04-01T00:00:00Z

class ChurnTest : public ::testing::Test {
 protected:
  void Apply(const std::vector<std::string>& lines, size_t per_batch = 0) { harness_.Apply(lines, 0, per_batch); }
  ChurnAssessment Assess(const std::string& customer) {
    auto a = ChurnView(harness_.store(), 1).Assess(customer, kAsOf);
    EXPECT_OK(a);
    return a.ok() ? *a : ChurnAssessment{};
  }

  ChurnProjection projection_;
  ProjectionHarness harness_{projection_};
};

std::string Purchase(const std::string& customer, const std::string& when, const std::string& amount,
                     const std::string& currency = "EUR") {
  return R"({"customer_id":")" + customer + R"(","occurred_at":")" + when +
         R"(","source":"pos","channel":"CHANNEL_STORE","purchase_completed":{"order_id":"o","total":{"currency":")" +
         currency + R"(","amount":")" + amount + R"("}}})";
}
std::string Other(const std::string& customer, const std::string& when, const std::string& payload) {
  return R"({"customer_id":")" + customer + R"(","occurred_at":")" + when +
         R"(","source":"cc","channel":"CHANNEL_CALL_CENTRE",)" + payload + "}";
}

TEST_F(ChurnTest, SufficientStatisticsCountDaysGapsAndMoney) {
  Apply({Purchase("c-1", "2026-01-01T09:00:00Z", "10.00"),
         Purchase("c-1", "2026-01-01T18:00:00Z", "5.00"),  // same day: one purchase day
         Purchase("c-1", "2026-01-11T09:00:00Z", "20.00"), Purchase("c-1", "2026-01-31T09:00:00Z", "30.00"),
         Purchase("c-1", "2026-02-01T09:00:00Z", "1000", "JPY"),  // another currency: not in monetary
         Other("c-1", "2026-02-02T09:00:00Z",
               R"("refund_issued":{"order_id":"o","amount":{"currency":"EUR","amount":"5.00"}})")});
  auto a = Assess("c-1");
  const auto& s = a.stats;
  EXPECT_EQ(s.purchases(), 5);
  EXPECT_EQ(s.purchase_days(), 4);
  EXPECT_EQ(a.frequency, 3);
  EXPECT_EQ(s.currency(), "EUR");
  EXPECT_EQ(s.monetary_minor(), 6000);  // 10 + 5 + 20 + 30 - 5 refunded
  EXPECT_EQ(s.gaps(), 3);
  EXPECT_EQ(s.gap_days_sum(), 31);                   // 10 + 20 + 1
  EXPECT_NEAR(a.recency_days, 59 - 9.0 / 24, 1e-9);  // 2026-02-01T09:00 to 2026-04-01T00:00
}

TEST_F(ChurnTest, ScoresAreQuintilesOfThePopulation) {
  // Five customers whose last purchases are one month apart, with 1..5 purchase days.
  std::vector<std::string> events;
  for (int c = 1; c <= 5; ++c) {
    for (int d = 0; d < c; ++d) {
      events.push_back(Purchase("c-" + std::to_string(c), absl::StrFormat("2025-%02d-%02dT10:00:00Z", 6 + c, 1 + d),
                                std::to_string(c * 10) + ".00"));
    }
  }
  Apply(events);
  for (int c = 1; c <= 5; ++c) {
    auto a = Assess("c-" + std::to_string(c));
    EXPECT_EQ(a.r, c) << "c-" << c << " last bought in month " << 6 + c;
    EXPECT_EQ(a.f, c);
    EXPECT_EQ(a.m, c);
  }
  EXPECT_EQ(Assess("c-5").segment, Segment::kChampions);
  EXPECT_EQ(Assess("c-1").segment, Segment::kLost);
  EXPECT_EQ(Assess("c-3").segment, Segment::kNeedAttention);
}

TEST_F(ChurnTest, HistogramsFollowCustomersAsTheyMove) {
  // c-1 moves buckets with every purchase; the population must count it once.
  Apply({Purchase("c-1", "2025-01-01T10:00:00Z", "10.00"), Purchase("c-2", "2025-06-01T10:00:00Z", "10.00"),
         Purchase("c-1", "2025-09-01T10:00:00Z", "10.00"), Purchase("c-1", "2025-12-01T10:00:00Z", "10.00")});
  auto population = ChurnView(harness_.store(), 1).Population(kAsOf);
  ASSERT_OK(population);
  EXPECT_EQ(population->customers, 2);
  EXPECT_EQ(Assess("c-1").r, 4);  // most recent of two: mid-rank 0.75
  EXPECT_EQ(Assess("c-2").r, 2);  // mid-rank 0.25
}

TEST_F(ChurnTest, RiskSaysWhy) {
  Apply(
      {Purchase("c-1", "2026-01-01T10:00:00Z", "10.00"), Purchase("c-1", "2026-01-08T10:00:00Z", "10.00"),
       Purchase("c-1", "2026-01-15T10:00:00Z", "10.00"),  // a weekly buyer, silent since
       Other(
           "c-1", "2026-03-01T10:00:00Z",
           R"("complaint_opened":{"case_id":"k-1","category":"COMPLAINT_CATEGORY_BILLING","severity":"SEVERITY_HIGH"})"),
       Other("c-1", "2026-03-02T10:00:00Z", R"("survey_answered":{"nps_score":3})")});
  auto a = Assess("c-1");
  EXPECT_EQ(a.risk, 90);
  EXPECT_EQ(a.reasons, (std::vector<std::string>{
                           "overdue: 75 days since the last purchase, 10.8 times the usual gap of 7 days",
                           "1 unresolved complaint, the oldest 30 days old",
                           "low satisfaction: NPS 3",
                       }));

  Apply({Other("c-1", "2026-03-03T10:00:00Z",
               R"("complaint_resolved":{"case_id":"k-1","resolution":"RESOLUTION_RESOLVED"})"),
         Other("c-1", "2026-03-04T10:00:00Z", R"("survey_answered":{"nps_score":9})"),
         Purchase("c-1", "2026-03-30T10:00:00Z", "10.00")});
  EXPECT_EQ(Assess("c-1").risk, 0) << "back, satisfied and complaint resolved";

  Apply({Purchase("c-2", "2025-10-01T10:00:00Z", "10.00")});
  auto single = Assess("c-2");
  EXPECT_EQ(single.risk, 30);
  EXPECT_EQ(single.reasons, (std::vector<std::string>{"no repeat purchase in 181 days"}));
}

TEST_F(ChurnTest, FallingFrequencyIsNoticed) {
  std::vector<std::string> events;
  for (int d = 1; d <= 28; d += 3)
    events.push_back(Purchase("c-1", absl::StrFormat("2025-11-%02dT10:00:00Z", d), "5.00"));
  events.push_back(Purchase("c-1", "2026-03-20T10:00:00Z", "5.00"));
  Apply(events);
  auto a = Assess("c-1");
  ASSERT_FALSE(a.reasons.empty());
  EXPECT_EQ(a.reasons.back(), "falling frequency: 1 purchase days in the last 90 days, 10 in the 90 before");
}

TEST_F(ChurnTest, SegmentGridCoversEveryScore) {
  EXPECT_EQ(SegmentFor(5, 5, 5), Segment::kChampions);
  EXPECT_EQ(SegmentFor(5, 1, 1), Segment::kNew);
  EXPECT_EQ(SegmentFor(4, 1, 1), Segment::kPromising);
  EXPECT_EQ(SegmentFor(4, 4, 4), Segment::kLoyal);
  EXPECT_EQ(SegmentFor(3, 3, 3), Segment::kNeedAttention);
  EXPECT_EQ(SegmentFor(3, 1, 2), Segment::kAboutToSleep);
  EXPECT_EQ(SegmentFor(2, 3, 4), Segment::kAtRisk);
  EXPECT_EQ(SegmentFor(1, 5, 5), Segment::kCannotLose);
  EXPECT_EQ(SegmentFor(2, 1, 1), Segment::kHibernating);
  EXPECT_EQ(SegmentFor(1, 1, 2), Segment::kLost);
  for (int r = 1; r <= 5; ++r) {
    for (int f = 1; f <= 5; ++f) {
      for (int m = 1; m <= 5; ++m) EXPECT_NE(SegmentFor(r, f, m), Segment::kNoPurchase);
    }
  }
}

TEST_F(ChurnTest, TopTwentyPercentShareIsExact) {
  // Ten customers spending 1..10 (x 10 EUR): the top two hold 19 of 55.
  std::vector<std::string> events;
  for (int c = 1; c <= 10; ++c)
    events.push_back(Purchase("c-" + std::to_string(c), "2026-03-01T10:00:00Z", std::to_string(c * 10) + ".00"));
  Apply(events);
  auto population = ChurnView(harness_.store(), 1).Population(kAsOf);
  ASSERT_OK(population);
  EXPECT_DOUBLE_EQ(population->top_20_percent_revenue_share.at("EUR"), 19.0 / 55);
}

TEST_F(ChurnTest, BatchBoundariesDoNotChangeTheState) {
  std::vector<std::string> events;
  for (int i = 0; i < 30; ++i) {
    events.push_back(Purchase("c-" + std::to_string(i % 7), absl::StrFormat("2026-01-%02dT10:00:00Z", 1 + i % 28),
                              std::to_string(5 + i) + ".00"));
  }
  Apply(events);
  const std::string whole = harness_.Digest();
  harness_.Reset();
  Apply(events, 4);
  EXPECT_EQ(harness_.Digest(), whole);
}

TEST_F(ChurnTest, ModelStatisticsCountCalendarWeeksAndFirstPeriodSpendEvenOutOfOrder) {
  Apply({Purchase("c-1", "2026-01-01T09:00:00Z", "10.00"),  // a Thursday: week of Mon 2025-12-29
         Purchase("c-1", "2026-01-01T18:00:00Z", "5.00"),
         Purchase("c-1", "2026-01-04T09:00:00Z", "20.00"),        // Sunday: still the first week
         Purchase("c-1", "2026-01-05T09:00:00Z", "30.00"),        // Monday: the second week
         Purchase("c-1", "2026-02-01T09:00:00Z", "1000", "JPY"),  // a third week, not in the EUR sums
         Purchase("c-1", "2025-12-31T09:00:00Z", "7.00")});       // late: the new first day, in the first week
  const auto s = Assess("c-1").stats;
  EXPECT_EQ(s.purchase_days(), 5);
  EXPECT_EQ(s.purchase_weeks(), 3);
  EXPECT_EQ(s.purchase_minor(), 7200);
  EXPECT_EQ(s.first_day_minor(), 700);    // 2025-12-31 alone
  EXPECT_EQ(s.first_week_minor(), 4200);  // 7 + 10 + 5 + 20
  EXPECT_EQ(s.monetary_minor(), 7200);
}

TEST_F(ChurnTest, AStoredModelGivesFiguresInItsPeriodAndValueAtRiskComesFromIt) {
  Apply({Purchase("c-1", "2025-12-31T09:00:00Z", "7.00"), Purchase("c-1", "2026-01-01T09:00:00Z", "10.00"),
         Purchase("c-1", "2026-01-05T09:00:00Z", "30.00"), Purchase("c-1", "2026-01-26T09:00:00Z", "20.00")});
  EXPECT_FALSE(Assess("c-1").model.has_value()) << "no model stored yet";

  state::v1::ChurnModel model;
  model.set_period("week");
  model.set_clv_months(12);
  model.set_monthly_discount_rate(0.01);
  auto& bg = *model.mutable_purchases();
  bg.set_r(0.243), bg.set_alpha(4.414), bg.set_a(0.793), bg.set_b(2.426);
  auto& gg = *model.add_spend();
  gg.set_currency("EUR"), gg.set_p(6.25), gg.set_q(3.74), gg.set_v(15.44);
  ASSERT_OK(StoreChurnModel(harness_.store(), model));

  auto a = Assess("c-1");
  ASSERT_TRUE(a.model.has_value());
  // Weeks (Monday to Sunday) as of Wed 2026-04-01: first purchase week 2025-12-29,
  // repeat weeks 2026-01-05 and 2026-01-26, so x = 2, t_x = 4, T = 13; the repeat
  // weeks are worth 30 and 20, a mean of 25.
  const PurchaseHistory h{2, 4, 13};
  const BgNbdParameters params{0.243, 4.414, 0.793, 2.426};
  EXPECT_DOUBLE_EQ(a.model->p_alive, ProbabilityAlive(params, h));
  EXPECT_DOUBLE_EQ(a.model->expected_purchases_90d, ExpectedPurchases(params, h, 90.0 / 7));
  const double order_value = ExpectedOrderValue({6.25, 3.74, 15.44}, 2, 25.0);
  EXPECT_DOUBLE_EQ(a.model->expected_order_value, order_value);
  EXPECT_DOUBLE_EQ(a.model->clv, LifetimeValue(params, h, order_value, 12, 0.01, 4.345));
  EXPECT_NEAR(a.value_at_risk, LifetimeValue(params, h, order_value, 12, 0.01, 4.345, true) - a.model->clv, 1e-9);
  auto json = ChurnView::ToJson(a, kAsOf);
  EXPECT_NE(json.find("\"basis\": \"model\""), std::string::npos) << json;

  // As of a time before the last purchase the state cannot say what the
  // customer looked like then: no model figures, the rules' value at risk.
  auto before = ChurnView(harness_.store(), 1).Assess("c-1", absl::FromUnixSeconds(1768000000));  // 2026-01-09
  ASSERT_OK(before);
  EXPECT_FALSE(before->model.has_value());
  EXPECT_NE(ChurnView::ToJson(*before, absl::FromUnixSeconds(1768000000)).find("\"basis\": \"rules\""),
            std::string::npos);
}

TEST(ChurnOlderVersion, StateOfAnOlderChurnVersionGivesNoModelFiguresAndCannotBeFitted) {
  // While a raised churn version is built, queries read the older one, whose
  // statistics lack what the models read.
  const auto path = std::filesystem::path(::testing::TempDir()) / ("churn-v1-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  {
    auto store = ProjectionStore::Open({.path = path}, {"churn@v1"});
    ASSERT_OK(store);
    rocksdb::WriteBatch batch;
    state::v1::ChurnStats stats;
    stats.set_customer_id("c-1");
    stats.set_purchases(3);
    stats.set_purchase_days(3);
    stats.set_first_purchase_ms(1767225600000);
    stats.set_last_purchase_ms(1769904000000);
    stats.set_currency("EUR");
    batch.Put((*store)->family("churn@v1"), PartitionKey(0, 'c', "c-1"), events::EncodeDeterministic(stats));
    ASSERT_OK((*store)->WriteAndMakeLive(batch, {"churn@v1"}));
    state::v1::ChurnModel model;
    model.set_period("day");
    model.mutable_purchases()->set_r(0.5), model.mutable_purchases()->set_alpha(20);
    model.mutable_purchases()->set_a(0.8), model.mutable_purchases()->set_b(2.5);
    ASSERT_OK(StoreChurnModel(**store, model));

    ChurnView view(**store, 1);
    auto a = view.Assess("c-1", kAsOf);
    ASSERT_OK(a);
    EXPECT_FALSE(a->model.has_value());
    auto fit = view.Fit(kAsOf, {});
    ASSERT_FALSE(fit.ok());
    EXPECT_EQ(fit.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(fit.status().message().find("still being built"), std::string::npos) << fit.status();
  }
  std::filesystem::remove_all(path);
}

// Models published by another instance are checked before they are stored:
// one damaged on the way (or forged) must not give every customer NaN figures.
TEST(ParseChurnModel, RefusesModelsThatDoNotParseOrHoldNoPositiveFiniteParameters) {
  state::v1::ChurnModel good;
  good.set_period("day");
  good.mutable_purchases()->set_r(0.24);
  good.mutable_purchases()->set_alpha(4.4);
  good.mutable_purchases()->set_a(0.79);
  good.mutable_purchases()->set_b(2.4);
  auto* spend = good.add_spend();
  spend->set_currency("EUR");
  spend->set_p(6.25);
  spend->set_q(3.74);
  spend->set_v(15.4);
  auto parsed = ParseChurnModel(good.SerializeAsString());
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->purchases().alpha(), 4.4);

  EXPECT_EQ(ParseChurnModel("\xff\xff\xff").status().message(), "the churn models do not parse");
  auto broken = [&](const std::function<void(state::v1::ChurnModel&)>& damage) {
    state::v1::ChurnModel model = good;
    damage(model);
    return std::string(ParseChurnModel(model.SerializeAsString()).status().message());
  };
  EXPECT_EQ(broken([](auto& m) { m.set_period("month"); }),
            "the churn models' period \"month\" is neither day nor week");
  EXPECT_EQ(broken([](auto& m) { m.mutable_purchases()->set_r(-1); }),
            "the churn models' BG/NBD r is -1, not a positive number");
  EXPECT_EQ(broken([](auto& m) { m.mutable_purchases()->set_b(std::nan("")); }),
            "the churn models' BG/NBD b is nan, not a positive number");
  EXPECT_EQ(broken([](auto& m) { m.mutable_purchases()->clear_a(); }),
            "the churn models' BG/NBD a is 0, not a positive number");
  EXPECT_EQ(broken([](auto& m) { m.mutable_spend(0)->set_v(std::numeric_limits<double>::infinity()); }),
            "the churn models' Gamma-Gamma (EUR) v is inf, not a positive number");
}

}  // namespace
}  // namespace rapport::projections
