// ChurnView: the churn projection's state read back: a customer's RFM
// segment, probability alive and value as of any time, the population's
// segments and revenue concentration, the customers most at risk, and the
// fit of the BG/NBD and Gamma-Gamma models.
#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "churn_state.h"
#include "google/protobuf/struct.pb.h"
#include "rapport/events/codec.h"
#include "rapport/events/money.h"
#include "rapport/events/time_text.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/keys.h"
#include "rapport/projections/lifetime_models.h"

namespace rapport::projections {

namespace pb = google::protobuf;
using state::v1::ChurnStats;
// The layout this file reads (churn_state.h).
using churn_state::CustomerKey;
using churn_state::Day;
using churn_state::FrequencyBucket;
using churn_state::kDayMs;
using churn_state::MonetaryBucket;
using churn_state::Week;

void ChurnHistograms::Add(const ChurnHistograms& other) {
  for (const auto& [day, count] : other.last_purchase_day) last_purchase_day[day] += count;
  for (const auto& [bucket, count] : other.purchase_days) purchase_days[bucket] += count;
  for (const auto& [currency, histogram] : other.monetary) {
    for (const auto& [bucket, count] : histogram) monetary[currency][bucket] += count;
  }
  buyers += other.buyers;
}

namespace {

// 1-5 from the customer's mid-rank among the population: the share strictly
// below, plus half the ties.
int Quintile(const std::map<int32_t, int64_t>& histogram, int32_t value) {
  int64_t below = 0, equal = 0, total = 0;
  for (const auto& [bucket, count] : histogram) {
    total += count;
    if (bucket < value) below += count;
    if (bucket == value) equal += count;
  }
  if (total == 0) return 3;
  double rank = (static_cast<double>(below) + 0.5 * static_cast<double>(equal)) / static_cast<double>(total);
  return 1 + std::min(4, static_cast<int>(rank * 5));
}

constexpr char kModelKey[] = "model/churn";

int32_t PeriodOf(int32_t day, ModelPeriod period) { return period == ModelPeriod::kDay ? day : Week(day); }
double Scale(const std::string& currency) { return std::pow(10.0, events::CurrencyMinorDigits(currency).value_or(2)); }

// A customer's history in the models' conventions as of `as_of_ms`: nullopt
// without a purchase by then; `later` set when the state holds one after it.
std::optional<PurchaseHistory> HistoryAsOf(const ChurnStats& s, int64_t as_of_ms, ModelPeriod period, bool& later) {
  later = false;
  if (s.purchases() == 0 || s.first_purchase_ms() > as_of_ms) return std::nullopt;
  if (s.last_purchase_ms() > as_of_ms) {
    later = true;
    return std::nullopt;
  }
  const int32_t first = PeriodOf(Day(s.first_purchase_ms()), period);
  const int64_t periods = period == ModelPeriod::kDay ? s.purchase_days() : s.purchase_weeks();
  return PurchaseHistory{.frequency = static_cast<double>(std::max<int64_t>(periods - 1, 0)),
                         .recency = static_cast<double>(PeriodOf(Day(s.last_purchase_ms()), period) - first),
                         .age = static_cast<double>(PeriodOf(Day(as_of_ms), period) - first)};
}

// Mean value of the repeat purchase periods (the first left out), in major units; 0 without any.
double MeanRepeatValue(const ChurnStats& s, const PurchaseHistory& h, ModelPeriod period) {
  if (h.frequency <= 0) return 0;
  const int64_t first = period == ModelPeriod::kDay ? s.first_day_minor() : s.first_week_minor();
  return static_cast<double>(s.purchase_minor() - first) / Scale(s.currency()) / h.frequency;
}

BgNbdParameters PurchaseModel(const state::v1::ChurnModel& m) {
  return {m.purchases().r(), m.purchases().alpha(), m.purchases().a(), m.purchases().b()};
}

}  // namespace

std::string_view ModelPeriodName(ModelPeriod period) { return period == ModelPeriod::kDay ? "day" : "week"; }

std::optional<ModelPeriod> ModelPeriodNamed(std::string_view name) {
  if (name == "day") return ModelPeriod::kDay;
  if (name == "week") return ModelPeriod::kWeek;
  return std::nullopt;
}

Result<std::optional<state::v1::ChurnModel>> LoadChurnModel(ProjectionStore& store) {
  auto bytes = store.Get(store.db()->DefaultColumnFamily(), kModelKey);
  if (!bytes.ok()) {
    if (bytes.status().code() == absl::StatusCode::kNotFound) return std::nullopt;
    return bytes.status();
  }
  state::v1::ChurnModel model;
  if (!model.ParseFromString(*bytes)) return absl::InternalError("the stored churn model does not parse");
  return model;
}

Status StoreChurnModel(ProjectionStore& store, const state::v1::ChurnModel& model) {
  rocksdb::WriteBatch batch;
  batch.Put(store.db()->DefaultColumnFamily(), kModelKey, events::EncodeDeterministic(model)).PermitUncheckedError();
  return store.Write(batch);
}

Result<state::v1::ChurnModel> ParseChurnModel(std::string_view bytes) {
  state::v1::ChurnModel model;
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError("the churn models do not parse");
  }
  if (!ModelPeriodNamed(model.period())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the churn models' period \"", model.period(), "\" is neither day nor week"));
  }
  auto check = [](const std::string& name, double x) -> Status {
    if (std::isfinite(x) && x > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("the churn models' ", name, " is ", x, ", not a positive number"));
  };
  const auto& bg = model.purchases();
  RETURN_IF_ERROR(check("BG/NBD r", bg.r()));
  RETURN_IF_ERROR(check("BG/NBD alpha", bg.alpha()));
  RETURN_IF_ERROR(check("BG/NBD a", bg.a()));
  RETURN_IF_ERROR(check("BG/NBD b", bg.b()));
  for (const auto& spend : model.spend()) {
    const std::string of = absl::StrCat("Gamma-Gamma (", spend.currency(), ") ");
    RETURN_IF_ERROR(check(of + "p", spend.p()));
    RETURN_IF_ERROR(check(of + "q", spend.q()));
    RETURN_IF_ERROR(check(of + "v", spend.v()));
  }
  return model;
}

ChurnView::ChurnView(ProjectionStore& store, int32_t partition_count)
    : store_(store), family_(store.ServingFamily(ChurnProjection().Family())), partition_count_(partition_count) {}

Status ChurnView::LoadModel() {
  if (model_loaded_) return absl::OkStatus();
  model_loaded_ = true;
  // State of an older churn version (served while the current one is built)
  // lacks what the models read: no model figures until the swap.
  if (family_ == nullptr || family_->GetName() != ChurnProjection().Family()) return absl::OkStatus();
  ASSIGN_OR_RETURN(model_, LoadChurnModel(store_));
  if (model_) {
    auto period = ModelPeriodNamed(model_->period());
    if (!period)
      return absl::InternalError(absl::StrCat("the stored churn model's period \"", model_->period(),
                                              "\" is neither day nor week; the store is damaged"));
    model_period_ = *period;
  }
  return absl::OkStatus();
}

Status ChurnView::LoadHistograms() {
  RETURN_IF_ERROR(LoadModel());
  if (histograms_) return absl::OkStatus();
  ASSIGN_OR_RETURN(ChurnHistograms h, HistogramsOf(nullptr));
  histograms_ = std::make_shared<ChurnHistograms>(std::move(h));
  return absl::OkStatus();
}

void ChurnView::UseHistograms(ChurnHistograms histograms) {
  histograms_ = std::make_shared<ChurnHistograms>(std::move(histograms));
}

Result<ChurnHistograms> ChurnView::HistogramsOf(const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("churn");
  ChurnHistograms h;
  for (int32_t p = 0; p < partition_count_; ++p) {
    if (in && !in(p)) continue;
    for (char kind : {'r', 'f', 'm'}) {
      const std::string prefix = PartitionKey(p, kind);
      RETURN_IF_ERROR(
          store_.Scan(family_.get(), prefix, [&](std::string_view key, std::string_view value) -> Result<bool> {
            std::string_view rest = key.substr(prefix.size());
            if (value.size() != 8 || rest.size() < 4)
              return absl::InternalError("churn: a stored histogram entry is damaged");
            int64_t count = static_cast<int64_t>(ReadU64(value));
            if (kind == 'm') {
              std::string currency(rest.substr(0, rest.size() - 4));
              h.monetary[currency][static_cast<int32_t>(ReadU32(rest.substr(rest.size() - 4)))] += count;
            } else {
              auto& target = kind == 'r' ? h.last_purchase_day : h.purchase_days;
              target[static_cast<int32_t>(ReadU32(rest))] += count;
              if (kind == 'r') h.buyers += count;
            }
            return true;
          }));
    }
  }
  return h;
}

ChurnAssessment ChurnView::AssessStats(const ChurnStats& s, absl::Time as_of, bool with_model) const {
  ChurnAssessment a;
  a.stats = s;
  const int64_t now = absl::ToUnixMillis(as_of);
  const double day = static_cast<double>(kDayMs);
  int risk = 0;
  if (s.purchases() > 0) {
    a.recency_days = std::max(0.0, static_cast<double>(now - s.last_purchase_ms()) / day);
    a.frequency = s.purchase_days() - 1;
    a.r = Quintile(histograms_->last_purchase_day, Day(s.last_purchase_ms()));
    a.f = Quintile(histograms_->purchase_days, FrequencyBucket(s.purchase_days()));
    auto currency = histograms_->monetary.find(s.currency());
    a.m = currency == histograms_->monetary.end() ? 3 : Quintile(currency->second, MonetaryBucket(s.monetary_minor()));
    a.segment = SegmentFor(a.r, a.f, a.m);
    if (s.gaps() > 0) a.mean_gap_days = static_cast<double>(s.gap_days_sum()) / static_cast<double>(s.gaps());
    if (s.gaps() > 0 && a.recency_days > 14 && a.recency_days > 2 * a.mean_gap_days) {
      risk += 40;
      a.reasons.push_back(
          absl::StrFormat("overdue: %.0f days since the last purchase, %.1f times the usual gap of %.0f days",
                          std::floor(a.recency_days), a.recency_days / a.mean_gap_days, a.mean_gap_days));
    }
    if (s.purchase_days() == 1 && a.recency_days > 90) {
      risk += 30;
      a.reasons.push_back(absl::StrFormat("no repeat purchase in %.0f days", std::floor(a.recency_days)));
    }
    int32_t today = Day(now);
    int recent = 0, before = 0;
    for (int32_t d : s.recent_days()) {
      if (d > today - 90 && d <= today) ++recent;
      if (d > today - 180 && d <= today - 90) ++before;
    }
    if (before >= 2 && recent * 2 < before) {
      risk += 20;
      a.reasons.push_back(absl::StrFormat(
          "falling frequency: %d purchase days in the last 90 days, %d in the 90 before", recent, before));
    }
  }
  if (s.open_cases_size() > 0) {
    int64_t oldest = *std::min_element(s.open_case_since_ms().begin(), s.open_case_since_ms().end());
    double age = static_cast<double>(now - oldest) / day;
    risk += age > 7 ? 30 : 20;
    a.reasons.push_back(absl::StrFormat("%d unresolved complaint%s, the oldest %.0f days old", s.open_cases_size(),
                                        s.open_cases_size() == 1 ? "" : "s", std::floor(age)));
  }
  std::vector<std::string> low;
  if (s.has_nps() && s.last_nps() <= 6) low.push_back(absl::StrCat("NPS ", s.last_nps()));
  if (s.last_service_satisfaction() != 0 && s.last_service_satisfaction() <= v1::SATISFACTION_DISSATISFIED) {
    low.push_back("a dissatisfied service rating");
  }
  if (s.last_review_rating() != 0 && s.last_review_rating() <= 2) {
    low.push_back(absl::StrCat("a review of ", s.last_review_rating(), "/5"));
  }
  if (!low.empty()) {
    risk += 20;
    std::string list;
    for (size_t i = 0; i < low.size(); ++i) absl::StrAppend(&list, i ? ", " : "", low[i]);
    a.reasons.push_back("low satisfaction: " + list);
  }
  a.risk = std::min(risk, 100);
  if (s.purchases() > 0 && s.monetary_minor() > 0) {  // the rules' value at risk, until a model gives one
    const double tenure_years = std::max(1.0, static_cast<double>(now - s.first_purchase_ms()) / (365.25 * day));
    a.value_at_risk = a.risk / 100.0 * static_cast<double>(s.monetary_minor()) / Scale(s.currency()) / tenure_years;
  }
  if (with_model) AddModelFigures(a, now);
  return a;
}

void ChurnView::AddModelFigures(ChurnAssessment& a, int64_t as_of_ms) const {
  if (!model_) return;
  const ChurnStats& s = a.stats;
  bool later = false;
  auto history = HistoryAsOf(s, as_of_ms, model_period_, later);
  if (!history) return;
  const double periods_per_day = model_period_ == ModelPeriod::kDay ? 1.0 : 1.0 / 7;
  const double periods_per_month = model_period_ == ModelPeriod::kDay ? 30 : 4.345;  // as lifetimes counts a month
  const BgNbdParameters purchases = PurchaseModel(*model_);
  ModelFigures m;
  m.p_alive = ProbabilityAlive(purchases, *history);
  m.expected_purchases_30d = ExpectedPurchases(purchases, *history, 30 * periods_per_day);
  m.expected_purchases_90d = ExpectedPurchases(purchases, *history, 90 * periods_per_day);
  m.expected_purchases_365d = ExpectedPurchases(purchases, *history, 365 * periods_per_day);
  const double mean_value = MeanRepeatValue(s, *history, model_period_);
  for (const auto& spend : model_->spend()) {
    if (spend.currency() != s.currency()) continue;
    m.expected_order_value = ExpectedOrderValue({spend.p(), spend.q(), spend.v()}, history->frequency, mean_value);
    m.has_order_value = std::isfinite(m.expected_order_value);
  }
  if (m.has_order_value) {
    m.clv_if_alive = LifetimeValue(purchases, *history, m.expected_order_value, model_->clv_months(),
                                   model_->monthly_discount_rate(), periods_per_month, true);
    m.clv = m.p_alive * m.clv_if_alive;
    m.value_at_risk = m.clv_if_alive - m.clv;
  }
  // A figure the models cannot give (parameters far outside the range they
  // were fitted for) leaves the model out rather than print NaN.
  const bool finite = std::isfinite(m.p_alive) && std::isfinite(m.expected_purchases_30d) &&
                      std::isfinite(m.expected_purchases_90d) && std::isfinite(m.expected_purchases_365d) &&
                      (!m.has_order_value || (std::isfinite(m.clv) && std::isfinite(m.value_at_risk)));
  if (!finite) return;
  a.model = m;
  if (m.has_order_value) a.value_at_risk = m.value_at_risk;
}

Result<ChurnAssessment> ChurnView::Assess(const std::string& customer_id, absl::Time as_of) {
  if (family_ == nullptr) return NoLiveState("churn");
  auto bytes =
      store_.Get(family_.get(), CustomerKey(kafka::PartitionForKey(customer_id, partition_count_), customer_id));
  if (!bytes.ok()) {
    if (bytes.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat("no churn signals for ", customer_id, " (no purchase, complaint, rating or survey yet)"));
    }
    return bytes.status();
  }
  ChurnStats stats;
  if (!stats.ParseFromString(*bytes)) return absl::InternalError("churn: stored statistics do not parse");
  RETURN_IF_ERROR(LoadHistograms());
  return AssessStats(stats, as_of);
}

Result<PopulationView> ChurnView::Population(absl::Time as_of, const std::function<bool(int32_t)>& in) {
  ASSIGN_OR_RETURN(PopulationTally tally, Tally(as_of, in, std::numeric_limits<size_t>::max()));
  return Summarize(tally);
}

Result<PopulationTally> ChurnView::Tally(absl::Time as_of, const std::function<bool(int32_t)>& in,
                                         size_t revenue_values) {
  if (family_ == nullptr) return NoLiveState("churn");
  RETURN_IF_ERROR(LoadHistograms());
  PopulationTally tally;
  for (int32_t p = 0; p < partition_count_; ++p) {
    if (in && !in(p)) continue;
    RETURN_IF_ERROR(
        store_.Scan(family_.get(), PartitionKey(p, 'c'), [&](std::string_view, std::string_view value) -> Result<bool> {
          ChurnStats stats;
          if (!stats.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;  // as AtRisk: skipped
          ChurnAssessment a = AssessStats(stats, as_of, /*with_model=*/false);
          ++tally.customers_per_segment[std::string(SegmentName(a.segment))];
          ++tally.customers;
          if (stats.purchases() > 0) {
            PopulationTally::Revenue& revenue = tally.revenue[stats.currency()];
            const int64_t spent = std::max<int64_t>(0, stats.monetary_minor());
            ++revenue.customers;
            revenue.total_minor += spent;
            revenue.largest_minor.push_back(spent);
          }
          return true;
        }));
  }
  for (auto& [currency, revenue] : tally.revenue) revenue.Keep(revenue_values);
  return tally;
}

void PopulationTally::Revenue::Keep(size_t values) {
  std::sort(largest_minor.rbegin(), largest_minor.rend());
  if (largest_minor.size() > values) largest_minor.resize(values);
}

void PopulationTally::Add(const PopulationTally& other, size_t revenue_values) {
  customers += other.customers;
  for (const auto& [name, n] : other.customers_per_segment) customers_per_segment[name] += n;
  for (const auto& [currency, theirs] : other.revenue) {
    Revenue& mine = revenue[currency];
    mine.customers += theirs.customers;
    mine.total_minor += theirs.total_minor;
    mine.largest_minor.insert(mine.largest_minor.end(), theirs.largest_minor.begin(), theirs.largest_minor.end());
    mine.Keep(revenue_values);
  }
}

size_t PopulationTally::ValuesNeeded() const {
  size_t most = 0;
  for (const auto& [currency, r] : revenue) most = std::max(most, TopFifth(static_cast<size_t>(r.customers)));
  return most;
}

PopulationView ChurnView::Summarize(const PopulationTally& tally) {
  PopulationView view;
  view.customers = tally.customers;
  view.customers_per_segment = tally.customers_per_segment;
  for (const auto& [currency, revenue] : tally.revenue) {
    const size_t top = std::min(TopFifth(static_cast<size_t>(revenue.customers)), revenue.largest_minor.size());
    int64_t top_sum = 0;
    for (size_t i = 0; i < top; ++i) top_sum += revenue.largest_minor[i];
    view.top_20_percent_revenue_share[currency] =
        revenue.total_minor > 0 ? static_cast<double>(top_sum) / static_cast<double>(revenue.total_minor) : 0;
  }
  return view;
}

Result<ChurnPage> ChurnView::Members(Segment segment, absl::Time as_of, size_t limit, const std::string& cursor,
                                     const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("churn");
  RETURN_IF_ERROR(LoadHistograms());
  ChurnPage page;
  ASSIGN_OR_RETURN(page.next_cursor, ScanPage(
                                         store_, family_.get(), partition_count_, 'c', cursor, limit,
                                         [&](const rocksdb::Slice& value, bool keep) -> Result<bool> {
                                           ChurnStats stats;
                                           if (!stats.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                                             return absl::InternalError("churn: stored statistics do not parse");
                                           }
                                           ChurnAssessment a = AssessStats(stats, as_of, /*with_model=*/false);
                                           if (a.segment != segment) return false;
                                           if (keep) {
                                             AddModelFigures(
                                                 a, absl::ToUnixMillis(as_of));  // for the page's customers only
                                             page.customers.push_back(std::move(a));
                                           }
                                           return true;
                                         },
                                         in, &page.cursors));
  return page;
}

std::string MostCommonCurrency(const std::map<std::string, int64_t>& customers_per_currency) {
  std::string chosen;
  int64_t most = 0;
  for (const auto& [code, customers] : customers_per_currency) {
    if (customers > most) most = customers, chosen = code;  // ties: the first code in order
  }
  return chosen;
}

Result<AtRiskList> ChurnView::AtRisk(absl::Time as_of, size_t limit, const std::string& currency,
                                     const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("churn");
  RETURN_IF_ERROR(LoadHistograms());
  auto before = [](const ChurnAssessment& x, const ChurnAssessment& y) {
    if (x.value_at_risk != y.value_at_risk) return x.value_at_risk > y.value_at_risk;
    return x.stats.customer_id() < y.stats.customer_id();
  };
  // One heap per currency (its front is the least of its best `limit`), so
  // that the most common currency can be chosen after the single scan.
  std::map<std::string, std::vector<ChurnAssessment>> top;
  AtRiskList list;
  std::unique_ptr<rocksdb::Iterator> it(store_.db()->NewIterator(rocksdb::ReadOptions(), family_.get()));
  for (int32_t p = 0; p < partition_count_ && limit > 0; ++p) {
    if (in && !in(p)) continue;
    std::string prefix = PartitionKey(p, 'c');
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      ChurnStats stats;
      if (!stats.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
      if (stats.purchases() == 0) continue;
      ++list.customers_per_currency[stats.currency()];
      if (!currency.empty() && stats.currency() != currency) continue;  // not assessed: no model figures
      ChurnAssessment a = AssessStats(stats, as_of);
      if (a.value_at_risk <= 0) continue;
      std::vector<ChurnAssessment>& heap = top[stats.currency()];
      if (heap.size() < limit) {
        heap.push_back(std::move(a));
        std::push_heap(heap.begin(), heap.end(), before);
      } else if (before(a, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), before);
        heap.back() = std::move(a);
        std::push_heap(heap.begin(), heap.end(), before);
      }
    }
    RETURN_IF_ERROR(StoreStatus(it->status(), "scanning churn state"));
  }
  list.currency = currency.empty() ? MostCommonCurrency(list.customers_per_currency) : currency;
  list.customers = std::move(top[list.currency]);
  std::sort(list.customers.begin(), list.customers.end(), before);
  return list;
}

Result<state::v1::ChurnModel> ChurnView::Fit(absl::Time as_of, const ChurnModelOptions& options) {
  RETURN_IF_ERROR(CheckFittable());
  // Both scans of a fit read one snapshot, so they see the same state even
  // while `rapport run` writes.
  const auto snapshot = store_.Snapshot();
  int64_t as_of_ms = absl::ToUnixMillis(as_of);
  if (as_of == absl::InfiniteFuture()) {  // now, or the latest purchase if later (clocks differ)
    ASSIGN_OR_RETURN(auto latest, FitInputsOf(std::numeric_limits<int64_t>::max(), options.period, nullptr,
                                              snapshot.get(), /*latest_only=*/true));
    as_of_ms = std::max(absl::ToUnixMillis(absl::Now()), latest.latest_purchase_ms);
  }
  ASSIGN_OR_RETURN(auto inputs, FitInputsOf(as_of_ms, options.period, nullptr, snapshot.get()));
  return FitOn(inputs, as_of_ms, options);
}

Status ChurnView::CheckFittable() const {
  if (family_ == nullptr) return NoLiveState("churn");
  if (family_->GetName() != ChurnProjection().Family()) {
    return absl::FailedPreconditionError(absl::StrCat("the live churn state is ", family_->GetName(), "; ",
                                                      ChurnProjection().Family(),
                                                      ", which the models read, is still being built from the log"));
  }
  return absl::OkStatus();
}

void FitInputs::Append(const FitInputs& other) {
  latest_purchase_ms = std::max(latest_purchase_ms, other.latest_purchase_ms);
  later += other.later;
  histories.insert(histories.end(), other.histories.begin(), other.histories.end());
  for (const auto& [currency, repeat] : other.spend) {
    auto& mine = spend[currency];
    mine.insert(mine.end(), repeat.begin(), repeat.end());
  }
}

Result<FitInputs> ChurnView::FitInputsOf(int64_t as_of_ms, ModelPeriod period, const std::function<bool(int32_t)>& in,
                                         const rocksdb::Snapshot* snapshot, bool latest_only) {
  RETURN_IF_ERROR(CheckFittable());
  FitInputs inputs;
  ChurnStats stats;
  for (int32_t p = 0; p < partition_count_; ++p) {
    if (in && !in(p)) continue;
    RETURN_IF_ERROR(store_.Scan(
        family_.get(), PartitionKey(p, 'c'),
        [&](std::string_view, std::string_view value) -> Result<bool> {
          if (!stats.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            return absl::InternalError("churn: stored statistics do not parse");
          }
          if (stats.purchases() == 0) return true;
          inputs.latest_purchase_ms = std::max(inputs.latest_purchase_ms, stats.last_purchase_ms());
          if (latest_only) return true;
          bool after = false;
          auto history = HistoryAsOf(stats, as_of_ms, period, after);
          inputs.later += after;
          if (!history) return true;
          inputs.histories.push_back(*history);
          const double mean = MeanRepeatValue(stats, *history, period);
          if (history->frequency > 0 && mean > 0) inputs.spend[stats.currency()].push_back({history->frequency, mean});
          return true;
        },
        {}, snapshot));
  }
  return inputs;
}

Result<state::v1::ChurnModel> ChurnView::FitOn(const FitInputs& inputs, int64_t as_of_ms,
                                               const ChurnModelOptions& options) {
  if (inputs.later > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        inputs.later, " customers have purchases after ", events::FormatTime(absl::FromUnixMillis(as_of_ms)),
        " (the latest at ", events::FormatTime(absl::FromUnixMillis(inputs.latest_purchase_ms)),
        "): the state is later than --as-of. Build the state as of that time first with `rapport replay "
        "--projection churn --until T --into DIR`, then fit with --data-dir DIR"));
  }
  if (inputs.histories.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no customer had made a purchase by ", events::FormatTime(absl::FromUnixMillis(as_of_ms))));
  }
  state::v1::ChurnModel model;
  model.set_period(std::string(ModelPeriodName(options.period)));
  model.set_as_of_ms(as_of_ms);
  model.set_clv_months(options.clv_months);
  model.set_monthly_discount_rate(options.monthly_discount_rate);
  FitReport report;
  ASSIGN_OR_RETURN(BgNbdParameters purchases, FitBgNbd(inputs.histories, &report));
  auto& bg = *model.mutable_purchases();
  bg.set_r(purchases.r);
  bg.set_alpha(purchases.alpha);
  bg.set_a(purchases.a);
  bg.set_b(purchases.b);
  bg.set_log_likelihood(report.log_likelihood);
  bg.set_customers(static_cast<int64_t>(report.customers));
  bg.set_iterations(report.iterations);
  for (const auto& [currency, repeat] : inputs.spend) {
    if (repeat.size() < options.min_spend_customers) continue;
    auto fitted = FitGammaGamma(repeat, &report);
    if (!fitted.ok()) continue;  // e.g. no finite optimum: the currency falls back to each customer's own mean
    auto& gg = *model.add_spend();
    gg.set_currency(currency);
    gg.set_p(fitted->p);
    gg.set_q(fitted->q);
    gg.set_v(fitted->v);
    gg.set_log_likelihood(report.log_likelihood);
    gg.set_customers(static_cast<int64_t>(report.customers));
    gg.set_iterations(report.iterations);
  }
  return model;
}

std::string ChurnView::ToJson(const state::v1::ChurnModel& model, events::JsonStyle style) {
  return events::ToJsonDeterministic(model, style);
}

std::string ChurnView::ToJson(const ChurnAssessment& a, absl::Time as_of, events::JsonStyle style) {
  pb::Struct out;
  auto& f = *out.mutable_fields();
  const auto& s = a.stats;
  auto time = [](int64_t ms) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
  };
  f["customer_id"].set_string_value(s.customer_id());
  f["as_of"].set_string_value(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", as_of, absl::UTCTimeZone()));
  f["purchases"].set_number_value(static_cast<double>(s.purchases()));
  if (s.purchases() > 0) {
    f["first_purchase"].set_string_value(time(s.first_purchase_ms()));
    f["last_purchase"].set_string_value(time(s.last_purchase_ms()));
    f["recency_days"].set_number_value(std::floor(a.recency_days * 10) / 10);
    f["frequency"].set_number_value(static_cast<double>(a.frequency));
    int digits = events::CurrencyMinorDigits(s.currency()).value_or(2);
    double scale = std::pow(10.0, digits);
    auto& m = *f["monetary"].mutable_struct_value()->mutable_fields();
    m["currency"].set_string_value(s.currency());
    m["total"].set_string_value(absl::StrFormat("%.*f", digits, static_cast<double>(s.monetary_minor()) / scale));
    if (s.monetary_purchases() > 0) {
      m["average"].set_string_value(absl::StrFormat(
          "%.*f", digits,
          static_cast<double>(s.monetary_minor()) / scale / static_cast<double>(s.monetary_purchases())));
    }
    auto& rfm = *f["rfm"].mutable_struct_value()->mutable_fields();
    rfm["r"].set_number_value(a.r);
    rfm["f"].set_number_value(a.f);
    rfm["m"].set_number_value(a.m);
    if (a.mean_gap_days > 0) f["mean_gap_days"].set_number_value(std::round(a.mean_gap_days * 10) / 10);
  }
  f["segment"].set_string_value(std::string(SegmentName(a.segment)));
  f["risk"].set_number_value(a.risk);
  if (s.purchases() > 0) {
    int digits = events::CurrencyMinorDigits(s.currency()).value_or(2);
    auto money = [&](pb::Value& into, double amount) -> google::protobuf::Map<std::string, pb::Value>& {
      auto& fields = *into.mutable_struct_value()->mutable_fields();
      fields["currency"].set_string_value(s.currency());
      fields["amount"].set_string_value(absl::StrFormat("%.*f", digits, amount));
      return fields;
    };
    auto round = [](double x, double unit) { return std::round(x / unit) * unit; };
    const bool modelled_value = a.model && a.model->has_order_value;
    money(f["value_at_risk"], a.value_at_risk)["basis"].set_string_value(modelled_value ? "model" : "rules");
    if (a.model) {
      const auto& m = *a.model;
      f["p_alive"].set_number_value(round(m.p_alive, 1e-6));
      auto& expected = *f["expected_purchases"].mutable_struct_value()->mutable_fields();
      expected["30d"].set_number_value(round(m.expected_purchases_30d, 1e-4));
      expected["90d"].set_number_value(round(m.expected_purchases_90d, 1e-4));
      expected["365d"].set_number_value(round(m.expected_purchases_365d, 1e-4));
      if (m.has_order_value) {
        money(f["expected_order_value"], m.expected_order_value);
        money(f["clv"], m.clv);
      }
    }
  }
  auto* reasons = f["reasons"].mutable_list_value();
  for (const auto& r : a.reasons) reasons->add_values()->set_string_value(r);
  f["open_complaints"].set_number_value(s.open_cases_size());
  return events::ToJsonDeterministic(out, style);
}

std::string ChurnView::ToJson(const PopulationView& v, absl::Time as_of, events::JsonStyle style) {
  pb::Struct out;
  auto& f = *out.mutable_fields();
  f["as_of"].set_string_value(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", as_of, absl::UTCTimeZone()));
  f["customers"].set_number_value(static_cast<double>(v.customers));
  auto& segments = *f["segments"].mutable_struct_value()->mutable_fields();
  for (const auto& [name, count] : v.customers_per_segment) segments[name].set_number_value(static_cast<double>(count));
  auto& pareto = *f["top_20_percent_revenue_share"].mutable_struct_value()->mutable_fields();
  for (const auto& [currency, share] : v.top_20_percent_revenue_share) {
    pareto[currency].set_number_value(std::round(share * 1000) / 1000);
  }
  return events::ToJsonDeterministic(out, style);
}

}  // namespace rapport::projections
