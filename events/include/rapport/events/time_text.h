#pragma once

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace rapport::events {

// A time given by a person: a date ("2026-01-31", midnight UTC) or an RFC 3339
// time ("2026-01-31T09:30:00Z", "...+01:00"). nullopt for anything else.
std::optional<absl::Time> ParseDateOrTime(const std::string& text);

// RFC 3339 in UTC with milliseconds: "2026-01-31T09:30:00.000Z".
std::string FormatTime(absl::Time time);

// Milliseconds in a day: day numbers are Unix milliseconds / kDayMs (UTC days).
inline constexpr int64_t kDayMs = 86'400'000;

// A protobuf timestamp in milliseconds since the epoch (as Kafka stamps records).
inline int64_t ToUnixMillis(const google::protobuf::Timestamp& t) { return t.seconds() * 1000 + t.nanos() / 1'000'000; }

}  // namespace rapport::events
