#pragma once

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rapport/events/codec.h"
#include "rapport/projections/projection.h"
#include "rapport/state/v1/reviews.pb.h"
#include "rapport/v1/alert.pb.h"

namespace rapport::projections {

// Reviews and satisfaction: per subject (a hotel, product, store, agent, ...)
// its count, mean, 1-5 histogram, a Bayesian average shrunk toward its
// subject type's mean, and daily totals for "the last 30 days as of T"; the
// reviews themselves, newest first; per customer the reviews they wrote.
// A dissatisfied service rating, a 1- or 2-star review or an NPS answer of 0-6
// raises one alert on cx.alerts.
//
// Totals are kept per source partition (counts and sums, so arrival order
// cannot change them) and summed at query time.
class ReviewsProjection final : public Projection {
 public:
  std::string_view Name() const override { return "reviews"; }
  int Version() const override { return 1; }

  bool Reads(v1::Envelope::PayloadCase type) const override;

 protected:
  Status DoApply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
                 std::vector<OutboxRecord>& outbox) override;
};

// The alert an event raises, if any (exposed for tests and documentation).
std::optional<v1::Alert> AlertFor(const v1::Envelope& event);

struct SubjectSummary {
  v1::SubjectType type = v1::SUBJECT_TYPE_UNSPECIFIED;
  std::string id;
  int64_t count = 0;
  double mean = 0;
  std::array<int64_t, 5> histogram{};
  double bayesian_average = 0;  // (C * type mean + sum) / (C + count), C = kPriorWeight
  double type_mean = 0;
  int64_t last_30_days_count = 0;
  double last_30_days_mean = 0;  // 0 when there are none
};

// What a SubjectSummary is made of, for some partitions: sums, which add up
// exactly across instances.
struct SubjectTotals {
  int64_t count = 0, sum = 0;
  std::array<int64_t, 5> histogram{};
  int64_t type_count = 0, type_sum = 0;      // every subject of the type
  int64_t recent_count = 0, recent_sum = 0;  // the 30 days up to as_of
  void Add(const SubjectTotals& other);
};

struct ReviewPage {
  std::vector<state::v1::ReviewRecord> reviews;  // newest first
  std::vector<std::string> cursors;              // each review's: a page resumed there starts after it
  std::string next_cursor;                       // empty on the last page
};

// Read-only queries of the reviews state.
class ReviewsView {
 public:
  static constexpr double kPriorWeight = 10;  // reviews' worth of belief in the type's mean

  ReviewsView(ProjectionStore& store, int32_t partition_count);

  // NotFound when the subject has no reviews.
  Result<SubjectSummary> Summary(v1::SubjectType type, const std::string& id, absl::Time as_of);
  // Summary's parts from the partitions `in` accepts (null: all); SummaryOf
  // their sum is the summary (NotFound without reviews).
  Result<SubjectTotals> Totals(v1::SubjectType type, const std::string& id, absl::Time as_of,
                               const std::function<bool(int32_t)>& in = nullptr);
  static Result<SubjectSummary> SummaryOf(v1::SubjectType type, const std::string& id, const SubjectTotals& totals);
  // Newest first; `cursor` is a previous page's next_cursor (empty: the first
  // page). `in`: only the partitions it accepts (null: all). A review's
  // cursor, decoded (base64url), orders it: a larger one is newer.
  Result<ReviewPage> Reviews(v1::SubjectType type, const std::string& id, size_t limit, const std::string& cursor,
                             const std::function<bool(int32_t)>& in = nullptr);
  // The reviews `customer_id` wrote, newest first.
  Result<std::vector<state::v1::ReviewRecord>> ByCustomer(const std::string& customer_id);

  static std::string ToJson(const SubjectSummary& summary, events::JsonStyle style = events::JsonStyle::kIndented);
  static std::string ToJson(const ReviewPage& page, events::JsonStyle style = events::JsonStyle::kIndented);
  static std::string ToJson(const std::vector<state::v1::ReviewRecord>& reviews,
                            events::JsonStyle style = events::JsonStyle::kIndented);

 private:
  ProjectionStore& store_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle>
      family_;  // the live version: held, so a swap cannot pull it away mid-query
  int32_t partition_count_;
};

}  // namespace rapport::projections
