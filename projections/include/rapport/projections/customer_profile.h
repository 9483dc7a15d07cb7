#pragma once

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "rapport/events/codec.h"
#include "rapport/projections/projection.h"
#include "rapport/state/v1/profile.pb.h"

namespace rapport::projections {

// The total customer view: identities (with a lookup from e-mail, phone,
// loyalty card, device or external id to the customer), latest traits and
// preferences, channel usage, first and last activity, orders, revenue and
// refunds per currency, spend per category, loyalty points and tier, open
// complaints, latest service rating and NPS, reviews written, consents.
//
// Keys: [partition]'c'<customer_id> -> CustomerProfile;
//       [partition]'i'<kind byte><identity value> -> customer_id (linked identities, and the
//       e-mail and phone of the details, so lookup finds a customer by either).
class CustomerProfileProjection final : public Projection {
 public:
  std::string_view Name() const override { return "customer_profile"; }
  int Version() const override { return 1; }

  bool Reads(v1::Envelope::PayloadCase) const override { return true; }

 protected:
  Status DoApply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
                 std::vector<OutboxRecord>& outbox) override;
};

struct ProfilePage {
  std::vector<state::v1::CustomerProfile> customers;
  std::vector<std::string> cursors;  // each customer's: a page resumed there starts after it
  std::string next_cursor;           // empty on the last page
};

// Who to target: customers whose spend on a category reaches a threshold.
struct TargetQuery {
  std::string category;  // as in line items, e.g. "dining"
  std::string currency;  // ISO 4217; empty: any currency
  double min_spend = 0;  // in major units of that currency
};

// The identity kinds a lookup takes, by the names the API (a query
// parameter) and `rapport query lookup` (its KIND) both use.
inline constexpr std::array<std::pair<std::string_view, v1::IdentityKind>, 5> kLookupKinds = {{
    {"email", v1::IDENTITY_KIND_EMAIL},
    {"phone", v1::IDENTITY_KIND_PHONE},
    {"card", v1::IDENTITY_KIND_LOYALTY_CARD},
    {"device", v1::IDENTITY_KIND_DEVICE},
    {"external_id", v1::IDENTITY_KIND_EXTERNAL_ID},
}};

// Read-only queries of the customer_profile state. Like every view, it is
// made with the events topic's partition count (the one the store was built
// under), which tells where each customer's state lies: murmur2 of the id
// modulo the count.
class CustomerProfileView {
 public:
  CustomerProfileView(ProjectionStore& store, int32_t partition_count);

  // NotFound when the customer is unknown.
  Result<state::v1::CustomerProfile> Profile(const std::string& customer_id);
  // The customer an identity belongs to (the most recent link wins).
  // `in`: only the partitions it accepts (those this instance applies);
  // null: every partition.
  Result<std::string> Lookup(v1::IdentityKind kind, const std::string& value,
                             const std::function<bool(int32_t)>& in = nullptr);
  // The profile as JSON for people and downstream services: money as decimal
  // strings, times in RFC 3339, the average order value per currency.
  static std::string ToJson(const state::v1::CustomerProfile& profile,
                            events::JsonStyle style = events::JsonStyle::kIndented);

  // Customers matching `query`, in storage order, `limit` at a time; `cursor`
  // is a previous page's next_cursor. Scans from the cursor. `in`: only the
  // partitions it accepts (null: all).
  Result<ProfilePage> Targeted(const TargetQuery& query, size_t limit, const std::string& cursor,
                               const std::function<bool(int32_t)>& in = nullptr);

 private:
  ProjectionStore& store_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle>
      family_;  // the live version: held, so a swap cannot pull it away mid-query
  int32_t partition_count_;
};

}  // namespace rapport::projections
