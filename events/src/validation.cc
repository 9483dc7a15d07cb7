#include "rapport/events/validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/time_util.h"
#include "rapport/events/event_type.h"
#include "rapport/events/money.h"
#include "rapport/events/time_text.h"
#include "rapport/events/uuid.h"

namespace rapport::events {
namespace {

namespace pb = google::protobuf;

constexpr size_t kMaxIdLength = 128;
constexpr size_t kMaxSourceLength = 256;
constexpr size_t kMaxTitleLength = 200;
constexpr size_t kMaxTextLength = 10000;
constexpr size_t kMaxTraitKeyLength = 64;
constexpr size_t kMaxTraitValueLength = 512;
constexpr size_t kMaxLineItems = 1000;
constexpr int64_t kMaxQuantity = 1'000'000;  // of one line item
constexpr int64_t kMaxLoyaltyPoints = 1'000'000'000;
const absl::Duration kMaxInteractionTime = absl::Hours(24);

// Character-class checks written out: std::regex cost a third of the
// consumer's time (profiled with callgrind).
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// [a-z0-9][a-z0-9._-]{0,63}
bool IsSlug(std::string_view s) {
  if (s.empty() || s.size() > 64 || !IsLowerAlnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return IsLowerAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

// [a-zA-Z0-9][a-zA-Z0-9._-]*
bool IsMapKey(std::string_view s) {
  if (s.empty() || !IsAlnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

// local@domain.tld: one '@', no white space, a dot inside the domain.
bool IsEmail(std::string_view s) {
  if (s.size() > 254 || std::any_of(s.begin(), s.end(), IsSpace)) return false;
  size_t at = s.find('@');
  if (at == 0 || at == std::string_view::npos || s.find('@', at + 1) != std::string_view::npos) return false;
  std::string_view domain = s.substr(at + 1);
  size_t dot = domain.find('.', 1);
  return dot != std::string_view::npos && dot + 1 < domain.size();
}

// +[1-9][0-9]{6,14}
bool IsE164(std::string_view s) {
  if (s.size() < 8 || s.size() > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') return false;
  return std::all_of(s.begin() + 2, s.end(), IsDigit);
}

// [a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*
bool IsLanguageTag(std::string_view s) {
  size_t dash = s.find('-');
  std::string_view primary = s.substr(0, dash);
  if (primary.size() < 2 || primary.size() > 3 ||
      !std::all_of(primary.begin(), primary.end(), [](char c) { return IsAlnum(c) && !IsDigit(c); })) {
    return false;
  }
  while (dash != std::string_view::npos) {
    size_t next = s.find('-', dash + 1);
    std::string_view part =
        s.substr(dash + 1, next == std::string_view::npos ? std::string_view::npos : next - dash - 1);
    if (part.empty() || part.size() > 8 || !std::all_of(part.begin(), part.end(), IsAlnum)) return false;
    dash = next;
  }
  return true;
}

absl::Time ToTime(const pb::Timestamp& t) { return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()); }

enum class Presence { kRequired, kOptional };
constexpr Presence kRequired = Presence::kRequired;
constexpr Presence kOptional = Presence::kOptional;

// Collects the violations of one event; each Check* names the field it checks.
class Checker {
 public:
  explicit Checker(const ValidationContext& context) : context_(context) {}

  Violations Take() { return std::move(violations_); }

  void Add(std::string field, std::string reason) { violations_.push_back({std::move(field), std::move(reason)}); }

  // An identifier: printable ASCII without spaces, at most 128 characters.
  void Id(const std::string& field, const std::string& value, Presence presence) {
    if (value.empty()) {
      if (presence == kRequired) Add(field, "required");
      return;
    }
    if (value.size() > kMaxIdLength) {
      Add(field, absl::StrCat("is ", value.size(), " characters; at most ", kMaxIdLength, " allowed"));
    }
    auto bad = std::find_if(value.begin(), value.end(), [](char c) { return c <= ' ' || c >= 0x7f; });
    if (bad != value.end()) {
      Add(field, absl::StrCat("contains a space or a non-printable character at position ", bad - value.begin() + 1,
                              "; ids are printable ASCII without spaces"));
    }
  }

  void Text(const std::string& field, const std::string& value, size_t max_length) {
    if (value.size() > max_length) {
      Add(field, absl::StrCat("is ", value.size(), " bytes; at most ", max_length, " allowed"));
    }
  }

  // A short code such as a category: lower-case letters, digits, '-', '_', '.'.
  void Slug(const std::string& field, const std::string& value, Presence presence, std::string_view example) {
    if (value.empty()) {
      if (presence == kRequired)
        Add(field, absl::StrCat("required; a lower-case code such as \"", std::string(example), "\""));
      return;
    }
    if (!IsSlug(value)) {
      Add(field, absl::StrCat("\"", value, "\" is not a lower-case code (letters, digits, '-', '_', '.'; at most 64)"));
    }
  }

  template <typename Enum>
  void RequiredEnum(const std::string& field, Enum value) {
    const pb::EnumDescriptor* type = pb::GetEnumDescriptor<Enum>();
    const pb::EnumValueDescriptor* known = type->FindValueByNumber(static_cast<int>(value));
    if (value != Enum{} && known != nullptr) return;
    std::vector<std::string> names;
    for (int i = 0; i < type->value_count(); ++i) {
      if (type->value(i)->number() != 0) names.push_back(type->value(i)->name());
    }
    std::string what =
        known == nullptr ? absl::StrCat("unknown value ", static_cast<int>(value)) : std::string("required");
    Add(field, absl::StrCat(what, "; one of ", absl::StrJoin(names, ", ")));
  }

  template <typename Enum>
  void OptionalEnum(const std::string& field, Enum value) {
    if (value != Enum{}) RequiredEnum(field, value);
  }

  void Timestamp(const std::string& field, const pb::Timestamp& t) {
    if (t.seconds() < pb::util::TimeUtil::kTimestampMinSeconds ||
        t.seconds() > pb::util::TimeUtil::kTimestampMaxSeconds || t.nanos() < 0 || t.nanos() > 999'999'999) {
      Add(field, "is not a valid timestamp");
      return;
    }
    absl::Time time = ToTime(t);
    if (time < kEarliestEventTime) {
      Add(field, absl::StrCat(pb::util::TimeUtil::ToString(t), " is before 1990-01-01; a zero or mis-scaled time?"));
    } else if (time > context_.reference_time + context_.max_future_skew) {
      Add(field,
          absl::StrCat(pb::util::TimeUtil::ToString(t), " is more than ",
                       absl::FormatDuration(context_.max_future_skew), " in the future (now ",
                       absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", context_.reference_time, absl::UTCTimeZone()), ")"));
    }
  }

  void NonNegativeDuration(const std::string& field, const pb::Duration& d, absl::Duration max) {
    absl::Duration value = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
    if (value < absl::ZeroDuration()) {
      Add(field, "must not be negative");
    } else if (value > max) {
      Add(field, absl::StrCat("is ", absl::FormatDuration(value), "; at most ", absl::FormatDuration(max)));
    }
  }

  void Email(const std::string& field, const std::string& value) {
    if (!IsEmail(value)) {
      Add(field, "is not an e-mail address such as \"name@example.com\"");
    }
  }

  void Phone(const std::string& field, const std::string& value) {
    if (!IsE164(value)) {
      Add(field, "is not a phone number in E.164 form such as \"+4915112345678\"");
    }
  }

  void Country(const std::string& field, const std::string& value) {
    if (!value.empty() &&
        (value.size() != 2 || !std::all_of(value.begin(), value.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))) {
      Add(field, absl::StrCat("\"", value, "\" is not an ISO 3166-1 alpha-2 code such as \"DE\""));
    }
  }

  void Language(const std::string& field, const std::string& value) {
    if (!value.empty() && !IsLanguageTag(value)) {
      Add(field, absl::StrCat("\"", value, "\" is not a BCP 47 language tag such as \"en\" or \"de-DE\""));
    }
  }

  void Date(const std::string& field, const std::string& value) {
    absl::CivilDay day;
    bool shaped = value.size() == 10 && value[4] == '-' && value[7] == '-' &&
                  std::all_of(value.begin(), value.begin() + 4, IsDigit) && IsDigit(value[5]) && IsDigit(value[6]) &&
                  IsDigit(value[8]) && IsDigit(value[9]);
    if (!shaped || !absl::ParseCivilTime(value, &day) || absl::FormatCivilTime(day) != value) {
      Add(field, absl::StrCat("\"", value, "\" is not a date such as \"1984-03-21\""));
    }
  }

  void Details(const std::string& field, const v1::PersonalDetails& d) {
    Text(field + ".given_name", d.given_name(), kMaxTitleLength);
    Text(field + ".family_name", d.family_name(), kMaxTitleLength);
    if (!d.email().empty()) Email(field + ".email", d.email());
    if (!d.phone().empty()) Phone(field + ".phone", d.phone());
    if (!d.birth_date().empty()) Date(field + ".birth_date", d.birth_date());
  }

  void PersonalText(const std::string& field, const v1::PersonalText& t) {
    Text(field + ".title", t.title(), kMaxTitleLength);
    Text(field + ".body", t.body(), kMaxTextLength);
  }

  void StringMap(const std::string& field, const pb::Map<std::string, std::string>& map) {
    for (const auto& [key, value] : map) {
      if (key.size() > kMaxTraitKeyLength || !IsMapKey(key)) {
        Add(absl::StrCat(field, "[\"", key, "\"]"),
            "keys are letters, digits, '.', '_' and '-', at most 64 characters");
      }
      Text(absl::StrCat(field, "[\"", key, "\"]"), value, kMaxTraitValueLength);
    }
  }

 private:
  const ValidationContext& context_;
  Violations violations_;
};

void CheckPayload(const v1::Envelope& e, Checker& c) {
  switch (e.payload_case()) {
    case v1::Envelope::kCustomerRegistered: {
      const auto& p = e.customer_registered();
      c.OptionalEnum("customer_registered.kind", p.kind());
      c.Details("customer_registered.details", p.details());
      c.Country("customer_registered.country", p.country());
      c.Language("customer_registered.language", p.language());
      c.Id("customer_registered.company_id", p.company_id(), kOptional);
      break;
    }
    case v1::Envelope::kProfileUpdated: {
      const auto& p = e.profile_updated();
      if (p.traits().empty() && !p.has_preferences() && !p.has_business_role() && !p.has_details()) {
        c.Add("profile_updated", "nothing to update; set traits, preferences, business_role or details");
      }
      c.StringMap("profile_updated.traits", p.traits());
      c.Text("profile_updated.preferences.seat", p.preferences().seat(), kMaxTitleLength);
      c.Text("profile_updated.preferences.meal", p.preferences().meal(), kMaxTitleLength);
      c.Text("profile_updated.preferences.drink", p.preferences().drink(), kMaxTitleLength);
      c.StringMap("profile_updated.preferences.other", p.preferences().other());
      c.OptionalEnum("profile_updated.business_role.level", p.business_role().level());
      c.OptionalEnum("profile_updated.business_role.function", p.business_role().function());
      c.Details("profile_updated.details", p.details());
      break;
    }
    case v1::Envelope::kIdentityLinked: {
      const auto& p = e.identity_linked();
      c.RequiredEnum("identity_linked.kind", p.kind());
      const std::string field = "identity_linked.identifier.value";
      const std::string& value = p.identifier().value();
      if (value.empty()) {
        c.Add(field, "required");
      } else if (p.kind() == v1::IDENTITY_KIND_EMAIL) {
        c.Email(field, value);
      } else if (p.kind() == v1::IDENTITY_KIND_PHONE) {
        c.Phone(field, value);
      } else {
        c.Id(field, value, kRequired);
      }
      c.Id("identity_linked.issuer", p.issuer(), p.kind() == v1::IDENTITY_KIND_EXTERNAL_ID ? kRequired : kOptional);
      break;
    }
    case v1::Envelope::kPurchaseCompleted: {
      const auto& p = e.purchase_completed();
      c.Id("purchase_completed.order_id", p.order_id(), kRequired);
      Violations money;
      if (!p.has_total()) {
        c.Add("purchase_completed.total", "required");
      } else {
        // Zero is a real purchase (a 100% voucher, a free promotional item):
        // it counts for frequency and recency.
        CheckMoney(p.total(), "purchase_completed.total", AmountSign::kNonNegative, money);
      }
      // Too many items: that one violation, not one per item (300,000 empty
      // items would otherwise render a million).
      const bool too_many_items = static_cast<size_t>(p.items_size()) > kMaxLineItems;
      if (too_many_items) {
        c.Add("purchase_completed.items", absl::StrCat("has ", p.items_size(), " items; at most ", kMaxLineItems));
      }
      for (int i = 0; i < p.items_size() && !too_many_items; ++i) {
        const auto& item = p.items(i);
        const std::string field = absl::StrCat("purchase_completed.items[", i, "]");
        c.Id(field + ".sku", item.sku(), kOptional);
        c.Text(field + ".name", item.name(), kMaxTitleLength);
        c.Slug(field + ".category", item.category(), kRequired, "groceries");
        if (item.quantity() < 1 || item.quantity() > kMaxQuantity) {
          c.Add(field + ".quantity", absl::StrCat("must be from 1 to ", kMaxQuantity, ", got ", item.quantity()));
        }
        if (!item.has_unit_price()) {
          c.Add(field + ".unit_price", "required");
          continue;
        }
        CheckMoney(item.unit_price(), field + ".unit_price", AmountSign::kNonNegative, money);
        if (p.has_total() && item.unit_price().currency() != p.total().currency()) {
          c.Add(field + ".unit_price.currency",
                absl::StrCat("\"", item.unit_price().currency(), "\" differs from the order total's \"",
                             p.total().currency(), "\""));
        }
      }
      for (auto& v : money) c.Add(std::move(v.field), std::move(v.reason));
      c.Id("purchase_completed.store_id", p.store_id(), kOptional);
      c.Text("purchase_completed.merchant", p.merchant(), kMaxTitleLength);
      break;
    }
    case v1::Envelope::kRefundIssued: {
      const auto& p = e.refund_issued();
      c.Id("refund_issued.order_id", p.order_id(), kRequired);
      Violations money;
      if (!p.has_amount()) {
        c.Add("refund_issued.amount", "required");
      } else {
        CheckMoney(p.amount(), "refund_issued.amount", AmountSign::kPositive, money);
      }
      for (auto& v : money) c.Add(std::move(v.field), std::move(v.reason));
      c.Slug("refund_issued.reason", p.reason(), kOptional, "damaged");
      break;
    }
    case v1::Envelope::kReviewSubmitted: {
      const auto& p = e.review_submitted();
      c.Id("review_submitted.review_id", p.review_id(), kOptional);
      c.RequiredEnum("review_submitted.subject_type", p.subject_type());
      c.Id("review_submitted.subject_id", p.subject_id(), kRequired);
      if (p.rating() < 1 || p.rating() > 5) {
        c.Add("review_submitted.rating", absl::StrCat("must be from 1 to 5, got ", p.rating()));
      }
      c.PersonalText("review_submitted.text", p.text());
      c.Language("review_submitted.language", p.language());
      break;
    }
    case v1::Envelope::kServiceRated: {
      const auto& p = e.service_rated();
      c.RequiredEnum("service_rated.satisfaction", p.satisfaction());
      c.RequiredEnum("service_rated.point", p.point());
      c.Id("service_rated.point_id", p.point_id(), kRequired);
      c.Id("service_rated.branch_id", p.branch_id(), kOptional);
      break;
    }
    case v1::Envelope::kSurveyAnswered: {
      const auto& p = e.survey_answered();
      c.Id("survey_answered.survey_id", p.survey_id(), kOptional);
      if (!p.has_nps_score()) {
        c.Add("survey_answered.nps_score", "required; 0 to 10");
      } else if (p.nps_score() < 0 || p.nps_score() > 10) {
        c.Add("survey_answered.nps_score", absl::StrCat("must be from 0 to 10, got ", p.nps_score()));
      }
      c.PersonalText("survey_answered.comment", p.comment());
      break;
    }
    case v1::Envelope::kComplaintOpened: {
      const auto& p = e.complaint_opened();
      c.Id("complaint_opened.case_id", p.case_id(), kRequired);
      c.RequiredEnum("complaint_opened.category", p.category());
      c.RequiredEnum("complaint_opened.severity", p.severity());
      c.PersonalText("complaint_opened.description", p.description());
      break;
    }
    case v1::Envelope::kComplaintResolved: {
      const auto& p = e.complaint_resolved();
      c.Id("complaint_resolved.case_id", p.case_id(), kRequired);
      c.OptionalEnum("complaint_resolved.category", p.category());
      c.OptionalEnum("complaint_resolved.severity", p.severity());
      c.RequiredEnum("complaint_resolved.resolution", p.resolution());
      c.PersonalText("complaint_resolved.note", p.note());
      break;
    }
    case v1::Envelope::kInteraction: {
      const auto& p = e.interaction();
      c.RequiredEnum("interaction.kind", p.kind());
      c.RequiredEnum("interaction.direction", p.direction());
      c.NonNegativeDuration("interaction.wait_time", p.wait_time(), kMaxInteractionTime);
      c.NonNegativeDuration("interaction.handle_time", p.handle_time(), kMaxInteractionTime);
      c.OptionalEnum("interaction.outcome", p.outcome());
      c.Id("interaction.agent_id", p.agent_id(), kOptional);
      c.Slug("interaction.topic", p.topic(), kOptional, "billing");
      break;
    }
    case v1::Envelope::kLoyaltyActivity: {
      const auto& p = e.loyalty_activity();
      c.Id("loyalty_activity.program_id", p.program_id(), kRequired);
      c.RequiredEnum("loyalty_activity.action", p.action());
      if (p.action() == v1::LOYALTY_ACTION_TIER_CHANGED) {
        c.Slug("loyalty_activity.tier", p.tier(), kRequired, "gold");
        if (p.points() != 0) c.Add("loyalty_activity.points", "must be absent for a tier change");
      } else if (p.action() != v1::LOYALTY_ACTION_UNSPECIFIED) {
        if (p.points() <= 0 || p.points() > kMaxLoyaltyPoints) {
          c.Add("loyalty_activity.points", absl::StrCat("must be from 1 to ", kMaxLoyaltyPoints, ", got ", p.points()));
        }
        c.Slug("loyalty_activity.tier", p.tier(), kOptional, "gold");
      }
      c.Id("loyalty_activity.reference", p.reference(), kOptional);
      break;
    }
    case v1::Envelope::kCampaignTouched: {
      const auto& p = e.campaign_touched();
      c.Id("campaign_touched.campaign_id", p.campaign_id(), kRequired);
      c.RequiredEnum("campaign_touched.action", p.action());
      c.Id("campaign_touched.message_id", p.message_id(), kOptional);
      break;
    }
    case v1::Envelope::kConsentChanged: {
      const auto& p = e.consent_changed();
      c.RequiredEnum("consent_changed.purpose", p.purpose());
      c.RequiredEnum("consent_changed.status", p.status());
      break;
    }
    case v1::Envelope::PAYLOAD_NOT_SET:
      c.Add("", absl::StrCat("no event type; set exactly one of ", absl::StrJoin(EventTypeNames(), ", ")));
      break;
  }
}

}  // namespace

bool StampedInTime(int64_t occurred_ms, int64_t stamp_ms) {
  // Written as a subtraction from a validated occurred_at: a hostile stamp
  // near INT64_MAX must not overflow.
  return occurred_ms - absl::ToInt64Milliseconds(kMaxStampLead) <= stamp_ms;
}

int64_t EarliestStampOf(int64_t occurred_from_ms) {
  return std::max<int64_t>(0, occurred_from_ms - absl::ToInt64Milliseconds(kMaxStampLead));
}

int64_t KnownAtMillis(const v1::Envelope& event, int64_t stamp_ms) {
  return event.has_recorded_at() ? ToUnixMillis(event.recorded_at()) : stamp_ms;
}

Violations Validate(const v1::Envelope& e, const ValidationContext& context) {
  Checker c(context);
  if (e.event_id().empty()) {
    c.Add("event_id", "required");
  } else if (!IsWellFormedUuid(e.event_id())) {
    c.Add("event_id",
          absl::StrCat("\"", e.event_id(), "\" is not a UUID such as \"01890a5d-ac96-774b-bcce-b302099a8057\""));
  }
  c.Id("customer_id", e.customer_id(), kRequired);
  if (!e.has_occurred_at()) {
    c.Add("occurred_at", "required; an RFC 3339 timestamp such as \"2026-11-22T09:30:00Z\"");
  } else {
    c.Timestamp("occurred_at", e.occurred_at());
  }
  if (!e.has_recorded_at()) {
    c.Add("recorded_at", "required (set at ingest)");
  } else {
    c.Timestamp("recorded_at", e.recorded_at());
  }
  if (e.source().empty()) {
    c.Add("source", "required; the emitting system, e.g. \"pos/store-042\"");
  } else {
    c.Text("source", e.source(), kMaxSourceLength);
    if (std::any_of(e.source().begin(), e.source().end(), [](char ch) { return ch <= ' ' || ch == 0x7f; })) {
      c.Add("source", "must not contain spaces or control characters");
    }
  }
  c.RequiredEnum("channel", e.channel());
  c.Id("correlation_id", e.correlation_id(), kOptional);
  CheckPayload(e, c);
  return c.Take();
}

}  // namespace rapport::events
