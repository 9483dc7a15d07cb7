#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rapport/base/status.h"
#include "rapport/events/admission.h"
#include "rapport/events/violation.h"
#include "rapport/producers/event_producer.h"

namespace rapport::api {

// The event_id of the `index`th event of a request sent with
// `idempotency_key` whose JSON text is `text`: a UUIDv8 (RFC 9562) made of
// SHA-256 over the three. The same request sent again gets the same ids; a
// different event under the same key gets a different one.
std::string IdempotentEventId(std::string_view idempotency_key, size_t index, std::string_view text);

// Checks an Idempotency-Key header (a quoted string, as the IETF draft
// writes it, or bare): the key without its quotes, or InvalidArgument saying
// what is wrong with it.
Result<std::string> ParseIdempotencyKey(std::string_view header);

// What became of one posted event.
struct IngestOutcome {
  enum class State { kAccepted, kRejected, kUndelivered };
  State state = State::kRejected;
  std::string event_id;    // accepted: as assigned or given
  int32_t partition = -1;  // accepted: where it landed, the read-your-writes token
  int64_t offset = -1;
  events::Violations violations;  // rejected: why (the same messages as `rapport publish`)
  std::string error;              // undelivered: the broker's or the timeout's message
};

// Publishes events posted over HTTP: the same admission (parse, ids,
// validation, limits) as `rapport publish`, one idempotent producer shared by
// every request, and an answer only once the broker has acknowledged
// (acks=all) or the delivery timeout has passed. Thread-safe.
class Ingest {
 public:
  static Result<std::unique_ptr<Ingest>> Connect(producers::ProducerOptions options, events::AdmissionLimits limits);
  ~Ingest();

  // Admits each JSON text and publishes the accepted ones; returns when every
  // accepted event has its delivery report. With an `idempotency_key` (the
  // request's Idempotency-Key), an event without an event_id gets
  // IdempotentEventId's, so a retry of the same request gets the same ids
  // and the projections apply each event once.
  std::vector<IngestOutcome> Publish(const std::vector<std::string>& events, std::string_view idempotency_key = {});

  const events::AdmissionLimits& limits() const { return limits_; }

 private:
  struct Pending;
  Ingest(events::AdmissionLimits limits);
  void OnDelivery(const producers::Delivery& delivery);

  events::AdmissionLimits limits_;
  std::unique_ptr<producers::EventProducer> producer_;
  std::mutex mutex_;
  std::atomic<uint64_t> next_ticket_{1};
  std::map<uint64_t, std::pair<std::shared_ptr<Pending>, size_t>> in_flight_;  // ticket -> request, index
  std::vector<std::unique_ptr<events::EventAdmission>> admissions_;            // idle, for requests to borrow
  std::atomic<bool> stop_{false};
  std::thread poller_;  // serves delivery reports
};

}  // namespace rapport::api
