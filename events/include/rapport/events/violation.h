#pragma once

#include <string>
#include <vector>

namespace rapport::events {

// One reason an event is rejected. `field` is the path of the offending field
// in proto field names, as a user would find it in the JSON
// ("purchase_completed.items[1].unit_price.amount"); it is empty when the
// problem is the record as a whole (not JSON, too large).
struct Violation {
  std::string field;
  std::string reason;

  // "field: reason", or just "reason" without a field.
  std::string ToString() const;
  bool operator==(const Violation&) const = default;
};

using Violations = std::vector<Violation>;

// "a; b; c": the violations for one log line or one dead letter, at most
// about `max_bytes` long: past that, "; ... and N more violations" ends it
// (a record from a raw producer may break a rule thousands of times).
std::string JoinViolations(const Violations& violations, size_t max_bytes);

}  // namespace rapport::events
