#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "rapport/events/uuid.h"
#include "rapport/events/violation.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::events {

struct AdmissionLimits {
  size_t max_json_bytes = 1 << 20;    // a longer line is rejected unread
  size_t max_event_bytes = 64 << 10;  // encoded envelope; keeps records well under Kafka's limits
  absl::Duration max_future_skew = absl::Hours(1);
};

// An event accepted at the edge: the envelope with event_id and recorded_at
// filled in, and its encoded bytes, ready to publish.
struct AdmittedEvent {
  v1::Envelope envelope;
  std::string encoded;
};

// The outcome of admitting one input: either `violations` is empty and
// `event` holds the admitted event, or `violations` says what is wrong.
struct Admission {
  AdmittedEvent event;
  Violations violations;
  bool accepted() const { return violations.empty(); }
};

// Turns events from outside (JSON lines, HTTP bodies) into events ready to
// publish: parse, assign a UUIDv7 event_id and recorded_at when absent,
// validate every field, check the encoded size. Not thread-safe (it owns an
// id generator); use one per thread.
class EventAdmission {
 public:
  explicit EventAdmission(AdmissionLimits limits = {});
  EventAdmission(AdmissionLimits limits, UuidV7Generator ids);

  // `now` is the ingest time: recorded_at, the id's timestamp, and the bound
  // for future occurred_at. An event without an event_id gets
  // `id_if_absent` when given (a retry must get the same id, see the API's
  // Idempotency-Key), else a new UUIDv7.
  Admission AdmitJson(std::string_view json, absl::Time now, std::string_view id_if_absent = {});

  const AdmissionLimits& limits() const { return limits_; }

 private:
  AdmissionLimits limits_;
  UuidV7Generator ids_;
};

}  // namespace rapport::events
