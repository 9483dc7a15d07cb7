#include "rapport/projections/reviews.h"

#include <algorithm>
#include <queue>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "rapport/events/codec.h"
#include "rapport/events/time_text.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/keys.h"

namespace rapport::projections {
namespace {

namespace pb = google::protobuf;
using state::v1::RatingTotals;
using state::v1::ReviewRecord;

using events::kDayMs;

std::string Subject(v1::SubjectType type, const std::string& id) {
  std::string s(1, static_cast<char>(type));
  s += id;
  s.push_back('\0');  // ids are printable, so "h-1" never prefixes "h-10"'s keys
  return s;
}

std::string TotalsKey(int32_t partition, v1::SubjectType type, const std::string& id) {
  return PartitionKey(partition, 's', Subject(type, id));
}
std::string TypeKey(int32_t partition, v1::SubjectType type) {
  return PartitionKey(partition, 'g', std::string(1, static_cast<char>(type)));
}
std::string DayKey(int32_t partition, v1::SubjectType type, const std::string& id, int64_t day) {
  std::string key = PartitionKey(partition, 'd', Subject(type, id));
  AppendU32(key, static_cast<uint32_t>(day));
  return key;
}
std::string ReviewKey(int32_t partition, v1::SubjectType type, const std::string& id, int64_t ms,
                      const std::string& event_id) {
  std::string key = PartitionKey(partition, 'r', Subject(type, id));
  AppendU64(key, static_cast<uint64_t>(ms));
  key += event_id;
  return key;
}
std::string WriterKey(int32_t partition, const std::string& customer_id, int64_t ms, const std::string& event_id) {
  std::string key = PartitionKey(partition, 'w', customer_id);
  key.push_back('\0');
  AppendU64(key, static_cast<uint64_t>(ms));
  key += event_id;
  return key;
}

Status AddTo(StateBatch& state, const std::string& key, int32_t rating) {
  ASSIGN_OR_RETURN(const std::string* stored, state.Find(key));
  RatingTotals totals;
  if (stored != nullptr && !totals.ParseFromString(*stored)) {
    return absl::InternalError("reviews: stored totals do not parse; the store is damaged");
  }
  while (totals.histogram_size() < 5) totals.add_histogram(0);
  totals.set_count(totals.count() + 1);
  totals.set_rating_sum(totals.rating_sum() + rating);
  totals.set_histogram(rating - 1, totals.histogram(rating - 1) + 1);
  state.Put(key, events::EncodeDeterministic(totals));
  return absl::OkStatus();
}

std::string SubjectTypeName(v1::SubjectType type) {
  std::string name = v1::SubjectType_Name(type).substr(std::string_view("SUBJECT_TYPE_").size());
  std::transform(name.begin(), name.end(), name.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

}  // namespace

bool ReviewsProjection::Reads(v1::Envelope::PayloadCase type) const {
  return type == v1::Envelope::kReviewSubmitted || type == v1::Envelope::kServiceRated ||
         type == v1::Envelope::kSurveyAnswered;
}

std::optional<v1::Alert> AlertFor(const v1::Envelope& e) {
  v1::Alert alert;
  switch (e.payload_case()) {
    case v1::Envelope::kReviewSubmitted: {
      const auto& r = e.review_submitted();
      if (r.rating() > 2) return std::nullopt;
      alert.set_kind(v1::ALERT_KIND_LOW_REVIEW);
      alert.set_subject(absl::StrCat(SubjectTypeName(r.subject_type()), "/", r.subject_id()));
      alert.set_score(r.rating());
      alert.set_summary(
          absl::StrCat("review of ", r.rating(), "/5 for ", SubjectTypeName(r.subject_type()), " ", r.subject_id()));
      break;
    }
    case v1::Envelope::kServiceRated: {
      const auto& s = e.service_rated();
      if (s.satisfaction() > v1::SATISFACTION_DISSATISFIED) return std::nullopt;
      std::string point = s.point() == v1::SERVICE_POINT_COUNTER ? "counter"
                          : s.point() == v1::SERVICE_POINT_AGENT ? "agent"
                                                                 : "branch";
      alert.set_kind(v1::ALERT_KIND_DISSATISFIED_SERVICE_RATING);
      alert.set_subject(absl::StrCat(point, "/", s.point_id(), s.branch_id().empty() ? "" : "@", s.branch_id()));
      alert.set_score(s.satisfaction());
      alert.set_summary(
          absl::StrCat(s.satisfaction() == v1::SATISFACTION_VERY_DISSATISFIED ? "very dissatisfied" : "dissatisfied",
                       " at ", point, " ", s.point_id()));
      break;
    }
    case v1::Envelope::kSurveyAnswered: {
      const auto& s = e.survey_answered();
      if (!s.has_nps_score() || s.nps_score() > 6) return std::nullopt;
      alert.set_kind(v1::ALERT_KIND_NPS_DETRACTOR);
      alert.set_subject(absl::StrCat("survey/", s.survey_id()));
      alert.set_score(s.nps_score());
      alert.set_summary(absl::StrCat("NPS answer of ", s.nps_score(), " (detractor)"));
      break;
    }
    default:
      return std::nullopt;
  }
  alert.set_alert_id("alert:" + e.event_id());
  alert.set_customer_id(e.customer_id());
  *alert.mutable_occurred_at() = e.occurred_at();
  alert.set_triggering_event_id(e.event_id());
  alert.set_channel(e.channel());
  alert.set_source(e.source());
  return alert;
}

Status ReviewsProjection::DoApply(const v1::Envelope& e, const LogPosition& position, StateBatch& state,
                                  std::vector<OutboxRecord>& outbox) {
  if (auto alert = AlertFor(e)) {
    OutboxRecord record{.topic = "alerts",
                        .key = e.customer_id(),
                        .value = events::EncodeDeterministic(*alert),
                        .headers = {{"ce_specversion", "1.0"},
                                    {"ce_id", alert->alert_id()},
                                    {"ce_type", "rapport.v1.Alert"},
                                    {"ce_source", "rapport/reviews"},
                                    {"ce_time", pb::util::TimeUtil::ToString(e.occurred_at())},
                                    {"ce_subject", e.customer_id()},
                                    {"content-type", "application/protobuf; proto=rapport.v1.Alert"}}};
    outbox.push_back(std::move(record));
  }
  if (!e.has_review_submitted()) return absl::OkStatus();

  const auto& r = e.review_submitted();
  const int64_t at = events::ToUnixMillis(e.occurred_at());
  const int32_t p = position.partition;
  RETURN_IF_ERROR(AddTo(state, TotalsKey(p, r.subject_type(), r.subject_id()), r.rating()));
  RETURN_IF_ERROR(AddTo(state, TypeKey(p, r.subject_type()), r.rating()));
  RETURN_IF_ERROR(AddTo(state, DayKey(p, r.subject_type(), r.subject_id(), at / kDayMs), r.rating()));
  ReviewRecord record;
  record.set_event_id(e.event_id());
  record.set_customer_id(e.customer_id());
  record.set_subject_type(r.subject_type());
  record.set_subject_id(r.subject_id());
  record.set_rating(r.rating());
  if (r.has_text()) *record.mutable_text() = r.text();
  record.set_language(r.language());
  record.set_occurred_at_ms(at);
  record.set_channel(e.channel());
  std::string bytes = events::EncodeDeterministic(record);
  state.Put(ReviewKey(p, r.subject_type(), r.subject_id(), at, e.event_id()), bytes);
  state.Put(WriterKey(p, e.customer_id(), at, e.event_id()), std::move(bytes));
  return absl::OkStatus();
}

ReviewsView::ReviewsView(ProjectionStore& store, int32_t partition_count)
    : store_(store), family_(store.ServingFamily(ReviewsProjection().Family())), partition_count_(partition_count) {}

Result<SubjectSummary> ReviewsView::Summary(v1::SubjectType type, const std::string& id, absl::Time as_of) {
  ASSIGN_OR_RETURN(SubjectTotals totals, Totals(type, id, as_of));
  return SummaryOf(type, id, totals);
}

void SubjectTotals::Add(const SubjectTotals& other) {
  count += other.count;
  sum += other.sum;
  for (size_t i = 0; i < histogram.size(); ++i) histogram[i] += other.histogram[i];
  type_count += other.type_count;
  type_sum += other.type_sum;
  recent_count += other.recent_count;
  recent_sum += other.recent_sum;
}

Result<SubjectTotals> ReviewsView::Totals(v1::SubjectType type, const std::string& id, absl::Time as_of,
                                          const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("reviews");
  SubjectTotals t;
  const int64_t last_day = absl::ToUnixMillis(as_of) / kDayMs;
  // Totals absent are zero; a read error is an error, not zero.
  auto read_totals = [&](const std::string& key, RatingTotals& totals) -> Status {
    auto bytes = store_.Get(family_.get(), key);
    if (bytes.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    if (!bytes.ok()) return bytes.status();
    if (!totals.ParseFromString(*bytes)) return absl::InternalError("reviews: stored totals do not parse");
    return absl::OkStatus();
  };
  for (int32_t p = 0; p < partition_count_; ++p) {
    if (in && !in(p)) continue;
    RatingTotals totals;
    RETURN_IF_ERROR(read_totals(TotalsKey(p, type, id), totals));
    t.count += totals.count();
    t.sum += totals.rating_sum();
    for (int i = 0; i < totals.histogram_size() && i < 5; ++i) t.histogram[i] += totals.histogram(i);
    RatingTotals of_type;
    RETURN_IF_ERROR(read_totals(TypeKey(p, type), of_type));
    t.type_count += of_type.count();
    t.type_sum += of_type.rating_sum();
    // Days (last_day - 30, last_day]: the 30 days up to and including as_of's day.
    const std::string days = PartitionKey(p, 'd', Subject(type, id));
    const std::string from = DayKey(p, type, id, last_day - 29), to = DayKey(p, type, id, last_day + 1);
    RETURN_IF_ERROR(store_.Scan(
        family_.get(), days,
        [&](std::string_view key, std::string_view value) -> Result<bool> {
          if (key >= to) return false;
          RatingTotals day;
          if (!day.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            return absl::InternalError("reviews: stored day totals do not parse");
          }
          t.recent_count += day.count();
          t.recent_sum += day.rating_sum();
          return true;
        },
        from));
  }
  return t;
}

Result<SubjectSummary> ReviewsView::SummaryOf(v1::SubjectType type, const std::string& id, const SubjectTotals& t) {
  if (t.count == 0) {
    return absl::NotFoundError(absl::StrCat("no reviews of ", SubjectTypeName(type), " ", id));
  }
  SubjectSummary s{.type = type, .id = id, .count = t.count, .histogram = t.histogram};
  s.mean = static_cast<double>(t.sum) / static_cast<double>(t.count);
  s.type_mean = t.type_count ? static_cast<double>(t.type_sum) / static_cast<double>(t.type_count) : 0;
  s.bayesian_average =
      (kPriorWeight * s.type_mean + static_cast<double>(t.sum)) / (kPriorWeight + static_cast<double>(t.count));
  s.last_30_days_count = t.recent_count;
  s.last_30_days_mean = t.recent_count ? static_cast<double>(t.recent_sum) / static_cast<double>(t.recent_count) : 0;
  return s;
}

Result<ReviewPage> ReviewsView::Reviews(v1::SubjectType type, const std::string& id, size_t limit,
                                        const std::string& cursor, const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("reviews");
  // The cursor is the (time, event id) suffix of the last review shown; a page
  // continues strictly before it. Each partition's reviews are in time order,
  // so the page merges the partitions, newest first.
  std::string after;
  // A cursor is 8 bytes of time and a 36-character event id (a UUID).
  auto well_formed = [](const std::string& suffix) {
    return suffix.size() == 8 + 36 && suffix[8 + 8] == '-' && suffix[8 + 13] == '-' && suffix[8 + 18] == '-' &&
           suffix[8 + 23] == '-';
  };
  if (!cursor.empty() && (!absl::WebSafeBase64Unescape(cursor, &after) || !well_formed(after))) {
    return absl::InvalidArgumentError("cursor: not a cursor this API returned");
  }
  struct Head {
    std::string suffix;  // time and event id: what orders reviews
    int32_t partition;
  };
  std::vector<std::unique_ptr<rocksdb::Iterator>> iterators;
  auto later = [](const Head& a, const Head& b) { return a.suffix < b.suffix; };  // max-heap by suffix
  std::priority_queue<Head, std::vector<Head>, decltype(later)> heads(later);
  for (int32_t p = 0; p < partition_count_; ++p) {
    std::string prefix = PartitionKey(p, 'r', Subject(type, id));
    auto it = std::unique_ptr<rocksdb::Iterator>(store_.db()->NewIterator(rocksdb::ReadOptions(), family_.get()));
    if (in && !in(p)) {
      iterators.push_back(std::move(it));  // (indexed by partition)
      continue;
    }
    if (after.empty()) {
      std::string end = prefix;
      end.push_back('\xff');
      it->SeekForPrev(end);
    } else {
      it->SeekForPrev(prefix + after);
      if (it->Valid() && it->key().ToString() == prefix + after) it->Prev();
    }
    if (it->Valid() && it->key().starts_with(prefix)) heads.push({it->key().ToString().substr(prefix.size()), p});
    RETURN_IF_ERROR(StoreStatus(it->status(), "reading reviews"));
    iterators.push_back(std::move(it));
  }
  ReviewPage page;
  while (!heads.empty() && page.reviews.size() < limit) {
    Head head = heads.top();
    heads.pop();
    auto& it = iterators[static_cast<size_t>(head.partition)];
    ReviewRecord record;
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::InternalError("reviews: a stored review does not parse");
    }
    page.reviews.push_back(std::move(record));
    page.next_cursor = absl::WebSafeBase64Escape(head.suffix);
    page.cursors.push_back(page.next_cursor);
    std::string prefix = PartitionKey(head.partition, 'r', Subject(type, id));
    it->Prev();
    if (it->Valid() && it->key().starts_with(prefix)) {
      heads.push({it->key().ToString().substr(prefix.size()), head.partition});
    }
    RETURN_IF_ERROR(StoreStatus(it->status(), "reading reviews"));
  }
  if (heads.empty()) page.next_cursor.clear();
  return page;
}

Result<std::vector<ReviewRecord>> ReviewsView::ByCustomer(const std::string& customer_id) {
  if (family_ == nullptr) return NoLiveState("reviews");
  std::string prefix = PartitionKey(kafka::PartitionForKey(customer_id, partition_count_), 'w', customer_id);
  prefix.push_back('\0');
  std::vector<ReviewRecord> reviews;
  RETURN_IF_ERROR(store_.Scan(family_.get(), prefix, [&](std::string_view, std::string_view value) -> Result<bool> {
    if (!reviews.emplace_back().ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::InternalError("reviews: a stored review does not parse");
    }
    return true;
  }));
  std::reverse(reviews.begin(), reviews.end());
  return reviews;
}

namespace {

pb::Value RecordValue(const ReviewRecord& r) {
  pb::Value v;
  (void)pb::util::JsonStringToMessage(events::ToJsonDeterministic(r), &v);
  auto& f = *v.mutable_struct_value()->mutable_fields();
  f.erase("occurred_at_ms");
  f["occurred_at"].set_string_value(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(r.occurred_at_ms()), absl::UTCTimeZone()));
  return v;
}

}  // namespace

std::string ReviewsView::ToJson(const SubjectSummary& s, events::JsonStyle style) {
  pb::Struct out;
  auto& f = *out.mutable_fields();
  f["subject_type"].set_string_value(SubjectTypeName(s.type));
  f["subject_id"].set_string_value(s.id);
  f["count"].set_number_value(static_cast<double>(s.count));
  f["mean"].set_number_value(s.mean);
  auto* histogram = f["histogram"].mutable_struct_value()->mutable_fields();
  for (int i = 0; i < 5; ++i) (*histogram)[std::to_string(i + 1)].set_number_value(static_cast<double>(s.histogram[i]));
  f["bayesian_average"].set_number_value(s.bayesian_average);
  f["type_mean"].set_number_value(s.type_mean);
  f["last_30_days_count"].set_number_value(static_cast<double>(s.last_30_days_count));
  f["last_30_days_mean"].set_number_value(s.last_30_days_mean);
  return events::ToJsonDeterministic(out, style);
}

std::string ReviewsView::ToJson(const ReviewPage& page, events::JsonStyle style) {
  pb::Struct out;
  auto& f = *out.mutable_fields();
  auto* list = f["reviews"].mutable_list_value();
  for (const auto& r : page.reviews) *list->add_values() = RecordValue(r);
  if (!page.next_cursor.empty()) f["next_cursor"].set_string_value(page.next_cursor);
  return events::ToJsonDeterministic(out, style);
}

std::string ReviewsView::ToJson(const std::vector<ReviewRecord>& reviews, events::JsonStyle style) {
  pb::Struct out;
  auto* list = (*out.mutable_fields())["reviews"].mutable_list_value();
  for (const auto& r : reviews) *list->add_values() = RecordValue(r);
  return events::ToJsonDeterministic(out, style);
}

}  // namespace rapport::projections
