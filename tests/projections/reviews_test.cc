// The reviews projection on hand-worked cases, and the alerts it raises.
#include "rapport/projections/reviews.h"

#include <gtest/gtest.h>

#include "projection_harness.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

constexpr int32_t kPartitions = 3;

class ReviewsTest : public ::testing::Test {
 protected:
  // Applies one event as if read from `partition`; returns the alerts raised.
  std::vector<OutboxRecord> Apply(const std::string& json, int32_t partition) {
    return harness_.Apply({json}, partition);
  }
  std::vector<OutboxRecord> Review(const std::string& customer, const std::string& subject, int rating,
                                   const std::string& day, int32_t partition,
                                   const std::string& type = "SUBJECT_TYPE_HOTEL") {
    return Apply(R"({"customer_id":")" + customer + R"(","occurred_at":")" + day +
                     R"(T12:00:00Z","source":"web","channel":"CHANNEL_WEB","review_submitted":{"subject_type":")" +
                     type + R"(","subject_id":")" + subject + R"(","rating":)" + std::to_string(rating) + "}}",
                 partition);
  }

  ReviewsProjection projection_;
  ProjectionHarness harness_{projection_};
};

TEST_F(ReviewsTest, SummaryAddsUpEveryPartition) {
  // hotel-a: 5, 4 and 1 from three customers on three partitions; hotel-b: 3, 3.
  Review("c-1", "hotel-a", 5, "2026-03-01", 0);
  Review("c-2", "hotel-a", 4, "2026-03-20", 1);
  Review("c-3", "hotel-a", 1, "2026-04-10", 2);
  Review("c-4", "hotel-b", 3, "2026-04-01", 0);
  Review("c-5", "hotel-b", 3, "2026-04-02", 1);
  Review("c-6", "store-1", 5, "2026-04-02", 1, "SUBJECT_TYPE_STORE");  // another type: not in hotels' mean

  ReviewsView view(harness_.store(), kPartitions);
  auto s = view.Summary(v1::SUBJECT_TYPE_HOTEL, "hotel-a", absl::FromUnixSeconds(1776211200));  // 2026-04-15
  ASSERT_OK(s);
  EXPECT_EQ(s->count, 3);
  EXPECT_DOUBLE_EQ(s->mean, 10.0 / 3);
  EXPECT_EQ(s->histogram, (std::array<int64_t, 5>{1, 0, 0, 1, 1}));
  EXPECT_DOUBLE_EQ(s->type_mean, 16.0 / 5);  // all hotel reviews: 5+4+1+3+3
  EXPECT_DOUBLE_EQ(s->bayesian_average, (10 * 3.2 + 10) / 13);
  // The 30 days up to 2026-04-15: the reviews of 03-20 and 04-10.
  EXPECT_EQ(s->last_30_days_count, 2);
  EXPECT_DOUBLE_EQ(s->last_30_days_mean, 2.5);
  auto later = view.Summary(v1::SUBJECT_TYPE_HOTEL, "hotel-a", absl::FromUnixSeconds(1778803200));  // 2026-05-15
  EXPECT_EQ(later->last_30_days_count, 0);
  EXPECT_EQ(view.Summary(v1::SUBJECT_TYPE_HOTEL, "hotel-c", absl::Now()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ReviewsTest, AnIdThatPrefixesAnotherKeepsItsOwnFigures) {
  Review("c-1", "h-1", 5, "2026-03-01", 0);
  Review("c-1", "h-10", 1, "2026-03-01", 0);
  ReviewsView view(harness_.store(), kPartitions);
  EXPECT_EQ(view.Summary(v1::SUBJECT_TYPE_HOTEL, "h-1", absl::Now())->count, 1);
  EXPECT_EQ(view.Reviews(v1::SUBJECT_TYPE_HOTEL, "h-1", 10, "")->reviews.size(), 1u);
}

TEST_F(ReviewsTest, ReviewsPageNewestFirstAcrossPartitions) {
  for (int day = 1; day <= 7; ++day) {
    Review("c-" + std::to_string(day), "hotel-a", 3, "2026-03-0" + std::to_string(day), day % kPartitions);
  }
  ReviewsView view(harness_.store(), kPartitions);
  std::vector<std::string> customers;
  std::string cursor;
  int pages = 0;
  do {
    auto page = view.Reviews(v1::SUBJECT_TYPE_HOTEL, "hotel-a", 3, cursor);
    ASSERT_OK(page);
    for (const auto& r : page->reviews) customers.push_back(r.customer_id());
    cursor = page->next_cursor;
    ++pages;
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(customers, (std::vector<std::string>{"c-7", "c-6", "c-5", "c-4", "c-3", "c-2", "c-1"}));
  EXPECT_EQ(view.Reviews(v1::SUBJECT_TYPE_HOTEL, "hotel-a", 3, "not a cursor!").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ReviewsTest, ACustomersReviewsNewestFirst) {
  // Each customer on its own partition (murmur2 of the id), as the runner puts it.
  const int32_t home = kafka::PartitionForKey("c-1", kPartitions);
  Review("c-1", "hotel-a", 4, "2026-03-01", home);
  Review("c-1", "store-9", 2, "2026-03-05", home, "SUBJECT_TYPE_STORE");
  Review("c-2", "hotel-a", 5, "2026-03-06", kafka::PartitionForKey("c-2", kPartitions));
  ReviewsView view(harness_.store(), kPartitions);
  auto written = view.ByCustomer("c-1");
  ASSERT_OK(written);
  ASSERT_EQ(written->size(), 2u);
  EXPECT_EQ((*written)[0].subject_id(), "store-9");
  EXPECT_EQ((*written)[1].subject_id(), "hotel-a");
}

TEST_F(ReviewsTest, DissatisfactionRaisesExactlyOneAlertEach) {
  auto low = Review("c-1", "hotel-a", 2, "2026-03-01", 0);
  ASSERT_EQ(low.size(), 1u);
  EXPECT_EQ(low[0].topic, "alerts");
  EXPECT_EQ(low[0].key, "c-1");
  v1::Alert alert;
  ASSERT_TRUE(alert.ParseFromString(low[0].value));
  EXPECT_EQ(alert.kind(), v1::ALERT_KIND_LOW_REVIEW);
  EXPECT_EQ(alert.subject(), "hotel/hotel-a");
  EXPECT_EQ(alert.summary(), "review of 2/5 for hotel hotel-a");
  EXPECT_EQ(alert.alert_id(), "alert:" + alert.triggering_event_id());
  EXPECT_TRUE(Review("c-1", "hotel-a", 3, "2026-03-01", 0).empty()) << "3 stars is not an alert";

  auto rated = [&](const std::string& level) {
    return Apply(
        R"({"customer_id":"c-2","occurred_at":"2026-03-01T10:00:00Z","source":"kiosk","channel":"CHANNEL_KIOSK",)"
        R"("service_rated":{"satisfaction":")" +
            level + R"(","point":"SERVICE_POINT_COUNTER","point_id":"counter-2","branch_id":"branch-7"}})",
        1);
  };
  auto dissatisfied = rated("SATISFACTION_DISSATISFIED");
  ASSERT_EQ(dissatisfied.size(), 1u);
  ASSERT_TRUE(alert.ParseFromString(dissatisfied[0].value));
  EXPECT_EQ(alert.kind(), v1::ALERT_KIND_DISSATISFIED_SERVICE_RATING);
  EXPECT_EQ(alert.subject(), "counter/counter-2@branch-7");
  EXPECT_EQ(rated("SATISFACTION_VERY_DISSATISFIED").size(), 1u);
  EXPECT_TRUE(rated("SATISFACTION_NEUTRAL").empty());

  auto nps = [&](int score) {
    return Apply(
        R"({"customer_id":"c-3","occurred_at":"2026-03-01T10:00:00Z","source":"email","channel":"CHANNEL_EMAIL",)"
        R"("survey_answered":{"survey_id":"q1","nps_score":)" +
            std::to_string(score) + "}}",
        2);
  };
  EXPECT_EQ(nps(0).size(), 1u);
  EXPECT_EQ(nps(6).size(), 1u);
  EXPECT_TRUE(nps(7).empty());
  EXPECT_TRUE(nps(10).empty());
}

}  // namespace
}  // namespace rapport::projections
