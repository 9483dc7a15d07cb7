#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rapport/events/codec.h"
#include "rapport/projections/projection.h"
#include "rapport/state/v1/churn.pb.h"

namespace rapport::projections {

// Churn signals and customer value. Per customer it keeps sufficient
// statistics (churn.proto); for the population, histograms of last-purchase
// day, purchase days and monetary value, updated incrementally, from which
// RFM quintiles are read at query time. Time-dependent figures (recency,
// scores, risk) are computed as of a time given at query time, never stored.
class ChurnProjection final : public Projection {
 public:
  std::string_view Name() const override { return "churn"; }
  int Version() const override { return 1; }

  bool Reads(v1::Envelope::PayloadCase type) const override;

 protected:
  Status DoApply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
                 std::vector<OutboxRecord>& outbox) override;
};

// Named RFM segments, from recency (R) and the mean of frequency and
// monetary scores (FM), each 1-5.
enum class Segment {
  kNoPurchase,
  kChampions,
  kLoyal,
  kPotentialLoyalist,
  kNew,
  kPromising,
  kNeedAttention,
  kAboutToSleep,
  kAtRisk,
  kCannotLose,
  kHibernating,
  kLost,
};
std::string_view SegmentName(Segment segment);
// The segment named `name` ("at risk"; '-' and '_' stand for spaces).
std::optional<Segment> SegmentNamed(std::string_view name);
Segment SegmentFor(int recency_score, int frequency_score, int monetary_score);

struct ChurnAssessment {
  state::v1::ChurnStats stats;
  double recency_days = 0;  // as of T, since the last purchase
  int64_t frequency = 0;    // repeat purchase days
  int r = 0, f = 0, m = 0;  // 1-5; 0 without purchases
  Segment segment = Segment::kNoPurchase;
  int risk = 0;                      // 0-100
  std::vector<std::string> reasons;  // why the risk is what it is
  double mean_gap_days = 0;
  // What the business stands to lose, in the currency of `stats`: the risk
  // (as a probability) times the customer's yearly spend so far (total spend
  // over their tenure, at least one year). A rule-based stand-in until a
  // fitted lifetime-value model replaces it.
  double value_at_risk = 0;
};

struct ChurnPage {
  std::vector<ChurnAssessment> customers;
  std::string next_cursor;  // empty on the last page
};

struct PopulationView {
  std::map<std::string, int64_t> customers_per_segment;
  std::map<std::string, double> top_20_percent_revenue_share;  // per currency
  int64_t customers = 0;
};

// Read-only queries of the churn state.
class ChurnView {
 public:
  ChurnView(ProjectionStore& store, int32_t partition_count);

  // NotFound for a customer the projection has never seen.
  Result<ChurnAssessment> Assess(const std::string& customer_id, int32_t partition, absl::Time as_of);
  // Segments and revenue concentration over every customer, as of T.
  Result<PopulationView> Population(absl::Time as_of);
  // The customers in `segment` as of T, in storage order, `limit` at a time;
  // `cursor` is a previous page's next_cursor. Scans from the cursor: cost
  // grows with the customers skipped over, not with the page.
  Result<ChurnPage> Members(Segment segment, absl::Time as_of, size_t limit, const std::string& cursor);
  // The `limit` customers with the most value at risk as of T, most first
  // (ties by customer id). Scans every customer.
  Result<std::vector<ChurnAssessment>> AtRisk(absl::Time as_of, size_t limit);

  static std::string ToJson(const ChurnAssessment& assessment, absl::Time as_of,
                            events::JsonStyle style = events::JsonStyle::kIndented);
  static std::string ToJson(const PopulationView& population, absl::Time as_of,
                            events::JsonStyle style = events::JsonStyle::kIndented);

 private:
  struct Histograms;
  Status LoadHistograms();
  ChurnAssessment AssessStats(const state::v1::ChurnStats& stats, absl::Time as_of) const;

  ProjectionStore& store_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle>
      family_;  // the live version: held, so a swap cannot pull it away mid-query
  int32_t partition_count_;
  std::shared_ptr<Histograms> histograms_;
};

}  // namespace rapport::projections
