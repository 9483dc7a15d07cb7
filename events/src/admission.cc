#include "rapport/events/admission.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "rapport/events/codec.h"
#include "rapport/events/validation.h"

namespace rapport::events {

EventAdmission::EventAdmission(AdmissionLimits limits) : limits_(limits) {}

EventAdmission::EventAdmission(AdmissionLimits limits, UuidV7Generator ids) : limits_(limits), ids_(std::move(ids)) {}

Admission EventAdmission::AdmitJson(std::string_view json, absl::Time now, std::string_view id_if_absent) {
  Admission result;
  if (json.size() > limits_.max_json_bytes) {
    result.violations.push_back(
        {"", absl::StrCat("event is ", json.size(), " bytes of JSON; the limit is ", limits_.max_json_bytes)});
    return result;
  }
  v1::Envelope& event = result.event.envelope;
  if (auto violation = ParseEventJson(json, event)) {
    result.violations.push_back(std::move(*violation));
    return result;
  }
  if (event.event_id().empty()) {
    event.set_event_id(id_if_absent.empty() ? ids_.Next(now) : std::string(id_if_absent));
  } else if (IsWellFormedUuid(event.event_id())) {
    // UUIDs compare case-insensitively; store the canonical lower-case form so
    // de-duplication by event_id sees one id, whatever case a producer used.
    absl::AsciiStrToLower(event.mutable_event_id());
  }
  if (!event.has_recorded_at()) {
    *event.mutable_recorded_at() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
  }
  result.violations = Validate(event, {.reference_time = now, .max_future_skew = limits_.max_future_skew});
  if (!result.accepted()) return result;

  result.event.encoded = EncodeEvent(event);
  if (result.event.encoded.size() > limits_.max_event_bytes) {
    result.violations.push_back({"", absl::StrCat("event is ", result.event.encoded.size(),
                                                  " bytes encoded; the limit is ", limits_.max_event_bytes)});
  }
  return result;
}

}  // namespace rapport::events
