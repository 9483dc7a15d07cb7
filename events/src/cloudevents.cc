#include "rapport/events/cloudevents.h"

#include "google/protobuf/util/time_util.h"
#include "rapport/events/event_type.h"

namespace rapport::events {

std::vector<Header> CloudEventHeaders(const v1::Envelope& event) {
  return {
      {"ce_specversion", "1.0"},
      {"ce_id", event.event_id()},
      {"ce_type", std::string(CloudEventType(event))},
      {"ce_source", event.source()},
      {"ce_time", google::protobuf::util::TimeUtil::ToString(event.occurred_at())},
      {"ce_subject", event.customer_id()},
      {"content-type", std::string(kEnvelopeContentType)},
  };
}

}  // namespace rapport::events
