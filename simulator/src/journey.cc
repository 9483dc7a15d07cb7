// One simulated customer's journey: a state machine over every touchpoint
// event kind, with the follow-ups each one schedules (a complaint's
// resolution, a campaign's conversion, a purchase's review). Kept in one
// file, over 600 lines, because the kinds share the journey's state and its
// one random stream: the stream's order is what makes a seed reproducible.
#include "journey.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rapport::simulator {
namespace {

constexpr int kStores = 40;
constexpr int kAgents = 60;
constexpr int kHotels = 30;
constexpr int kRestaurants = 30;
constexpr int kProductsPerCategory = 50;
const char* const kTiers[] = {"basic", "silver", "gold", "platinum"};
constexpr int64_t kTierThresholds[] = {0, 500, 2000, 6000};  // lifetime points

// A wait in days as milliseconds. Rates near zero (a gamma draw can give
// 1e-10 a day) make waits far beyond any period: clamp them, or the int64
// conversion overflows into a time in the past.
int64_t DaysToMillis(double days) {
  constexpr double kLongerThanAnyPeriod = 1e7;  // days, about 27,000 years
  return static_cast<int64_t>(std::min(days, kLongerThanAnyPeriod) * static_cast<double>(kDay));
}

google::protobuf::Timestamp Timestamp(int64_t ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(ms / 1000);
  t.set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
  return t;
}

// A UUIDv7 from an event time and 64 bits that identify the event.
std::string EventId(int64_t ms, uint64_t bits) {
  uint64_t high = (static_cast<uint64_t>(ms) << 16) | 0x7000 | ((bits >> 52) & 0x0fff);
  uint64_t low = 0x8000000000000000ULL | (bits & 0x3fffffffffffffffULL);
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32, (high >> 16) & 0xffff, high & 0xffff, low >> 48,
                         low & 0xffffffffffffULL);
}

void SetDuration(google::protobuf::Duration* d, double seconds) {
  int64_t ms = std::llround(seconds * 1000);
  d->set_seconds(ms / 1000);
  d->set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
}

std::string Numbered(const char* prefix, int64_t n) { return absl::StrFormat("%s-%03d", prefix, n + 1); }

}  // namespace

World::World(uint64_t seed_value, int64_t start_ms, int64_t end_ms) : seed(seed_value) {
  Random random(Mix(seed_value, 0x5eed'0f'0c'0a'57ULL));
  auto qualities = [&](int n, double a, double b) {
    std::vector<double> q(static_cast<size_t>(n));
    for (double& x : q) x = random.Beta(a, b);
    return q;
  };
  store_quality = qualities(kStores, 6, 2);
  agent_quality = qualities(kAgents, 5, 2);
  hotel_quality = qualities(kHotels, 5, 2);
  restaurant_quality = qualities(kRestaurants, 5, 2);
  for (int64_t t = start_ms + 2 * kDay + 9 * kHour; t < end_ms; t += 14 * kDay) campaign_times.push_back(t);
}

Journey::Journey(const World& world, const SimulationOptions& options, uint32_t index)
    : world_(world),
      options_(options),
      index_(index),
      customer_id_(absl::StrFormat("c-%07d", index + 1)),
      random_(Mix(options.seed, index, 0xc057)) {
  const int64_t start_ms = absl::ToUnixMillis(options.start);
  end_ms_ = start_ms + options.days * kDay;
  const auto& m = options.model;
  lambda_ = random_.Gamma(m.r, m.alpha);
  p_ = random_.Beta(m.a, m.b);
  acquired_ms_ =
      start_ms + static_cast<int64_t>(random_.Uniform() * static_cast<double>(end_ms_ - 2 * kHour - start_ms));

  business_ = random_.Chance(0.15);
  std::array<double, kCurrencies.size()> shares;
  for (size_t i = 0; i < shares.size(); ++i) shares[i] = kCurrencies[i].share;
  currency_ = &kCurrencies[random_.Pick(shares)];
  spend_scale_ = random_.LogNormal(0, 0.8);
  for (double& w : category_weights_) w = random_.Gamma(0.5, 1.0);
  purchase_channels_ = {random_.Gamma(2, 1), random_.Gamma(1.5, 1), random_.Gamma(1, 1), random_.Gamma(0.3, 1)};
  contact_channels_ = {random_.Gamma(2, 1), random_.Gamma(1.2, 1), random_.Gamma(1, 1), random_.Gamma(1.5, 1),
                       random_.Gamma(0.3, 1)};
  home_store_ = static_cast<int>(random_.UniformInt(0, kStores - 1));
  mood_ = random_.Beta(5, 2);
  next_.fill(kNever);
  next_time_ = std::max(start_ms, acquired_ms_ - random_.UniformInt(kMinute, 2 * kHour));
}

CustomerTruth Journey::Truth() const {
  return {.customer_id = customer_id_,
          .acquired_at = absl::FromUnixMillis(acquired_ms_),
          .purchase_rate_per_day = lambda_,
          .dropout_probability = p_,
          .alive_at_end = alive_,
          .dropped_out_at = dropped_ms_ == kNever ? absl::InfinitePast() : absl::FromUnixMillis(dropped_ms_),
          .purchases = purchases_,
          .revenue_eur_cents = revenue_eur_cents_};
}

void Journey::Schedule(int64_t at, FollowUpKind kind, int32_t a, int32_t b, int64_t amount) {
  if (at >= end_ms_) return;
  follow_ups_.push({at, follow_up_order_++, kind, a, b, amount});
}

void Journey::UpdateNextTime() {
  int64_t next = follow_ups_.empty() ? kNever : follow_ups_.top().at;
  for (int64_t t : next_) next = std::min(next, t);
  next_time_ = next >= end_ms_ ? kNever : next;
}

void Journey::Emit(v1::Envelope& e) {
  e.Clear();
  if (!registered_) {
    registered_ = true;
    Register(e);
    UpdateNextTime();
    return;
  }
  // Follow-ups first on a tie, then processes in a fixed order: deterministic.
  size_t process = next_.size();
  int64_t at = follow_ups_.empty() ? kNever : follow_ups_.top().at;
  for (size_t i = 0; i < next_.size(); ++i) {
    if (next_[i] < at) {
      at = next_[i];
      process = i;
    }
  }
  if (process == next_.size()) {
    FollowUp f = follow_ups_.top();
    follow_ups_.pop();
    FollowUpEvent(e, f);
  } else {
    switch (static_cast<Process>(process)) {
      case Process::kPurchase:
        Purchase(e, at, false);
        break;
      case Process::kContact:
        Contact(e, at);
        break;
      case Process::kCampaign:
        Campaign(e, at);
        break;
      case Process::kProfile:
        Profile(e, at);
        break;
      case Process::kSurvey:
        Survey(e, at);
        break;
      case Process::kConsent:
        Consent(e, at, !marketing_consent_);
        break;
      case Process::kPhone:
        Phone(e, at);
        break;
      case Process::kCount:
        break;
    }
  }
  UpdateNextTime();
}

void Journey::Envelope(v1::Envelope& e, int64_t at, v1::Channel channel, const std::string& source) {
  uint64_t bits = Mix(options_.seed, index_, sequence_++);
  e.set_event_id(EventId(at, bits));
  e.set_customer_id(customer_id_);
  *e.mutable_occurred_at() = Timestamp(at);
  *e.mutable_recorded_at() = Timestamp(at + 50 + static_cast<int64_t>(bits % 2000));  // ingest latency
  e.set_source(source);
  e.set_channel(channel);
}

std::string Journey::Id(const char* prefix, uint64_t n) const { return absl::StrCat(prefix, "-", index_ + 1, "-", n); }

int64_t Journey::ToMinor(double eur) const {
  return std::max<int64_t>(1, std::llround(eur * currency_->per_eur * std::pow(10.0, currency_->digits)));
}

v1::Money Journey::Money(int64_t minor) const {
  v1::Money money;
  money.set_currency(currency_->code);
  if (currency_->digits == 0) {
    money.set_amount(absl::StrCat(minor));
  } else {
    money.set_amount(absl::StrFormat("%d.%02d", minor / 100, minor % 100));
  }
  return money;
}

void Journey::Register(v1::Envelope& e) {
  const int64_t at = next_time_;
  bool on_app = random_.Chance(0.3);
  Envelope(e, at, on_app ? v1::CHANNEL_APP : v1::CHANNEL_WEB, on_app ? "app/signup" : "web/signup");
  auto* p = e.mutable_customer_registered();
  p->set_kind(business_ ? v1::CUSTOMER_KIND_BUSINESS : v1::CUSTOMER_KIND_CONSUMER);
  p->mutable_details()->set_given_name(Numbered("Given", index_));
  p->mutable_details()->set_family_name(Numbered("Family", index_));
  p->mutable_details()->set_email(absl::StrCat(customer_id_, "@mail.example"));
  static const char* const kCountries[] = {"DE", "US", "GB", "JP", "CH"};
  p->set_country(kCountries[currency_ - kCurrencies.data()]);
  static const char* const kLanguages[] = {"de", "en", "en", "ja", "de"};
  p->set_language(kLanguages[currency_ - kCurrencies.data()]);
  if (business_) p->set_company_id(absl::StrFormat("co-%05d", index_ % 997));
  Schedule(at + 2 * kSecond, FollowUpKind::kLinkEmail);
  Schedule(at + 5 * kSecond, FollowUpKind::kConsentAtSignup, random_.Chance(0.7) ? 1 : 0);
  Schedule(std::max(acquired_ms_, at + 10 * kSecond), FollowUpKind::kFirstPurchase);
}

void Journey::Purchase(v1::Envelope& e, int64_t at, bool first) {
  static const v1::Channel kChannels[] = {v1::CHANNEL_STORE, v1::CHANNEL_WEB, v1::CHANNEL_APP, v1::CHANNEL_PARTNER};
  size_t channel = random_.Pick(purchase_channels_);
  int store = random_.Chance(0.85) ? home_store_ : static_cast<int>(random_.UniformInt(0, kStores - 1));
  static const char* const kPartners[] = {"airline-skyways", "rail-eurolink", "hotel-booker", "card-offers"};
  const char* partner = kPartners[random_.UniformInt(0, 3)];
  std::string source = channel == 0   ? absl::StrCat("pos/", Numbered("store", store))
                       : channel == 1 ? std::string("web/shop")
                       : channel == 2 ? std::string("app/shop")
                                      : absl::StrCat("partner/", partner);
  Envelope(e, at, kChannels[channel], source);
  uint32_t order = ++orders_;
  auto* p = e.mutable_purchase_completed();
  p->set_order_id(Id("o", order));
  if (channel == 0) p->set_store_id(Numbered("store", store));
  if (channel == 3) p->set_merchant(partner);

  int items = 1 + random_.Chance(0.5) + random_.Chance(0.25) + random_.Chance(0.1);
  int64_t total = 0;
  double total_eur = 0;
  size_t main_category = 0;
  int64_t last_unit = 0;
  for (int i = 0; i < items; ++i) {
    size_t category = random_.Pick(category_weights_);
    if (i == 0) main_category = category;
    double unit_eur = kCategories[category].base_price_eur * spend_scale_ * random_.LogNormal(0, 0.35);
    int quantity = 1 + random_.Chance(0.2);
    int64_t unit = ToMinor(unit_eur);
    auto* item = p->add_items();
    int product = static_cast<int>(random_.UniformInt(0, kProductsPerCategory - 1));
    item->set_sku(absl::StrFormat("sku-%s-%03d", kCategories[category].name, product + 1));
    item->set_category(kCategories[category].name);
    item->set_quantity(quantity);
    *item->mutable_unit_price() = Money(unit);
    total += unit * quantity;
    total_eur += unit_eur * quantity;
    last_unit = unit;
  }
  *p->mutable_total() = Money(total);
  ++purchases_;
  revenue_eur_cents_ += std::llround(total_eur * 100);

  if (!loyalty_member_ && first && random_.Chance(0.5)) Schedule(at + kSecond, FollowUpKind::kLinkLoyaltyCard);
  if (loyalty_member_ || first) {
    int64_t points = std::max<int64_t>(1, std::llround(total_eur));
    Schedule(at + 2 * kSecond, FollowUpKind::kLoyaltyEarned, static_cast<int32_t>(order), 0, points);
  }
  if (points_balance_ > 1000 && random_.Chance(0.3)) {
    Schedule(at + 3 * kSecond, FollowUpKind::kLoyaltyRedeemed, static_cast<int32_t>(order), 0, 500);
  }
  if (channel == 2 && !device_linked_) {
    device_linked_ = true;
    Schedule(at + kSecond, FollowUpKind::kLinkDevice);
  }
  if (random_.Chance(0.12)) {
    v1::SubjectType type = main_category == kTravelCategory        ? v1::SUBJECT_TYPE_HOTEL
                           : main_category == kRestaurantsCategory ? v1::SUBJECT_TYPE_RESTAURANT
                           : channel == 0                          ? v1::SUBJECT_TYPE_STORE
                                                                   : v1::SUBJECT_TYPE_PRODUCT;
    int subject =
        type == v1::SUBJECT_TYPE_HOTEL        ? static_cast<int>(random_.UniformInt(0, kHotels - 1))
        : type == v1::SUBJECT_TYPE_RESTAURANT ? static_cast<int>(random_.UniformInt(0, kRestaurants - 1))
        : type == v1::SUBJECT_TYPE_STORE
            ? store
            : static_cast<int>(main_category * kProductsPerCategory + random_.UniformInt(0, kProductsPerCategory - 1));
    Schedule(at + random_.UniformInt(kDay, 10 * kDay), FollowUpKind::kReview, type, subject);
  }
  if (random_.Chance(0.03)) {
    Schedule(at + random_.UniformInt(3 * kDay, 20 * kDay), FollowUpKind::kRefund, 0, static_cast<int32_t>(order),
             last_unit);
  }
  if (channel != 0 && random_.Chance(0.02 * (1.5 - mood_))) {
    Schedule(at + random_.UniformInt(kDay, 5 * kDay), FollowUpKind::kComplaintOpened,
             random_.Chance(0.6) ? v1::COMPLAINT_CATEGORY_DELIVERY : v1::COMPLAINT_CATEGORY_PRODUCT, 0, 400);
  }

  if (!first && random_.Chance(p_)) {  // BG/NBD: may drop out after each repeat purchase
    alive_ = false;
    dropped_ms_ = at;
    for (Process process :
         {Process::kPurchase, Process::kContact, Process::kProfile, Process::kSurvey, Process::kPhone}) {
      next_[static_cast<size_t>(process)] = kNever;
    }
    return;
  }
  next_[static_cast<size_t>(Process::kPurchase)] = at + DaysToMillis(random_.Exponential(lambda_));
}

void Journey::Contact(v1::Envelope& e, int64_t at) {
  enum { kCall, kChat, kEmail, kVisit, kSocial };
  int kind = static_cast<int>(random_.Pick(contact_channels_));
  int agent = static_cast<int>(random_.UniformInt(0, kAgents - 1));
  int store = random_.Chance(0.8) ? home_store_ : static_cast<int>(random_.UniformInt(0, kStores - 1));
  double quality = kind == kVisit ? world_.store_quality[store] : world_.agent_quality[agent];
  double mean_wait = kind == kCall    ? 60 + 900 * (1 - quality)
                     : kind == kChat  ? 20 + 300 * (1 - quality)
                     : kind == kVisit ? 30 + 900 * (1 - quality)
                                      : 4 * 3600 * (1.2 - quality);
  double wait = std::min(random_.Exponential(1.0 / mean_wait), 20.0 * 3600);
  double handle = kind == kEmail ? 120 : std::min(random_.LogNormal(std::log(240), 0.6), 3.0 * 3600);
  double score =
      std::clamp(quality - (kind == kEmail ? wait / 86400 : wait / 1800) * 0.6 + random_.Normal(0, 0.1), 0.0, 1.0);

  static const v1::Channel kChannels[] = {v1::CHANNEL_CALL_CENTRE, v1::CHANNEL_CHAT, v1::CHANNEL_EMAIL,
                                          v1::CHANNEL_STORE, v1::CHANNEL_SOCIAL};
  static const char* const kSources[] = {"callcentre/ivr", "chat/widget", "email/support", "", "social/dm"};
  Envelope(e, at, kChannels[kind], kind == kVisit ? absl::StrCat("pos/", Numbered("store", store)) : kSources[kind]);
  auto* p = e.mutable_interaction();
  static const v1::InteractionKind kKinds[] = {v1::INTERACTION_KIND_CALL, v1::INTERACTION_KIND_CHAT,
                                               v1::INTERACTION_KIND_EMAIL, v1::INTERACTION_KIND_VISIT,
                                               v1::INTERACTION_KIND_CHAT};
  p->set_kind(kKinds[kind]);
  p->set_direction(random_.Chance(0.9) ? v1::DIRECTION_INBOUND : v1::DIRECTION_OUTBOUND);
  SetDuration(p->mutable_wait_time(), wait);
  SetDuration(p->mutable_handle_time(), handle);
  bool abandoned = kind == kCall && wait > 900 && random_.Chance(0.5);
  p->set_outcome(abandoned                             ? v1::INTERACTION_OUTCOME_ABANDONED
                 : random_.Chance(0.45 + 0.45 * score) ? v1::INTERACTION_OUTCOME_RESOLVED
                 : random_.Chance(0.4)                 ? v1::INTERACTION_OUTCOME_ESCALATED
                                                       : v1::INTERACTION_OUTCOME_FOLLOW_UP);
  if (kind != kVisit) p->set_agent_id(Numbered("agent", agent));
  static const char* const kTopics[] = {"billing", "delivery-status", "product-question",
                                        "account", "returns",         "loyalty"};
  p->set_topic(kTopics[random_.UniformInt(0, 5)]);
  Experience(score);

  int64_t score_milli = std::llround(score * 1000);
  if (kind == kVisit && random_.Chance(0.5)) {
    Schedule(at + random_.UniformInt(10 * kSecond, 2 * kMinute), FollowUpKind::kServiceRated, v1::SERVICE_POINT_COUNTER,
             store, score_milli);
  } else if ((kind == kCall || kind == kChat) && random_.Chance(0.25)) {
    Schedule(at + random_.UniformInt(kSecond, kMinute), FollowUpKind::kServiceRated, v1::SERVICE_POINT_AGENT, agent,
             score_milli);
  }
  if (score < 0.35 && random_.Chance(0.5)) {
    v1::ComplaintCategory category = wait > 600            ? v1::COMPLAINT_CATEGORY_WAITING_TIME
                                     : random_.Chance(0.5) ? v1::COMPLAINT_CATEGORY_STAFF
                                                           : v1::COMPLAINT_CATEGORY_SERVICE;
    Schedule(at + random_.UniformInt(10 * kMinute, 2 * kDay), FollowUpKind::kComplaintOpened, category, 0, score_milli);
  }
  if (random_.Chance(0.03)) {
    bool store_review = kind == kVisit;
    Schedule(at + random_.UniformInt(kHour, 3 * kDay), FollowUpKind::kReview,
             store_review ? v1::SUBJECT_TYPE_STORE : v1::SUBJECT_TYPE_AGENT, store_review ? store : agent);
  }
  next_[static_cast<size_t>(Process::kContact)] = at + DaysToMillis(random_.Exponential(1.0 / 50));
}

void Journey::Campaign(v1::Envelope& e, int64_t at) {
  size_t campaign = next_campaign_++;
  Envelope(e, at, v1::CHANNEL_EMAIL, "email/esp");
  auto* p = e.mutable_campaign_touched();
  p->set_campaign_id(absl::StrCat("cmp-", campaign + 1));
  p->set_action(v1::CAMPAIGN_ACTION_SENT);
  p->set_message_id(Id("m", campaign + 1));
  if (random_.Chance(alive_ ? 0.35 : 0.04)) {
    Schedule(at + DaysToMillis(random_.Exponential(3.0)), FollowUpKind::kCampaignOpened,
             static_cast<int32_t>(campaign));
  }
  ScheduleCampaignFrom(next_campaign_);
}

void Journey::ScheduleCampaignFrom(size_t campaign) {
  // Each campaign targets a segment: a consented customer is in it 45% of the time.
  const auto& times = world_.campaign_times;
  while (campaign < times.size() && !random_.Chance(0.45)) ++campaign;
  next_campaign_ = campaign;
  next_[static_cast<size_t>(Process::kCampaign)] = campaign < times.size() ? times[campaign] : kNever;
}

void Journey::Profile(v1::Envelope& e, int64_t at) {
  int channel = static_cast<int>(random_.UniformInt(0, 2));
  static const v1::Channel kChannels[] = {v1::CHANNEL_WEB, v1::CHANNEL_APP, v1::CHANNEL_CALL_CENTRE};
  static const char* const kSources[] = {"web/account", "app/account", "crm"};
  Envelope(e, at, kChannels[channel], kSources[channel]);
  auto* p = e.mutable_profile_updated();
  static const char* const kSeats[] = {"aisle", "window"};
  static const char* const kMeals[] = {"standard", "vegetarian", "vegan", "halal", "kosher"};
  static const char* const kDrinks[] = {"flat white", "espresso", "tea", "water", "orange juice"};
  p->mutable_preferences()->set_seat(kSeats[random_.UniformInt(0, 1)]);
  p->mutable_preferences()->set_meal(kMeals[random_.UniformInt(0, 4)]);
  p->mutable_preferences()->set_drink(kDrinks[random_.UniformInt(0, 4)]);
  (*p->mutable_traits())["home_store"] = Numbered("store", home_store_);
  (*p->mutable_traits())["segment"] = spend_scale_ > 2 ? "premium" : spend_scale_ > 0.7 ? "core" : "budget";
  if (business_) {
    static const v1::RoleLevel kLevels[] = {v1::ROLE_LEVEL_OPERATOR, v1::ROLE_LEVEL_MANAGER,
                                            v1::ROLE_LEVEL_DECISION_MAKER};
    static const v1::RoleFunction kFunctions[] = {v1::ROLE_FUNCTION_USER, v1::ROLE_FUNCTION_TECHNICAL,
                                                  v1::ROLE_FUNCTION_FINANCE};
    p->mutable_business_role()->set_level(kLevels[index_ % 3]);
    p->mutable_business_role()->set_function(kFunctions[(index_ / 3) % 3]);
  }
  next_[static_cast<size_t>(Process::kProfile)] = at + DaysToMillis(random_.Exponential(1.0 / 150));
}

void Journey::Survey(v1::Envelope& e, int64_t at) {
  Envelope(e, at, v1::CHANNEL_EMAIL, "email/nps");
  auto* p = e.mutable_survey_answered();
  p->set_survey_id(absl::StrCat("nps-", (at - absl::ToUnixMillis(options_.start)) / (91 * kDay) + 1));
  double expected = 2 + 8 * mood_ - 1.5 * open_complaints_;
  p->set_nps_score(static_cast<int32_t>(std::clamp<int64_t>(std::llround(random_.Normal(expected, 1.2)), 0, 10)));
  if (random_.Chance(0.3)) {
    p->mutable_comment()->set_body(p->nps_score() >= 9   ? "Great service, thank you."
                                   : p->nps_score() >= 7 ? "Fine, nothing special."
                                                         : "Too many problems lately.");
  }
  next_[static_cast<size_t>(Process::kSurvey)] = at + DaysToMillis(random_.Exponential(1.0 / 120));
}

void Journey::Consent(v1::Envelope& e, int64_t at, bool granted) {
  Envelope(e, at, v1::CHANNEL_WEB, "web/preferences");
  e.mutable_consent_changed()->set_purpose(v1::CONSENT_PURPOSE_MARKETING_EMAIL);
  e.mutable_consent_changed()->set_status(granted ? v1::CONSENT_STATUS_GRANTED : v1::CONSENT_STATUS_WITHDRAWN);
  marketing_consent_ = granted;
  auto& campaign = next_[static_cast<size_t>(Process::kCampaign)];
  if (!granted) {
    campaign = kNever;
  } else {
    const auto& times = world_.campaign_times;
    ScheduleCampaignFrom(static_cast<size_t>(std::upper_bound(times.begin(), times.end(), at) - times.begin()));
  }
  next_[static_cast<size_t>(Process::kConsent)] = at + DaysToMillis(random_.Exponential(1.0 / 400));
}

void Journey::Phone(v1::Envelope& e, int64_t at) {
  Envelope(e, at, v1::CHANNEL_APP, "app/account");
  auto* p = e.mutable_identity_linked();
  p->set_kind(v1::IDENTITY_KIND_PHONE);
  p->mutable_identifier()->set_value(absl::StrFormat("+49151%08d", index_));
  next_[static_cast<size_t>(Process::kPhone)] = kNever;
}

void Journey::FollowUpEvent(v1::Envelope& e, const FollowUp& f) {
  const int64_t at = f.at;
  switch (f.kind) {
    case FollowUpKind::kLinkEmail: {
      Envelope(e, at, v1::CHANNEL_WEB, "web/signup");
      auto* p = e.mutable_identity_linked();
      p->set_kind(v1::IDENTITY_KIND_EMAIL);
      p->mutable_identifier()->set_value(absl::StrCat(customer_id_, "@mail.example"));
      break;
    }
    case FollowUpKind::kConsentAtSignup:
      Consent(e, at, f.a == 1);
      break;
    case FollowUpKind::kFirstPurchase:
      Purchase(e, at, true);
      next_[static_cast<size_t>(Process::kContact)] = at + DaysToMillis(random_.Exponential(1.0 / 50));
      next_[static_cast<size_t>(Process::kProfile)] =
          at +
          (random_.Chance(0.6) ? random_.UniformInt(kHour, 10 * kDay) : DaysToMillis(random_.Exponential(1.0 / 150)));
      next_[static_cast<size_t>(Process::kSurvey)] = at + DaysToMillis(random_.Exponential(1.0 / 120));
      if (random_.Chance(0.5))
        next_[static_cast<size_t>(Process::kPhone)] = at + DaysToMillis(random_.Exponential(1.0 / 30));
      break;
    case FollowUpKind::kLinkLoyaltyCard: {
      loyalty_member_ = true;
      Envelope(e, at, v1::CHANNEL_STORE, "loyalty/enrolment");
      auto* p = e.mutable_identity_linked();
      p->set_kind(v1::IDENTITY_KIND_LOYALTY_CARD);
      p->mutable_identifier()->set_value(absl::StrFormat("LC-%08d", index_ + 1));
      p->set_issuer("loyalty");
      break;
    }
    case FollowUpKind::kLinkDevice: {
      Envelope(e, at, v1::CHANNEL_APP, "app/shop");
      auto* p = e.mutable_identity_linked();
      p->set_kind(v1::IDENTITY_KIND_DEVICE);
      p->mutable_identifier()->set_value(absl::StrFormat("dev-%016x", Mix(options_.seed, index_, 0xde71ce)));
      break;
    }
    case FollowUpKind::kLoyaltyEarned:
    case FollowUpKind::kLoyaltyRedeemed: {
      bool earned = f.kind == FollowUpKind::kLoyaltyEarned;
      Envelope(e, at, v1::CHANNEL_OTHER, "loyalty/engine");
      auto* p = e.mutable_loyalty_activity();
      p->set_program_id("bonus-club");
      p->set_action(earned ? v1::LOYALTY_ACTION_POINTS_EARNED : v1::LOYALTY_ACTION_POINTS_REDEEMED);
      p->set_points(f.amount);
      p->set_reference(Id("o", static_cast<uint64_t>(f.a)));
      points_balance_ += earned ? f.amount : -f.amount;
      if (earned) {
        points_lifetime_ += f.amount;
        int tier = tier_;
        while (tier + 1 < 4 && points_lifetime_ >= kTierThresholds[tier + 1]) ++tier;
        if (tier != tier_) {
          tier_ = tier;
          Schedule(at + kSecond, FollowUpKind::kTierChanged, tier);
        }
      }
      break;
    }
    case FollowUpKind::kTierChanged: {
      Envelope(e, at, v1::CHANNEL_OTHER, "loyalty/engine");
      auto* p = e.mutable_loyalty_activity();
      p->set_program_id("bonus-club");
      p->set_action(v1::LOYALTY_ACTION_TIER_CHANGED);
      p->set_tier(kTiers[f.a]);
      break;
    }
    case FollowUpKind::kReview: {
      auto type = static_cast<v1::SubjectType>(f.a);
      double quality = type == v1::SUBJECT_TYPE_HOTEL        ? world_.hotel_quality[f.b]
                       : type == v1::SUBJECT_TYPE_RESTAURANT ? world_.restaurant_quality[f.b]
                       : type == v1::SUBJECT_TYPE_STORE      ? world_.store_quality[f.b]
                       : type == v1::SUBJECT_TYPE_AGENT      ? world_.agent_quality[f.b]
                                                             : 0.75;
      double expected = 1 + 4 * (0.6 * quality + 0.4 * mood_) - 0.7 * open_complaints_;
      int rating = static_cast<int>(std::clamp<int64_t>(std::llround(random_.Normal(expected, 0.7)), 1, 5));
      bool on_app = random_.Chance(0.4);
      Envelope(e, at, on_app ? v1::CHANNEL_APP : v1::CHANNEL_WEB, on_app ? "app/reviews" : "web/reviews");
      auto* p = e.mutable_review_submitted();
      p->set_review_id(Id("r", sequence_));
      p->set_subject_type(type);
      p->set_subject_id(type == v1::SUBJECT_TYPE_HOTEL        ? Numbered("hotel", f.b)
                        : type == v1::SUBJECT_TYPE_RESTAURANT ? Numbered("restaurant", f.b)
                        : type == v1::SUBJECT_TYPE_STORE      ? Numbered("store", f.b)
                        : type == v1::SUBJECT_TYPE_AGENT
                            ? Numbered("agent", f.b)
                            : absl::StrFormat("sku-%s-%03d", kCategories[f.b / kProductsPerCategory].name,
                                              f.b % kProductsPerCategory + 1));
      p->set_rating(rating);
      static const char* const kTitles[] = {"Terrible", "Disappointing", "It was fine", "Good", "Excellent"};
      p->mutable_text()->set_title(kTitles[rating - 1]);
      p->set_language(currency_->code == std::string_view("EUR") || currency_->code == std::string_view("CHF") ? "de"
                                                                                                               : "en");
      Experience(rating / 5.0);
      break;
    }
    case FollowUpKind::kRefund: {
      Envelope(e, at, v1::CHANNEL_WEB, "web/returns");
      auto* p = e.mutable_refund_issued();
      p->set_order_id(Id("o", static_cast<uint64_t>(f.b)));
      *p->mutable_amount() = Money(f.amount);
      static const char* const kReasons[] = {"damaged", "wrong-item", "late-delivery", "changed-mind"};
      p->set_reason(kReasons[random_.UniformInt(0, 3)]);
      break;
    }
    case FollowUpKind::kServiceRated: {
      auto point = static_cast<v1::ServicePoint>(f.a);
      bool counter = point == v1::SERVICE_POINT_COUNTER;
      Envelope(e, at, counter ? v1::CHANNEL_KIOSK : v1::CHANNEL_CALL_CENTRE,
               counter ? absl::StrCat("kiosk/", Numbered("store", f.b)) : std::string("callcentre/survey"));
      auto* p = e.mutable_service_rated();
      double score = static_cast<double>(f.amount) / 1000 + random_.Normal(0, 0.1);
      p->set_satisfaction(score < 0.2   ? v1::SATISFACTION_VERY_DISSATISFIED
                          : score < 0.4 ? v1::SATISFACTION_DISSATISFIED
                          : score < 0.6 ? v1::SATISFACTION_NEUTRAL
                          : score < 0.8 ? v1::SATISFACTION_SATISFIED
                                        : v1::SATISFACTION_VERY_SATISFIED);
      p->set_point(point);
      p->set_point_id(counter ? absl::StrFormat("counter-%d", f.b % 4 + 1) : Numbered("agent", f.b));
      if (counter) p->set_branch_id(Numbered("store", f.b));
      break;
    }
    case FollowUpKind::kComplaintOpened: {
      static const v1::Channel kChannels[] = {v1::CHANNEL_CALL_CENTRE, v1::CHANNEL_EMAIL, v1::CHANNEL_CHAT,
                                              v1::CHANNEL_SOCIAL};
      static const char* const kSources[] = {"callcentre/cases", "email/support", "chat/widget", "social/mentions"};
      int channel = static_cast<int>(random_.UniformInt(0, 3));
      Envelope(e, at, kChannels[channel], kSources[channel]);
      auto* p = e.mutable_complaint_opened();
      uint32_t number = ++complaints_;
      p->set_case_id(Id("case", number));
      p->set_category(static_cast<v1::ComplaintCategory>(f.a));
      double badness = 1.0 - static_cast<double>(f.amount) / 1000;
      v1::Severity severity = badness > 0.85  ? v1::SEVERITY_CRITICAL
                              : badness > 0.7 ? v1::SEVERITY_HIGH
                              : badness > 0.5 ? v1::SEVERITY_MEDIUM
                                              : v1::SEVERITY_LOW;
      p->set_severity(severity);
      ++open_complaints_;
      Experience(0.1);
      if (random_.Chance(0.85)) {
        Schedule(at + DaysToMillis(random_.Exponential(1.0 / 4)), FollowUpKind::kComplaintResolved, f.a,
                 static_cast<int32_t>(number), severity);
      }
      break;
    }
    case FollowUpKind::kComplaintResolved: {
      Envelope(e, at, v1::CHANNEL_CALL_CENTRE, "callcentre/cases");
      auto* p = e.mutable_complaint_resolved();
      p->set_case_id(Id("case", static_cast<uint64_t>(f.b)));
      p->set_category(static_cast<v1::ComplaintCategory>(f.a));
      p->set_severity(static_cast<v1::Severity>(f.amount));
      static const double kWeights[] = {0.55, 0.25, 0.12, 0.08};
      static const v1::Resolution kResolutions[] = {v1::RESOLUTION_RESOLVED, v1::RESOLUTION_COMPENSATED,
                                                    v1::RESOLUTION_REJECTED, v1::RESOLUTION_WITHDRAWN};
      v1::Resolution resolution = kResolutions[random_.Pick(kWeights)];
      p->set_resolution(resolution);
      --open_complaints_;
      Experience(resolution == v1::RESOLUTION_REJECTED ? 0.2 : resolution == v1::RESOLUTION_COMPENSATED ? 0.8 : 0.6);
      break;
    }
    case FollowUpKind::kCampaignOpened:
    case FollowUpKind::kCampaignClicked:
    case FollowUpKind::kCampaignConverted: {
      bool on_app = random_.Chance(0.3);
      Envelope(e, at,
               f.kind == FollowUpKind::kCampaignOpened ? v1::CHANNEL_EMAIL
               : on_app                                ? v1::CHANNEL_APP
                                                       : v1::CHANNEL_WEB,
               "email/esp");
      auto* p = e.mutable_campaign_touched();
      p->set_campaign_id(absl::StrCat("cmp-", f.a + 1));
      p->set_message_id(Id("m", static_cast<uint64_t>(f.a) + 1));
      if (f.kind == FollowUpKind::kCampaignOpened) {
        p->set_action(v1::CAMPAIGN_ACTION_OPENED);
        if (random_.Chance(0.25))
          Schedule(at + random_.UniformInt(5 * kSecond, 10 * kMinute), FollowUpKind::kCampaignClicked, f.a);
      } else if (f.kind == FollowUpKind::kCampaignClicked) {
        p->set_action(v1::CAMPAIGN_ACTION_CLICKED);
        if (random_.Chance(0.15))
          Schedule(at + random_.UniformInt(kMinute, 2 * kHour), FollowUpKind::kCampaignConverted, f.a);
      } else {
        p->set_action(v1::CAMPAIGN_ACTION_CONVERTED);
      }
      break;
    }
  }
}

}  // namespace rapport::simulator
