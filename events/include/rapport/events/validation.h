#pragma once

#include "absl/time/time.h"
#include "rapport/events/violation.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::events {

// What "now" means when judging timestamps. At ingest it is the wall clock; a
// consumer re-validating a stored record passes the record's recorded_at, so
// that the same record is always judged the same way, live or in a replay.
struct ValidationContext {
  absl::Time reference_time;
  // How far occurred_at may lie after reference_time (touchpoint clocks drift).
  absl::Duration max_future_skew = absl::Hours(1);
};

// How much earlier than its occurred_at a Kafka record may be stamped. A
// record is stamped with its occurred_at (rapport's producers, and the
// contract for other clients) or later (a client that leaves the timestamp
// to its library stamps the send time); the runner dead-letters one stamped
// earlier than this before it occurred. So every applied event occurred
// before (its record's timestamp + kMaxStampLead), which makes Kafka's
// offsets-for-times an exact start for a window of occurred_at.
inline const absl::Duration kMaxStampLead = absl::Hours(1);

// Whether a record stamped `stamp_ms` may carry an event that occurred at
// `occurred_ms`: it is not stamped more than kMaxStampLead before.
bool StampedInTime(int64_t occurred_ms, int64_t stamp_ms);

// The earliest Kafka timestamp a record of an event that occurred at or
// after `occurred_from_ms` carries; never negative (negative timestamps are
// offsets-for-times' special values).
int64_t EarliestStampOf(int64_t occurred_from_ms);

// When the log came to know an event ("known at"): its recorded_at, or its
// record's Kafka timestamp when a client left recorded_at out.
int64_t KnownAtMillis(const v1::Envelope& event, int64_t stamp_ms);

// The earliest occurred_at accepted: older timestamps are taken for mistakes
// (a zero or a mis-scaled epoch), not history.
inline const absl::Time kEarliestEventTime = absl::FromUnixSeconds(631152000);  // 1990-01-01

// Every rule every field of `event` carries: required fields, formats, ranges,
// currencies and money precision, plausible timestamps, well-formed ids.
// Returns all violations found (empty when the event is valid).
Violations Validate(const v1::Envelope& event, const ValidationContext& context);

}  // namespace rapport::events
