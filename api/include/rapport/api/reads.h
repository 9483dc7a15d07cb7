#pragma once

// The reads of a store's projections, written once for the HTTP API and
// `rapport query`: each takes what its caller parsed, asks the view and
// renders the answer. The API wraps an answer with how fresh it is (and may
// first wait for a position, ?after=); the command prints it.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "rapport/base/status.h"
#include "rapport/events/codec.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/store.h"
#include "rapport/v1/common.pb.h"
#include "rapport/v1/customer.pb.h"

namespace rapport::api {

struct Answer {
  std::string json;                  // the view's answer, rendered
  std::optional<int32_t> partition;  // a customer's read: its partition (whose freshness matters); nullopt for a scan
};

// "hotel", "HOTEL" -> SUBJECT_TYPE_HOTEL; nullopt for anything else.
std::optional<v1::SubjectType> SubjectTypeNamed(std::string_view name);
// The identity kinds a lookup takes, by the API's names (email, phone, card,
// device, external_id); nullopt for anything else.
std::optional<v1::IdentityKind> LookupKindNamed(std::string_view name);

class StoreReads {
 public:
  // `partition_count`: the events topic's, as the store was built under it
  // (consumers::StoredPartitionCount).
  StoreReads(projections::ProjectionStore& store, int32_t partition_count, events::JsonStyle style);

  Result<Answer> Profile(const std::string& customer_id) const;
  // The profile of the customer an identity belongs to.
  // `in`: only the partitions it accepts; null: every partition.
  Result<Answer> Lookup(v1::IdentityKind kind, const std::string& value,
                        const std::function<bool(int32_t)>& in = nullptr) const;
  // `histograms`: every partition's, when several instances share them
  // (null: this store's).
  Result<Answer> Churn(const std::string& customer_id, absl::Time as_of,
                       const projections::ChurnHistograms* histograms = nullptr) const;
  Result<Answer> CustomerReviews(const std::string& customer_id) const;
  Result<Answer> SubjectSummary(v1::SubjectType type, const std::string& id, absl::Time as_of) const;
  Result<Answer> SubjectReviews(v1::SubjectType type, const std::string& id, size_t limit,
                                const std::string& cursor) const;

 private:
  projections::ProjectionStore& store_;
  int32_t partition_count_;
  events::JsonStyle style_;
};

}  // namespace rapport::api
