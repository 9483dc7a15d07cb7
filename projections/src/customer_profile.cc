#include "rapport/projections/customer_profile.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "rapport/events/codec.h"
#include "rapport/events/money.h"
#include "rapport/events/time_text.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/keys.h"

namespace rapport::projections {
namespace {

using state::v1::CustomerProfile;

std::string ProfileKey(int32_t partition, const std::string& customer_id) {
  return PartitionKey(partition, 'c', customer_id);
}

std::string IdentityKey(int32_t partition, v1::IdentityKind kind, const std::string& value);

// Keeps the e-mail and phone of a customer's details findable by lookup, like
// linked identities: a new value is indexed; a replaced one is dropped if it
// still points to this customer.
Status IndexContactDetails(StateBatch& state, int32_t partition, const std::string& customer_id,
                           const v1::PersonalDetails& before, const v1::PersonalDetails& after) {
  const std::pair<v1::IdentityKind, std::pair<const std::string*, const std::string*>> contacts[] = {
      {v1::IDENTITY_KIND_EMAIL, {&before.email(), &after.email()}},
      {v1::IDENTITY_KIND_PHONE, {&before.phone(), &after.phone()}}};
  for (const auto& [kind, values] : contacts) {
    const auto& [old_value, new_value] = values;
    if (*old_value == *new_value) continue;
    if (!old_value->empty()) {
      std::string key = IdentityKey(partition, kind, *old_value);
      ASSIGN_OR_RETURN(const std::string* owner, state.Find(key));
      if (owner != nullptr && *owner == customer_id) state.Delete(std::move(key));
    }
    if (!new_value->empty()) state.Put(IdentityKey(partition, kind, *new_value), customer_id);
  }
  return absl::OkStatus();
}

std::string IdentityKey(int32_t partition, v1::IdentityKind kind, const std::string& value) {
  std::string rest(1, static_cast<char>(kind));
  rest += value;
  return PartitionKey(partition, 'i', rest);
}

// Adds `minor` to the entry for `currency` in a list kept sorted by currency.
void AddAmount(google::protobuf::RepeatedPtrField<state::v1::CurrencyAmount>& amounts, const std::string& currency,
               int64_t minor) {
  auto it = std::lower_bound(amounts.begin(), amounts.end(), currency,
                             [](const state::v1::CurrencyAmount& a, const std::string& c) { return a.currency() < c; });
  if (it == amounts.end() || it->currency() != currency) {
    int index = static_cast<int>(it - amounts.begin());
    amounts.Add()->set_currency(currency);
    for (int i = amounts.size() - 1; i > index; --i) amounts.SwapElements(i, i - 1);
    it = amounts.begin() + index;
  }
  it->set_minor_units(events::SaturatingAdd(it->minor_units(), minor));
}

void AddCategorySpend(CustomerProfile& p, const std::string& category, const std::string& currency, int64_t minor) {
  auto& spends = *p.mutable_category_spend();
  auto less = [](const state::v1::CategorySpend& s, const std::pair<std::string, std::string>& k) {
    return std::tie(s.category(), s.currency()) < std::tie(k.first, k.second);
  };
  auto key = std::make_pair(category, currency);
  auto it = std::lower_bound(spends.begin(), spends.end(), key, less);
  if (it == spends.end() || it->category() != category || it->currency() != currency) {
    int index = static_cast<int>(it - spends.begin());
    auto* added = spends.Add();
    added->set_category(category);
    added->set_currency(currency);
    for (int i = spends.size() - 1; i > index; --i) spends.SwapElements(i, i - 1);
    it = spends.begin() + index;
  }
  it->set_minor_units(events::SaturatingAdd(it->minor_units(), minor));
}

void TouchChannel(CustomerProfile& p, v1::Channel channel, int64_t at) {
  auto& channels = *p.mutable_channels();
  auto it = std::lower_bound(channels.begin(), channels.end(), channel,
                             [](const state::v1::ChannelUsage& u, v1::Channel c) { return u.channel() < c; });
  if (it == channels.end() || it->channel() != channel) {
    int index = static_cast<int>(it - channels.begin());
    channels.Add()->set_channel(channel);
    for (int i = channels.size() - 1; i > index; --i) channels.SwapElements(i, i - 1);
    it = channels.begin() + index;
  }
  it->set_events(it->events() + 1);
  it->set_last_seen_ms(std::max(it->last_seen_ms(), at));
}

void MergeDetails(v1::PersonalDetails& into, const v1::PersonalDetails& from) {
  if (!from.given_name().empty()) into.set_given_name(from.given_name());
  if (!from.family_name().empty()) into.set_family_name(from.family_name());
  if (!from.email().empty()) into.set_email(from.email());
  if (!from.phone().empty()) into.set_phone(from.phone());
  if (!from.birth_date().empty()) into.set_birth_date(from.birth_date());
}

}  // namespace

Status CustomerProfileProjection::DoApply(const v1::Envelope& e, const LogPosition& position, StateBatch& state,
                                          std::vector<OutboxRecord>& /*outbox*/) {
  const std::string key = ProfileKey(position.partition, e.customer_id());
  ASSIGN_OR_RETURN(const std::string* stored, state.Find(key));
  CustomerProfile p;
  if (stored != nullptr && !p.ParseFromString(*stored)) {
    return absl::InternalError(absl::StrCat("customer_profile: the stored profile of ", e.customer_id(),
                                            " does not parse; the store is damaged"));
  }
  const int64_t at = events::ToUnixMillis(e.occurred_at());
  if (p.customer_id().empty()) {
    p.set_customer_id(e.customer_id());
    p.set_first_seen_ms(at);
  }
  p.set_first_seen_ms(std::min(p.first_seen_ms(), at));  // events may arrive a little out of time order
  p.set_last_seen_ms(std::max(p.last_seen_ms(), at));
  p.set_events(p.events() + 1);
  TouchChannel(p, e.channel(), at);

  switch (e.payload_case()) {
    case v1::Envelope::kCustomerRegistered: {
      const auto& r = e.customer_registered();
      p.set_registered_at_ms(at);
      p.set_kind(r.kind());
      const v1::PersonalDetails before = p.details();
      MergeDetails(*p.mutable_details(), r.details());
      RETURN_IF_ERROR(IndexContactDetails(state, position.partition, e.customer_id(), before, p.details()));
      if (!r.country().empty()) p.set_country(r.country());
      if (!r.language().empty()) p.set_language(r.language());
      if (!r.company_id().empty()) p.set_company_id(r.company_id());
      break;
    }
    case v1::Envelope::kProfileUpdated: {
      const auto& u = e.profile_updated();
      for (const auto& [name, value] : u.traits()) {
        if (value.empty()) {
          p.mutable_traits()->erase(name);
        } else {
          (*p.mutable_traits())[name] = value;
        }
      }
      if (u.has_preferences()) {
        auto* prefs = p.mutable_preferences();
        if (!u.preferences().seat().empty()) prefs->set_seat(u.preferences().seat());
        if (!u.preferences().meal().empty()) prefs->set_meal(u.preferences().meal());
        if (!u.preferences().drink().empty()) prefs->set_drink(u.preferences().drink());
        for (const auto& [name, value] : u.preferences().other()) (*prefs->mutable_other())[name] = value;
      }
      if (u.has_business_role()) {
        if (u.business_role().level() != v1::ROLE_LEVEL_UNSPECIFIED) {
          p.mutable_business_role()->set_level(u.business_role().level());
        }
        if (u.business_role().function() != v1::ROLE_FUNCTION_UNSPECIFIED) {
          p.mutable_business_role()->set_function(u.business_role().function());
        }
      }
      const v1::PersonalDetails before = p.details();
      MergeDetails(*p.mutable_details(), u.details());
      RETURN_IF_ERROR(IndexContactDetails(state, position.partition, e.customer_id(), before, p.details()));
      break;
    }
    case v1::Envelope::kIdentityLinked: {
      const auto& l = e.identity_linked();
      bool known = std::any_of(p.identities().begin(), p.identities().end(), [&](const auto& i) {
        return i.kind() == l.kind() && i.identifier().value() == l.identifier().value();
      });
      if (!known) {
        auto* identity = p.add_identities();
        identity->set_kind(l.kind());
        *identity->mutable_identifier() = l.identifier();
        identity->set_issuer(l.issuer());
        identity->set_linked_at_ms(at);
      }
      state.Put(IdentityKey(position.partition, l.kind(), l.identifier().value()), e.customer_id());
      break;
    }
    case v1::Envelope::kPurchaseCompleted: {
      const auto& o = e.purchase_completed();
      ASSIGN_OR_RETURN(int64_t total, events::ToMinorUnits(o.total()));
      p.set_orders(p.orders() + 1);
      AddAmount(*p.mutable_revenue(), o.total().currency(), total);
      if (p.first_order_ms() == 0 || at < p.first_order_ms()) p.set_first_order_ms(at);
      p.set_last_order_ms(std::max(p.last_order_ms(), at));
      for (const auto& item : o.items()) {
        ASSIGN_OR_RETURN(int64_t unit, events::ToMinorUnits(item.unit_price()));
        AddCategorySpend(p, item.category(), item.unit_price().currency(),
                         events::SaturatingMultiply(unit, item.quantity()));
      }
      break;
    }
    case v1::Envelope::kRefundIssued: {
      ASSIGN_OR_RETURN(int64_t amount, events::ToMinorUnits(e.refund_issued().amount()));
      p.set_refunds(p.refunds() + 1);
      AddAmount(*p.mutable_refunded(), e.refund_issued().amount().currency(), amount);
      break;
    }
    case v1::Envelope::kReviewSubmitted:
      p.set_reviews(p.reviews() + 1);
      p.set_review_rating_sum(p.review_rating_sum() + e.review_submitted().rating());
      break;
    case v1::Envelope::kServiceRated:
      if (at >= p.last_service_rating_ms()) {
        p.set_last_service_rating(e.service_rated().satisfaction());
        p.set_last_service_rating_ms(at);
      }
      break;
    case v1::Envelope::kSurveyAnswered:
      if (!p.has_nps() || at >= p.last_nps_ms()) {
        p.set_has_nps(true);
        p.set_last_nps(e.survey_answered().nps_score());
        p.set_last_nps_ms(at);
      }
      break;
    case v1::Envelope::kComplaintOpened: {
      const auto& c = e.complaint_opened();
      p.set_complaints_opened(p.complaints_opened() + 1);
      auto* open = p.add_open_complaints();
      open->set_case_id(c.case_id());
      open->set_category(c.category());
      open->set_severity(c.severity());
      open->set_opened_at_ms(at);
      break;
    }
    case v1::Envelope::kComplaintResolved: {
      auto& open = *p.mutable_open_complaints();
      auto it = std::find_if(open.begin(), open.end(),
                             [&](const auto& c) { return c.case_id() == e.complaint_resolved().case_id(); });
      if (it != open.end()) {
        open.erase(it);
        p.set_complaints_resolved(p.complaints_resolved() + 1);
      }
      break;
    }
    case v1::Envelope::kInteraction:
      p.set_interactions(p.interactions() + 1);
      break;
    case v1::Envelope::kLoyaltyActivity: {
      const auto& l = e.loyalty_activity();
      switch (l.action()) {
        case v1::LOYALTY_ACTION_POINTS_EARNED:
          p.set_loyalty_points(p.loyalty_points() + l.points());
          break;
        case v1::LOYALTY_ACTION_POINTS_REDEEMED:
        case v1::LOYALTY_ACTION_POINTS_EXPIRED:
          p.set_loyalty_points(p.loyalty_points() - l.points());
          break;
        case v1::LOYALTY_ACTION_TIER_CHANGED:
          p.set_loyalty_tier(l.tier());
          break;
        default:
          break;
      }
      break;
    }
    case v1::Envelope::kCampaignTouched:
      p.set_campaign_touches(p.campaign_touches() + 1);
      break;
    case v1::Envelope::kConsentChanged: {
      const auto& c = e.consent_changed();
      auto& consents = *p.mutable_consents();
      auto it =
          std::lower_bound(consents.begin(), consents.end(), c.purpose(),
                           [](const state::v1::ConsentState& s, v1::ConsentPurpose x) { return s.purpose() < x; });
      if (it == consents.end() || it->purpose() != c.purpose()) {
        int index = static_cast<int>(it - consents.begin());
        consents.Add()->set_purpose(c.purpose());
        for (int i = consents.size() - 1; i > index; --i) consents.SwapElements(i, i - 1);
        it = consents.begin() + index;
      }
      if (at >= it->changed_at_ms()) {
        it->set_status(c.status());
        it->set_changed_at_ms(at);
      }
      break;
    }
    case v1::Envelope::PAYLOAD_NOT_SET:
      break;
  }
  std::string bytes = events::EncodeDeterministic(p);
  state.Put(key, std::move(bytes));
  return absl::OkStatus();
}

CustomerProfileView::CustomerProfileView(ProjectionStore& store, int32_t partition_count)
    : store_(store),
      family_(store.ServingFamily(CustomerProfileProjection().Family())),
      partition_count_(partition_count) {}

Result<state::v1::CustomerProfile> CustomerProfileView::Profile(const std::string& customer_id) {
  if (family_ == nullptr) return NoLiveState("customer_profile");
  auto bytes =
      store_.Get(family_.get(), ProfileKey(kafka::PartitionForKey(customer_id, partition_count_), customer_id));
  if (!bytes.ok()) {
    if (bytes.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("no customer ", customer_id));
    }
    return bytes.status();
  }
  CustomerProfile profile;
  if (!profile.ParseFromString(*bytes)) return absl::InternalError("a stored profile does not parse");
  return profile;
}

Result<std::string> CustomerProfileView::Lookup(v1::IdentityKind kind, const std::string& value,
                                                const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("customer_profile");
  // The index entry sits in the customer's partition, which the identity
  // does not tell: look in each.
  for (int32_t partition = 0; partition < partition_count_; ++partition) {
    if (in && !in(partition)) continue;
    auto customer = store_.Get(family_.get(), IdentityKey(partition, kind, value));
    if (customer.ok()) return customer;
    if (customer.status().code() != absl::StatusCode::kNotFound) return customer.status();
  }
  return absl::NotFoundError(absl::StrCat("no customer has ", v1::IdentityKind_Name(kind), " ", value));
}

Result<ProfilePage> CustomerProfileView::Targeted(const TargetQuery& query, size_t limit, const std::string& cursor,
                                                  const std::function<bool(int32_t)>& in) {
  if (family_ == nullptr) return NoLiveState("customer_profile");
  auto matches = [&](const CustomerProfile& p) {
    for (const auto& spend : p.category_spend()) {
      if (spend.category() != query.category) continue;
      if (!query.currency.empty() && spend.currency() != query.currency) continue;
      const double scale = std::pow(10.0, events::CurrencyMinorDigits(spend.currency()).value_or(2));
      if (static_cast<double>(spend.minor_units()) / scale >= query.min_spend) return true;
    }
    return false;
  };
  ProfilePage page;
  ASSIGN_OR_RETURN(page.next_cursor, ScanPage(
                                         store_, family_.get(), partition_count_, 'c', cursor, limit,
                                         [&](const rocksdb::Slice& value, bool keep) -> Result<bool> {
                                           CustomerProfile profile;
                                           if (!profile.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                                             return absl::InternalError("a stored profile does not parse");
                                           }
                                           if (!matches(profile)) return false;
                                           if (keep) page.customers.push_back(std::move(profile));
                                           return true;
                                         },
                                         in, &page.cursors));
  return page;
}

namespace {

// The proto3 JSON of these two messages, written out (a test checks it
// against protobuf's printer with every field set, so a new field is noticed).
nlohmann::json DetailsJson(const v1::PersonalDetails& d) {
  nlohmann::json out = nlohmann::json::object();
  if (!d.given_name().empty()) out["given_name"] = d.given_name();
  if (!d.family_name().empty()) out["family_name"] = d.family_name();
  if (!d.email().empty()) out["email"] = d.email();
  if (!d.phone().empty()) out["phone"] = d.phone();
  if (!d.birth_date().empty()) out["birth_date"] = d.birth_date();
  return out;
}

nlohmann::json PreferencesJson(const v1::Preferences& p) {
  nlohmann::json out = nlohmann::json::object();
  if (!p.seat().empty()) out["seat"] = p.seat();
  if (!p.meal().empty()) out["meal"] = p.meal();
  if (!p.drink().empty()) out["drink"] = p.drink();
  if (!p.other().empty()) {
    nlohmann::json other = nlohmann::json::object();
    for (const auto& [k, v] : p.other()) other[k] = v;
    out["other"] = std::move(other);
  }
  return out;
}

}  // namespace

std::string CustomerProfileView::ToJson(const state::v1::CustomerProfile& p, events::JsonStyle style) {
  // Built with nlohmann::json (objects keep their keys sorted, as the
  // deterministic protobuf printer does): the API renders profiles on every
  // read, and this is several times faster than going through pb::Struct.
  using Json = nlohmann::json;
  auto time = [](int64_t ms) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
  };
  auto money = [](const std::string& currency, int64_t minor) {
    int digits = events::CurrencyMinorDigits(currency).value_or(2);
    if (digits == 0) return absl::StrCat(minor);
    int64_t scale = 1;
    for (int i = 0; i < digits; ++i) scale *= 10;
    // Unsigned, so that the clamped INT64_MIN has a magnitude too.
    const uint64_t magnitude = minor < 0 ? 0 - static_cast<uint64_t>(minor) : static_cast<uint64_t>(minor);
    const auto unsigned_scale = static_cast<uint64_t>(scale);
    return absl::StrFormat("%s%d.%0*d", minor < 0 ? "-" : "", magnitude / unsigned_scale, digits,
                           magnitude % unsigned_scale);
  };
  Json f = Json::object();
  f["customer_id"] = p.customer_id();
  f["first_seen"] = time(p.first_seen_ms());
  f["last_seen"] = time(p.last_seen_ms());
  if (p.registered_at_ms() != 0) f["registered_at"] = time(p.registered_at_ms());
  f["kind"] = v1::CustomerKind_Name(p.kind());
  f["details"] = DetailsJson(p.details());
  if (!p.country().empty()) f["country"] = p.country();
  if (!p.language().empty()) f["language"] = p.language();
  if (!p.company_id().empty()) f["company_id"] = p.company_id();
  if (!p.traits().empty()) {
    Json traits = Json::object();
    for (const auto& [k, v] : p.traits()) traits[k] = v;
    f["traits"] = std::move(traits);
  }
  f["preferences"] = PreferencesJson(p.preferences());
  if (p.has_business_role()) {
    f["business_role"] = {{"level", v1::RoleLevel_Name(p.business_role().level())},
                          {"function", v1::RoleFunction_Name(p.business_role().function())}};
  }
  Json identities = Json::array();
  for (const auto& i : p.identities()) {
    Json x = {{"kind", v1::IdentityKind_Name(i.kind())},
              {"value", i.identifier().value()},
              {"linked_at", time(i.linked_at_ms())}};
    if (!i.issuer().empty()) x["issuer"] = i.issuer();
    identities.push_back(std::move(x));
  }
  f["identities"] = std::move(identities);
  Json channels = Json::object();
  for (const auto& c : p.channels()) {
    channels[v1::Channel_Name(c.channel())] = {{"events", c.events()}, {"last_seen", time(c.last_seen_ms())}};
  }
  f["channels"] = std::move(channels);
  Json orders = {{"count", p.orders()}, {"refunds", p.refunds()}};
  if (p.orders() > 0) {
    orders["first"] = time(p.first_order_ms());
    orders["last"] = time(p.last_order_ms());
  }
  Json revenue = Json::object(), refunded = Json::object();
  for (const auto& r : p.revenue()) revenue[r.currency()] = money(r.currency(), r.minor_units());
  for (const auto& r : p.refunded()) refunded[r.currency()] = money(r.currency(), r.minor_units());
  orders["revenue"] = std::move(revenue);
  orders["refunded"] = std::move(refunded);
  if (p.orders() > 0 && p.revenue_size() == 1) {
    orders["average_order_value"] = money(p.revenue(0).currency(), p.revenue(0).minor_units() / p.orders());
  }
  f["orders"] = std::move(orders);
  Json spend = Json::object();
  for (const auto& s : p.category_spend()) spend[s.category()][s.currency()] = money(s.currency(), s.minor_units());
  f["spend_by_category"] = std::move(spend);
  Json loyalty = {{"points", p.loyalty_points()}};
  if (!p.loyalty_tier().empty()) loyalty["tier"] = p.loyalty_tier();
  f["loyalty"] = std::move(loyalty);
  Json complaints = Json::array();
  for (const auto& c : p.open_complaints()) {
    complaints.push_back({{"case_id", c.case_id()},
                          {"category", v1::ComplaintCategory_Name(c.category())},
                          {"severity", v1::Severity_Name(c.severity())},
                          {"opened_at", time(c.opened_at_ms())}});
  }
  f["open_complaints"] = std::move(complaints);
  f["complaints_opened"] = p.complaints_opened();
  if (p.last_service_rating_ms() != 0) {
    f["last_service_rating"] = {{"satisfaction", v1::Satisfaction_Name(p.last_service_rating())},
                                {"at", time(p.last_service_rating_ms())}};
  }
  if (p.has_nps()) f["last_nps"] = {{"score", p.last_nps()}, {"at", time(p.last_nps_ms())}};
  Json reviews = {{"count", p.reviews()}};
  if (p.reviews() > 0) {
    reviews["mean_rating"] = static_cast<double>(p.review_rating_sum()) / static_cast<double>(p.reviews());
  }
  f["reviews"] = std::move(reviews);
  Json consents = Json::object();
  for (const auto& c : p.consents()) {
    consents[v1::ConsentPurpose_Name(c.purpose())] = v1::ConsentStatus_Name(c.status());
  }
  f["consents"] = std::move(consents);
  f["interactions"] = p.interactions();
  f["campaign_touches"] = p.campaign_touches();
  f["events"] = p.events();
  // Stored strings are valid UTF-8 (protobuf checks on parse); replace rather
  // than throw should one ever not be.
  return f.dump(style == events::JsonStyle::kIndented ? 1 : -1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace rapport::projections
