#pragma once

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rapport/events/codec.h"
#include "rapport/projections/lifetime_models.h"
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
  // 2: purchase weeks and first-period spend for the lifetime-value models.
  int Version() const override { return 2; }

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

// The lifetime-value models' figures for one customer as of T (see
// lifetime_models.h and docs/churn-and-value.md).
struct ModelFigures {
  double p_alive = 1;  // 1 for a customer without repeat purchase, by the model's construction
  double expected_purchases_30d = 0, expected_purchases_90d = 0, expected_purchases_365d = 0;
  bool has_order_value = false;     // no spend model for the customer's currency otherwise
  double expected_order_value = 0;  // per purchase period, in major units of the currency
  double clv = 0;                   // over the model's months, discounted
  double clv_if_alive = 0;
  double value_at_risk = 0;  // clv_if_alive - clv = (1 - p_alive) * clv_if_alive
};

struct ChurnAssessment {
  state::v1::ChurnStats stats;
  double recency_days = 0;  // as of T, since the last purchase
  int64_t frequency = 0;    // repeat purchase days
  int r = 0, f = 0, m = 0;  // 1-5; 0 without purchases
  Segment segment = Segment::kNoPurchase;
  int risk = 0;                      // 0-100
  std::vector<std::string> reasons;  // why the risk is what it is
  double mean_gap_days = 0;
  // Set when a model is fitted and the state holds no purchase of the
  // customer after T (the state cannot say what they looked like before it).
  std::optional<ModelFigures> model;
  // What the business stands to lose, in the currency of `stats`: the model's
  // value at risk when there is one; without a fitted model, the rule-based
  // risk (as a probability) times the customer's yearly spend so far.
  double value_at_risk = 0;
};

enum class ModelPeriod { kDay, kWeek };
std::string_view ModelPeriodName(ModelPeriod period);
std::optional<ModelPeriod> ModelPeriodNamed(std::string_view name);

struct ChurnModelOptions {
  ModelPeriod period = ModelPeriod::kDay;
  int clv_months = 12;
  double monthly_discount_rate = 0.01;
  // A currency's spend model needs at least this many repeat customers.
  size_t min_spend_customers = 20;
};

// What the models are fitted on: each buyer's purchase history and, per
// currency, the repeat customers' spend.
struct FitInputs {
  int64_t latest_purchase_ms = 0;
  int64_t later = 0;  // customers with a purchase after the fit's as-of time
  std::vector<PurchaseHistory> histories;
  std::map<std::string, std::vector<RepeatSpend>> spend;
  void Append(const FitInputs& other);
};

// The fitted models stored in `store`; nullopt before the first fit.
Result<std::optional<state::v1::ChurnModel>> LoadChurnModel(ProjectionStore& store);
Status StoreChurnModel(ProjectionStore& store, const state::v1::ChurnModel& model);
// Serialized models from elsewhere (another instance's member record):
// parsed, with a period that is day or week and every fitted parameter a
// positive finite number; otherwise InvalidArgument saying what is wrong.
Result<state::v1::ChurnModel> ParseChurnModel(std::string_view bytes);

struct ChurnPage {
  std::vector<ChurnAssessment> customers;
  std::vector<std::string> cursors;  // each customer's: a page resumed there starts after it
  std::string next_cursor;           // empty on the last page
};

struct AtRiskList {
  std::string currency;  // the currency ranked (the one asked for, or the most common)
  std::vector<ChurnAssessment> customers;
  std::map<std::string, int64_t> customers_per_currency;  // customers with purchases, by the currency they pay in
};

struct PopulationView {
  std::map<std::string, int64_t> customers_per_segment;
  std::map<std::string, double> top_20_percent_revenue_share;  // per currency
  int64_t customers = 0;
};

// How many customers the top 20% of `customers` is (rounded up).
inline size_t TopFifth(size_t customers) { return (customers + 4) / 5; }

// What a PopulationView is made of, for some partitions: counts and the
// largest spends, which add up exactly across instances (the top 20% of
// every customer are among the top 20% of each part's, or fewer).
struct PopulationTally {
  struct Revenue {
    int64_t customers = 0;
    int64_t total_minor = 0;
    std::vector<int64_t> largest_minor;  // each customer's spend, largest first, at most the values kept
    void Keep(size_t values);
  };
  std::map<std::string, int64_t> customers_per_segment;
  std::map<std::string, Revenue> revenue;  // per currency
  int64_t customers = 0;
  // Adds `other`'s, keeping the `revenue_values` largest spends per currency.
  void Add(const PopulationTally& other, size_t revenue_values);
  // The spends per currency its top 20% needs (TopFifth of the most customers).
  size_t ValuesNeeded() const;
};

// The currency most of these customers pay in (ties: the first code in
// alphabetical order); empty when there are none.
std::string MostCommonCurrency(const std::map<std::string, int64_t>& customers_per_currency);

// The recency, frequency and spend histograms R, F and M are scored against
// (each customer's quintile among every customer). Each partition keeps its
// own, so they add up: several instances sum what each applies.
struct ChurnHistograms {
  std::map<int32_t, int64_t> last_purchase_day;
  std::map<int32_t, int64_t> purchase_days;
  std::map<std::string, std::map<int32_t, int64_t>> monetary;
  int64_t buyers = 0;
  void Add(const ChurnHistograms& other);
};

// Read-only queries of the churn state.
class ChurnView {
 public:
  ChurnView(ProjectionStore& store, int32_t partition_count);

  // NotFound for a customer the projection has never seen.
  Result<ChurnAssessment> Assess(const std::string& customer_id, absl::Time as_of);
  // Segments and revenue concentration over every customer, as of T; `in`:
  // only the customers of the partitions it accepts (null: all).
  Result<PopulationView> Population(absl::Time as_of, const std::function<bool(int32_t)>& in = nullptr);
  // Population's parts for the partitions `in` accepts, keeping the
  // `revenue_values` largest spends per currency; Summarize of the parts'
  // sum (PopulationTally::Add) is the population of them all.
  Result<PopulationTally> Tally(absl::Time as_of, const std::function<bool(int32_t)>& in, size_t revenue_values);
  static PopulationView Summarize(const PopulationTally& tally);
  // The histograms of the partitions `in` accepts (null: all).
  Result<ChurnHistograms> HistogramsOf(const std::function<bool(int32_t)>& in);
  // Scores R, F and M against `histograms` (every partition's, gathered
  // from the instances that apply them) instead of this store's.
  void UseHistograms(ChurnHistograms histograms);
  // The customers in `segment` as of T, in storage order, `limit` at a time;
  // `cursor` is a previous page's next_cursor. Scans from the cursor: cost
  // grows with the customers skipped over, not with the page. `in`: only
  // the partitions it accepts (null: all).
  Result<ChurnPage> Members(Segment segment, absl::Time as_of, size_t limit, const std::string& cursor,
                            const std::function<bool(int32_t)>& in = nullptr);
  // The `limit` customers with the most value at risk as of T, most first
  // (ties by customer id), among the customers who pay in `currency`: values
  // in different currencies are not comparable. An empty `currency` means the
  // currency most customers pay in. Scans every customer; computes model
  // figures only for the customers of the currency ranked, or of every
  // currency when none is given. `in`: only the partitions it accepts.
  Result<AtRiskList> AtRisk(absl::Time as_of, size_t limit, const std::string& currency = "",
                            const std::function<bool(int32_t)>& in = nullptr);

  // Fits BG/NBD over every customer with a purchase by T and a Gamma-Gamma
  // spend model per currency over its repeat customers. `as_of` =
  // InfiniteFuture means now, or the latest purchase in the state if later.
  // FailedPrecondition when the state holds purchases after T: replay until
  // T first (`rapport replay --until T`) to fit on the past.
  Result<state::v1::ChurnModel> Fit(absl::Time as_of, const ChurnModelOptions& options);
  // What Fit reads as of `as_of_ms` (unix ms), from the partitions `in`
  // accepts (null: all), in storage order: several instances fit on the
  // inputs of every partition, appended in partition order, and get a single
  // instance's models. `latest_only`: only latest_purchase_ms.
  Result<FitInputs> FitInputsOf(int64_t as_of_ms, ModelPeriod period, const std::function<bool(int32_t)>& in,
                                const rocksdb::Snapshot* snapshot = nullptr, bool latest_only = false);
  static Result<state::v1::ChurnModel> FitOn(const FitInputs& inputs, int64_t as_of_ms,
                                             const ChurnModelOptions& options);

  static std::string ToJson(const state::v1::ChurnModel& model, events::JsonStyle style = events::JsonStyle::kIndented);
  static std::string ToJson(const ChurnAssessment& assessment, absl::Time as_of,
                            events::JsonStyle style = events::JsonStyle::kIndented);
  static std::string ToJson(const PopulationView& population, absl::Time as_of,
                            events::JsonStyle style = events::JsonStyle::kIndented);

 private:
  Status LoadHistograms();
  Status LoadModel();
  // The live churn state is the one the models read (not a version being built).
  Status CheckFittable() const;
  // The rules' figures, and with `with_model` the fitted models' too (the
  // costly part: about fifteen hypergeometric series per customer).
  ChurnAssessment AssessStats(const state::v1::ChurnStats& stats, absl::Time as_of, bool with_model = true) const;
  // Adds the models' figures and value at risk to `a`, when a model is stored
  // and the state holds no purchase of the customer after T.
  void AddModelFigures(ChurnAssessment& a, int64_t as_of_ms) const;

  ProjectionStore& store_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle>
      family_;  // the live version: held, so a swap cannot pull it away mid-query
  int32_t partition_count_;
  std::shared_ptr<ChurnHistograms> histograms_;
  bool model_loaded_ = false;
  std::optional<state::v1::ChurnModel> model_;
  ModelPeriod model_period_ = ModelPeriod::kDay;
};

}  // namespace rapport::projections
