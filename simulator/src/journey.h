#pragma once

// Private to the simulator: the simulated business and one customer's journey.

#include <array>
#include <cstdint>
#include <queue>
#include <string>
#include <vector>

#include "rapport/simulator/random.h"
#include "rapport/simulator/simulator.h"

namespace rapport::simulator {

inline constexpr int64_t kNever = INT64_MAX;
inline constexpr int64_t kSecond = 1000;
inline constexpr int64_t kMinute = 60 * kSecond;
inline constexpr int64_t kHour = 60 * kMinute;
inline constexpr int64_t kDay = 24 * kHour;

struct Currency {
  const char* code;
  double per_eur;  // fixed rate, so the truth file can sum revenue in EUR
  int digits;
  double share;  // of customers
};
inline constexpr std::array<Currency, 5> kCurrencies = {{
    {"EUR", 1.0, 2, 0.55},
    {"USD", 1.08, 2, 0.2},
    {"GBP", 0.86, 2, 0.12},
    {"JPY", 160.0, 0, 0.08},
    {"CHF", 0.95, 2, 0.05},
}};

struct Category {
  const char* name;
  double base_price_eur;  // a typical item
};
inline constexpr std::array<Category, 8> kCategories = {{
    {"groceries", 12},
    {"restaurants", 38},
    {"travel", 240},
    {"electronics", 150},
    {"fashion", 55},
    {"home", 70},
    {"beauty", 25},
    {"entertainment", 30},
}};
inline constexpr size_t kTravelCategory = 2;
inline constexpr size_t kRestaurantsCategory = 1;

// The business the customers meet: its stores (which are also the branches
// with service counters), agents, hotels, restaurants and campaign calendar,
// each with a service quality that ratings and reviews follow. Shared by all
// journeys, read-only after construction.
struct World {
  World(uint64_t seed, int64_t start_ms, int64_t end_ms);

  std::vector<double> store_quality;       // store-001 ...
  std::vector<double> agent_quality;       // agent-001 ...
  std::vector<double> hotel_quality;       // hotel-001 ...
  std::vector<double> restaurant_quality;  // restaurant-001 ...
  std::vector<int64_t> campaign_times;     // fortnightly; campaign k is "cmp-<k+1>"
  uint64_t seed;
};

enum class FollowUpKind : uint8_t {
  kLinkEmail,
  kConsentAtSignup,
  kFirstPurchase,
  kLoyaltyEarned,
  kLoyaltyRedeemed,
  kTierChanged,
  kReview,
  kRefund,
  kServiceRated,
  kComplaintOpened,
  kComplaintResolved,
  kCampaignOpened,
  kCampaignClicked,
  kCampaignConverted,
  kLinkDevice,
  kLinkLoyaltyCard,
};

// Something a past event set in motion (a review days after a purchase, the
// resolution of a complaint).
struct FollowUp {
  int64_t at;
  uint32_t order;  // creation order: ties in time keep it
  FollowUpKind kind;
  int32_t a = 0;  // meaning depends on kind: a subject, a point, a campaign ...
  int32_t b = 0;
  int64_t amount = 0;  // minor units, points or a score in thousandths
  bool operator>(const FollowUp& other) const { return at != other.at ? at > other.at : order > other.order; }
};

// One customer: who they are, their BG/NBD parameters, and the clocks of the
// processes that produce their events.
class Journey {
 public:
  Journey(const World& world, const SimulationOptions& options, uint32_t index);

  // Time of this customer's next event, kNever when there is none before the end.
  int64_t next_time() const { return next_time_; }

  // Writes the next event into `event` and advances.
  void Emit(v1::Envelope& event);

  CustomerTruth Truth() const;

 private:
  enum class Process : uint8_t { kPurchase, kContact, kCampaign, kProfile, kSurvey, kConsent, kPhone, kCount };

  void Schedule(int64_t at, FollowUpKind kind, int32_t a = 0, int32_t b = 0, int64_t amount = 0);
  void UpdateNextTime();
  void Envelope(v1::Envelope& event, int64_t at, v1::Channel channel, const std::string& source);

  void Register(v1::Envelope& e);
  void Purchase(v1::Envelope& e, int64_t at, bool first);
  void Contact(v1::Envelope& e, int64_t at);
  void Campaign(v1::Envelope& e, int64_t at);
  void Profile(v1::Envelope& e, int64_t at);
  void Survey(v1::Envelope& e, int64_t at);
  void Consent(v1::Envelope& e, int64_t at, bool granted);
  void Phone(v1::Envelope& e, int64_t at);
  void ScheduleCampaignFrom(size_t campaign);
  void FollowUpEvent(v1::Envelope& e, const FollowUp& f);

  // Remembers how the last experience felt (0 awful .. 1 great).
  void Experience(double score) { mood_ = 0.7 * mood_ + 0.3 * score; }
  v1::Money Money(int64_t minor_units) const;
  int64_t ToMinor(double eur) const;
  std::string Id(const char* prefix, uint64_t n) const;

  const World& world_;
  const SimulationOptions& options_;
  uint32_t index_;
  std::string customer_id_;
  Random random_;
  int64_t end_ms_;
  uint32_t sequence_ = 0;  // events emitted, for ids
  uint32_t follow_up_order_ = 0;

  // BG/NBD
  int64_t acquired_ms_;
  double lambda_;
  double p_;
  bool alive_ = true;
  int64_t dropped_ms_ = kNever;
  int64_t purchases_ = 0;
  int64_t revenue_eur_cents_ = 0;

  // Who they are
  bool registered_ = false;
  bool business_;
  const Currency* currency_;
  double spend_scale_;
  std::array<double, kCategories.size()> category_weights_;
  std::array<double, 4> purchase_channels_;  // store, web, app, partner
  std::array<double, 5> contact_channels_;   // call, chat, e-mail, visit, social
  int home_store_;
  double mood_;
  bool marketing_consent_ = false;
  bool loyalty_member_ = false;
  bool device_linked_ = false;
  int64_t points_balance_ = 0;
  int64_t points_lifetime_ = 0;
  int tier_ = 0;
  int open_complaints_ = 0;
  uint32_t complaints_ = 0;
  uint32_t orders_ = 0;
  size_t next_campaign_ = 0;

  std::array<int64_t, static_cast<size_t>(Process::kCount)> next_{};
  std::priority_queue<FollowUp, std::vector<FollowUp>, std::greater<>> follow_ups_;
  int64_t next_time_ = kNever;
};

}  // namespace rapport::simulator
