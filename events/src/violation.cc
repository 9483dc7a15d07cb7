#include "rapport/events/violation.h"

#include "absl/strings/str_cat.h"

namespace rapport::events {

std::string Violation::ToString() const { return field.empty() ? reason : field + ": " + reason; }

std::string JoinViolations(const Violations& violations, size_t max_bytes) {
  std::string joined;
  for (size_t i = 0; i < violations.size(); ++i) {
    std::string one = violations[i].ToString();
    if (i > 0 && joined.size() + one.size() + 2 > max_bytes) {
      absl::StrAppend(&joined, "; ... and ", violations.size() - i, " more violations");
      break;
    }
    absl::StrAppend(&joined, i > 0 ? "; " : "", one);
  }
  return joined;
}

}  // namespace rapport::events
