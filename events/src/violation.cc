#include "rapport/events/violation.h"

namespace rapport::events {

std::string Violation::ToString() const { return field.empty() ? reason : field + ": " + reason; }

}  // namespace rapport::events
