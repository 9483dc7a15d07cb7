#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rapport/events/admission.h"
#include "rapport/events/status.h"
#include "rapport/events/violation.h"
#include "rapport/producers/event_producer.h"

namespace rapport::api {

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
  // accepted event has its delivery report.
  std::vector<IngestOutcome> Publish(const std::vector<std::string>& events);

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
