#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rapport/v1/envelope.pb.h"

namespace rapport::events {

// A Kafka record header.
struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};

// The record value's media type: a protobuf-encoded rapport.v1.Envelope.
inline constexpr std::string_view kEnvelopeContentType = "application/protobuf; proto=rapport.v1.Envelope";

// CloudEvents 1.0 binary-mode headers for a record carrying `event`:
// ce_specversion, ce_id (event_id), ce_type ("rapport.v1.PurchaseCompleted"),
// ce_source, ce_time (occurred_at, RFC 3339), ce_subject (customer_id) and
// content-type. Clients that do not speak protobuf can route on these alone.
std::vector<Header> CloudEventHeaders(const v1::Envelope& event);

}  // namespace rapport::events
