#include "rapport/projections/churn.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "churn_state.h"
#include "google/protobuf/struct.pb.h"
#include "rapport/events/codec.h"
#include "rapport/events/money.h"
#include "rapport/events/time_text.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/keys.h"
#include "rapport/projections/lifetime_models.h"

namespace rapport::projections {
namespace {

namespace pb = google::protobuf;
using state::v1::ChurnStats;
// The layout this file writes (churn_state.h).
using churn_state::CustomerKey;
using churn_state::Day;
using churn_state::FrequencyBucket;
using churn_state::FrequencyKey;
using churn_state::kRecentDays;
using churn_state::MonetaryBucket;
using churn_state::MonetaryKey;
using churn_state::RecencyKey;
using churn_state::Week;

// Adds `delta` to a population count.
Status Count(StateBatch& state, const std::string& key, int64_t delta) {
  ASSIGN_OR_RETURN(const std::string* stored, state.Find(key));
  int64_t value = (stored == nullptr ? 0 : static_cast<int64_t>(ReadU64(*stored))) + delta;
  if (value == 0) {
    state.Delete(key);
  } else {
    std::string bytes;
    AppendU64(bytes, static_cast<uint64_t>(value));
    state.Put(key, std::move(bytes));
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<Segment> SegmentNamed(std::string_view name) {
  std::string normal(name);
  for (auto& c : normal) {
    if (c == '-' || c == '_') c = ' ';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (int s = static_cast<int>(Segment::kNoPurchase); s <= static_cast<int>(Segment::kLost); ++s) {
    if (SegmentName(static_cast<Segment>(s)) == normal) return static_cast<Segment>(s);
  }
  return std::nullopt;
}

std::string_view SegmentName(Segment s) {
  switch (s) {
    case Segment::kNoPurchase:
      return "no purchase";
    case Segment::kChampions:
      return "champions";
    case Segment::kLoyal:
      return "loyal";
    case Segment::kPotentialLoyalist:
      return "potential loyalist";
    case Segment::kNew:
      return "new";
    case Segment::kPromising:
      return "promising";
    case Segment::kNeedAttention:
      return "need attention";
    case Segment::kAboutToSleep:
      return "about to sleep";
    case Segment::kAtRisk:
      return "at risk";
    case Segment::kCannotLose:
      return "cannot lose";
    case Segment::kHibernating:
      return "hibernating";
    case Segment::kLost:
      return "lost";
  }
  return "unknown";
}

Segment SegmentFor(int r, int f, int m) {
  if (r == 0) return Segment::kNoPurchase;
  int fm = (f + m + 1) / 2;  // rounds half up
  switch (r) {
    case 5:
      return fm >= 4 ? Segment::kChampions : fm >= 2 ? Segment::kPotentialLoyalist : Segment::kNew;
    case 4:
      return fm == 5   ? Segment::kChampions
             : fm == 4 ? Segment::kLoyal
             : fm >= 2 ? Segment::kPotentialLoyalist
                       : Segment::kPromising;
    case 3:
      return fm >= 4 ? Segment::kLoyal : fm == 3 ? Segment::kNeedAttention : Segment::kAboutToSleep;
    case 2:
      return fm == 5 ? Segment::kCannotLose : fm >= 3 ? Segment::kAtRisk : Segment::kHibernating;
    default:
      return fm == 5 ? Segment::kCannotLose : fm >= 3 ? Segment::kAtRisk : Segment::kLost;
  }
}

bool ChurnProjection::Reads(v1::Envelope::PayloadCase type) const {
  switch (type) {
    case v1::Envelope::kPurchaseCompleted:
    case v1::Envelope::kRefundIssued:
    case v1::Envelope::kComplaintOpened:
    case v1::Envelope::kComplaintResolved:
    case v1::Envelope::kSurveyAnswered:
    case v1::Envelope::kServiceRated:
    case v1::Envelope::kReviewSubmitted:
      return true;
    default:
      return false;
  }
}

Status ChurnProjection::DoApply(const v1::Envelope& e, const LogPosition& position, StateBatch& state,
                                std::vector<OutboxRecord>& /*outbox*/) {
  const int32_t p = position.partition;
  const std::string key = CustomerKey(p, e.customer_id());
  ASSIGN_OR_RETURN(const std::string* stored, state.Find(key));
  ChurnStats s;
  if (stored != nullptr && !s.ParseFromString(*stored)) {
    return absl::InternalError("churn: stored statistics do not parse; the store is damaged");
  }
  s.set_customer_id(e.customer_id());
  const int64_t at = events::ToUnixMillis(e.occurred_at());
  s.set_last_activity_ms(std::max(s.last_activity_ms(), at));
  const int64_t old_monetary = s.monetary_minor();

  switch (e.payload_case()) {
    case v1::Envelope::kPurchaseCompleted: {
      const auto& total = e.purchase_completed().total();
      ASSIGN_OR_RETURN(int64_t minor, events::ToMinorUnits(total));
      const int32_t day = Day(at);
      const bool first = s.purchases() == 0;
      const int32_t old_last_day = first ? -1 : Day(s.last_purchase_ms());
      const int64_t old_days = s.purchase_days();
      if (first) {
        s.set_currency(total.currency());
        s.set_first_purchase_ms(at);
      }
      auto& recent = *s.mutable_recent_days();
      bool new_day = std::find(recent.begin(), recent.end(), day) == recent.end() && day != old_last_day;
      bool new_week = std::none_of(recent.begin(), recent.end(), [&](int32_t d) { return Week(d) == Week(day); }) &&
                      (first || Week(old_last_day) != Week(day));
      if (new_week) s.set_purchase_weeks(s.purchase_weeks() + 1);
      if (new_day) {
        s.set_purchase_days(s.purchase_days() + 1);
        if (!first && day > old_last_day) {
          s.set_gap_days_sum(s.gap_days_sum() + (day - old_last_day));
          s.set_gaps(s.gaps() + 1);
        }
        recent.Add(day);
        std::sort(recent.begin(), recent.end());
        while (recent.size() > kRecentDays) recent.erase(recent.begin());
      }
      s.set_purchases(s.purchases() + 1);
      if (total.currency() == s.currency()) {
        // The spend model leaves out the first purchase day (or week); an
        // earlier purchase arriving late becomes the new first.
        const int32_t first_day = Day(s.first_purchase_ms());
        s.set_purchase_minor(events::SaturatingAdd(s.purchase_minor(), minor));
        if (first || day < first_day) {
          s.set_first_day_minor(minor);
        } else if (day == first_day) {
          s.set_first_day_minor(events::SaturatingAdd(s.first_day_minor(), minor));
        }
        if (first || Week(day) < Week(first_day)) {
          s.set_first_week_minor(minor);
        } else if (Week(day) == Week(first_day)) {
          s.set_first_week_minor(events::SaturatingAdd(s.first_week_minor(), minor));
        }
      }
      s.set_first_purchase_ms(std::min(s.first_purchase_ms(), at));
      s.set_last_purchase_ms(std::max(s.last_purchase_ms(), at));
      if (total.currency() == s.currency()) {
        s.set_monetary_minor(events::SaturatingAdd(s.monetary_minor(), minor));
        s.set_monetary_purchases(s.monetary_purchases() + 1);
      }
      // Move the customer in the population histograms.
      const int32_t new_last_day = Day(s.last_purchase_ms());
      if (new_last_day != old_last_day) {
        if (!first) RETURN_IF_ERROR(Count(state, RecencyKey(p, old_last_day), -1));
        RETURN_IF_ERROR(Count(state, RecencyKey(p, new_last_day), +1));
      }
      if (s.purchase_days() != old_days) {
        if (!first) RETURN_IF_ERROR(Count(state, FrequencyKey(p, FrequencyBucket(old_days)), -1));
        RETURN_IF_ERROR(Count(state, FrequencyKey(p, FrequencyBucket(s.purchase_days())), +1));
      }
      if (first) {
        RETURN_IF_ERROR(Count(state, MonetaryKey(p, s.currency(), MonetaryBucket(s.monetary_minor())), +1));
      } else if (MonetaryBucket(old_monetary) != MonetaryBucket(s.monetary_minor())) {
        RETURN_IF_ERROR(Count(state, MonetaryKey(p, s.currency(), MonetaryBucket(old_monetary)), -1));
        RETURN_IF_ERROR(Count(state, MonetaryKey(p, s.currency(), MonetaryBucket(s.monetary_minor())), +1));
      }
      break;
    }
    case v1::Envelope::kRefundIssued: {
      const auto& amount = e.refund_issued().amount();
      if (s.purchases() == 0 || amount.currency() != s.currency()) break;
      ASSIGN_OR_RETURN(int64_t minor, events::ToMinorUnits(amount));
      s.set_monetary_minor(events::SaturatingAdd(s.monetary_minor(), -minor));
      if (MonetaryBucket(old_monetary) != MonetaryBucket(s.monetary_minor())) {
        RETURN_IF_ERROR(Count(state, MonetaryKey(p, s.currency(), MonetaryBucket(old_monetary)), -1));
        RETURN_IF_ERROR(Count(state, MonetaryKey(p, s.currency(), MonetaryBucket(s.monetary_minor())), +1));
      }
      break;
    }
    case v1::Envelope::kComplaintOpened:
      s.set_complaints(s.complaints() + 1);
      s.add_open_cases(e.complaint_opened().case_id());
      s.add_open_case_since_ms(at);
      break;
    case v1::Envelope::kComplaintResolved: {
      for (int i = 0; i < s.open_cases_size(); ++i) {
        if (s.open_cases(i) != e.complaint_resolved().case_id()) continue;
        s.mutable_open_cases()->erase(s.mutable_open_cases()->begin() + i);
        s.mutable_open_case_since_ms()->erase(s.mutable_open_case_since_ms()->begin() + i);
        break;
      }
      break;
    }
    case v1::Envelope::kSurveyAnswered:
      s.set_has_nps(true);
      s.set_last_nps(e.survey_answered().nps_score());
      break;
    case v1::Envelope::kServiceRated:
      s.set_last_service_satisfaction(e.service_rated().satisfaction());
      break;
    case v1::Envelope::kReviewSubmitted:
      s.set_last_review_rating(e.review_submitted().rating());
      break;
    default:
      break;
  }
  state.Put(key, events::EncodeDeterministic(s));
  return absl::OkStatus();
}

}  // namespace rapport::projections
