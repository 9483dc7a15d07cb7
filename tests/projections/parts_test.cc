// Several instances answer a read of every customer from parts, one per set
// of partitions: each view's parts must add up to exactly what the view
// answers over every partition (the API's merges rest on this; the same
// across real processes: tests/integration/cluster_test.cc).
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "projection_harness.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/reviews.h"
#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

constexpr int32_t kPartitions = 4;
const absl::Time kAsOf = absl::FromUnixSeconds(1775001600);  // 2026-04-01T00:00:00Z

bool InFirstHalf(int32_t p) { return p < 2; }
bool InSecondHalf(int32_t p) { return p >= 2; }

// 120 customers, each on the partition its id hashes to, with 1 to 9
// purchases of varied amounts in two currencies, and reviews of 3 hotels.
template <class Apply>
void Simulate(Apply apply, bool reviews) {
  for (int c = 0; c < 120; ++c) {
    const std::string id = absl::StrFormat("c-%04d", c);
    const int32_t partition = kafka::PartitionForKey(id, kPartitions);
    std::vector<std::string> lines;
    for (int n = 0; n < 1 + (c * 7) % 9; ++n) {
      const std::string when = absl::StrFormat("2025-%02d-%02dT10:00:00Z", 1 + (c + 3 * n) % 11, 1 + (c * n) % 27);
      lines.push_back(R"({"customer_id":")" + id + R"(","occurred_at":")" + when +
                      R"(","source":"pos","channel":"CHANNEL_STORE","purchase_completed":{"order_id":"o)" +
                      std::to_string(n) + R"(","total":{"currency":")" + (c % 5 == 0 ? "USD" : "EUR") +
                      R"(","amount":")" + absl::StrFormat("%d.%02d", 5 + (c * 13 + n * 29) % 400, c % 100) + R"("}}})");
    }
    if (reviews) {
      lines.push_back(R"({"customer_id":")" + id + R"(","occurred_at":"2026-03-)" +
                      absl::StrFormat("%02d", 1 + c % 28) +
                      R"(T12:00:00Z","source":"web","channel":"CHANNEL_WEB","review_submitted":{"subject_type":)"
                      R"("SUBJECT_TYPE_HOTEL","subject_id":"hotel-)" +
                      std::to_string(c % 3) + R"(","rating":)" + std::to_string(1 + c % 5) + "}}");
    }
    apply(lines, partition);
  }
}

class ChurnParts : public ::testing::Test {
 protected:
  void SetUp() override {
    Simulate([&](const std::vector<std::string>& lines, int32_t p) { harness_.Apply(lines, p); }, false);
  }
  ChurnProjection projection_;
  ProjectionHarness harness_{projection_};
};

TEST_F(ChurnParts, TwoHalvesTallyToThePopulation) {
  ChurnView view(harness_.store(), kPartitions);
  auto whole = view.Population(kAsOf);
  ASSERT_OK(whole);
  // Counts first (no spends kept), as a merge learns how many it needs.
  auto first = view.Tally(kAsOf, InFirstHalf, 0), second = view.Tally(kAsOf, InSecondHalf, 0);
  ASSERT_OK(first);
  ASSERT_OK(second);
  PopulationTally counts = *first;
  counts.Add(*second, 0);
  const size_t needed = counts.ValuesNeeded();
  EXPECT_EQ(needed, TopFifth(static_cast<size_t>(counts.revenue["EUR"].customers)));
  EXPECT_GT(needed, 5u);
  first = view.Tally(kAsOf, InFirstHalf, needed);
  second = view.Tally(kAsOf, InSecondHalf, needed);
  ASSERT_OK(first);
  ASSERT_OK(second);
  PopulationTally sum = *first;
  sum.Add(*second, needed);
  const PopulationView merged = ChurnView::Summarize(sum);
  EXPECT_EQ(merged.customers, whole->customers);
  EXPECT_EQ(merged.customers, 120);
  EXPECT_EQ(merged.customers_per_segment, whole->customers_per_segment);
  EXPECT_EQ(merged.top_20_percent_revenue_share, whole->top_20_percent_revenue_share);
  EXPECT_EQ(merged.top_20_percent_revenue_share.size(), 2u);
  // Fewer spends than a fifth: the share would be wrong, and the tally says so.
  PopulationTally short_of = *view.Tally(kAsOf, InFirstHalf, 1);
  short_of.Add(*view.Tally(kAsOf, InSecondHalf, 1), 1);
  EXPECT_GT(short_of.ValuesNeeded(), 1u);
  EXPECT_NE(ChurnView::Summarize(short_of).top_20_percent_revenue_share, whole->top_20_percent_revenue_share);
}

TEST_F(ChurnParts, AFitOnEveryPartitionsInputsInPartitionOrderIsTheStoresFit) {
  ChurnView view(harness_.store(), kPartitions);
  const ChurnModelOptions options{.min_spend_customers = 10};
  auto whole = view.Fit(kAsOf, options);
  ASSERT_OK(whole);
  FitInputs all;
  for (int32_t p = 0; p < kPartitions; ++p) {
    auto part = view.FitInputsOf(absl::ToUnixMillis(kAsOf), options.period, [p](int32_t q) { return q == p; });
    ASSERT_OK(part);
    EXPECT_FALSE(part->histories.empty()) << "partition " << p;
    all.Append(*part);
  }
  auto parts = ChurnView::FitOn(all, absl::ToUnixMillis(kAsOf), options);
  ASSERT_OK(parts);
  EXPECT_EQ(parts->SerializeAsString(), whole->SerializeAsString()) << "bit for bit";
  EXPECT_EQ(parts->purchases().customers(), 120);
  EXPECT_GE(parts->spend_size(), 1);
}

TEST_F(ChurnParts, AtRiskAndMembersOfTwoHalvesAreTheWholesSplit) {
  ChurnView view(harness_.store(), kPartitions);
  auto whole = view.AtRisk(kAsOf, 1000, "EUR");
  auto first = view.AtRisk(kAsOf, 1000, "EUR", InFirstHalf), second = view.AtRisk(kAsOf, 1000, "EUR", InSecondHalf);
  ASSERT_OK(whole);
  ASSERT_OK(first);
  ASSERT_OK(second);
  EXPECT_EQ(first->customers.size() + second->customers.size(), whole->customers.size());
  EXPECT_GT(first->customers.size(), 0u);
  EXPECT_GT(second->customers.size(), 0u);
  for (const auto& [currency, n] : whole->customers_per_currency) {
    EXPECT_EQ(first->customers_per_currency[currency] + second->customers_per_currency[currency], n) << currency;
  }
  EXPECT_EQ(MostCommonCurrency(whole->customers_per_currency), "EUR");
  EXPECT_EQ(MostCommonCurrency({{"EUR", 3}, {"CHF", 3}}), "CHF") << "ties: the first code";
  EXPECT_EQ(MostCommonCurrency({}), "");

  // A page's cursors are its keys' order: a part's page continues where the
  // whole's did.
  auto page = view.Members(Segment::kLost, kAsOf, 1000, "");
  auto firsts = view.Members(Segment::kLost, kAsOf, 1000, "", InFirstHalf);
  ASSERT_OK(page);
  ASSERT_OK(firsts);
  ASSERT_EQ(page->cursors.size(), page->customers.size());
  ASSERT_FALSE(firsts->customers.empty());
  EXPECT_EQ(firsts->cursors,
            std::vector<std::string>(page->cursors.begin(),
                                     page->cursors.begin() + static_cast<long>(firsts->cursors.size())))
      << "partitions 0 and 1 come first in key order";
}

TEST(ReviewsParts, TwoHalvesTotalToTheSummaryAndMergeToThePage) {
  ReviewsProjection projection;
  ProjectionHarness harness(projection);
  Simulate([&](const std::vector<std::string>& lines, int32_t p) { harness.Apply(lines, p); }, true);
  ReviewsView view(harness.store(), kPartitions);
  auto whole = view.Summary(v1::SUBJECT_TYPE_HOTEL, "hotel-1", kAsOf);
  ASSERT_OK(whole);
  auto first = view.Totals(v1::SUBJECT_TYPE_HOTEL, "hotel-1", kAsOf, InFirstHalf);
  auto second = view.Totals(v1::SUBJECT_TYPE_HOTEL, "hotel-1", kAsOf, InSecondHalf);
  ASSERT_OK(first);
  ASSERT_OK(second);
  EXPECT_GT(first->count, 0);
  EXPECT_GT(second->count, 0);
  SubjectTotals sum = *first;
  sum.Add(*second);
  auto merged = ReviewsView::SummaryOf(v1::SUBJECT_TYPE_HOTEL, "hotel-1", sum);
  ASSERT_OK(merged);
  EXPECT_EQ(ReviewsView::ToJson(*merged), ReviewsView::ToJson(*whole));
  EXPECT_EQ(ReviewsView::SummaryOf(v1::SUBJECT_TYPE_HOTEL, "none", {}).status().code(), absl::StatusCode::kNotFound);

  // Newest first: the halves' pages, merged by decoded cursor, are the page.
  auto page = view.Reviews(v1::SUBJECT_TYPE_HOTEL, "hotel-1", 15, "");
  auto a = view.Reviews(v1::SUBJECT_TYPE_HOTEL, "hotel-1", 15, "", InFirstHalf);
  auto b = view.Reviews(v1::SUBJECT_TYPE_HOTEL, "hotel-1", 15, "", InSecondHalf);
  ASSERT_OK(page);
  ASSERT_OK(a);
  ASSERT_OK(b);
  std::vector<std::string> merged_cursors = a->cursors;
  merged_cursors.insert(merged_cursors.end(), b->cursors.begin(), b->cursors.end());
  auto decoded = [](const std::string& cursor) {
    std::string bytes;
    EXPECT_TRUE(absl::WebSafeBase64Unescape(cursor, &bytes));
    return bytes;
  };
  std::sort(merged_cursors.begin(), merged_cursors.end(),
            [&](const std::string& x, const std::string& y) { return decoded(x) > decoded(y); });
  merged_cursors.resize(page->cursors.size());
  EXPECT_EQ(merged_cursors, page->cursors);
  EXPECT_EQ(page->cursors.size(), 15u);
}

}  // namespace
}  // namespace rapport::projections
