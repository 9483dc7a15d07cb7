#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rapport/v1/envelope.pb.h"

namespace rapport::events {

// The event type is the payload set in the envelope's `payload` oneof. Its
// name is the oneof field's name ("purchase_completed"), which is also the key
// of the payload object in JSON.

// The type name of `event`, or "" when no payload is set.
std::string_view EventTypeName(const v1::Envelope& event);

// The CloudEvents `type` attribute: the payload's protobuf message name,
// e.g. "rapport.v1.PurchaseCompleted"; "" when no payload is set.
std::string_view CloudEventType(const v1::Envelope& event);

// Every event type name, in catalog order.
const std::vector<std::string>& EventTypeNames();

}  // namespace rapport::events
