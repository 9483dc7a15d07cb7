#include "rapport/api/ingest.h"

#include <openssl/sha.h>

#include <condition_variable>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fmt/format.h"

namespace rapport::api {

std::string IdempotentEventId(std::string_view idempotency_key, size_t index, std::string_view text) {
  // Lengths first, so that no two (key, index, text) feed the same bytes.
  const std::string framed = fmt::format("rapport idempotent event id\n{}:{}\n{}\n{}:{}", idempotency_key.size(),
                                         idempotency_key, index, text.size(), text);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(framed.data()), framed.size(), digest);
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x80);  // version 8: custom
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // the RFC 9562 variant
  std::string id;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id += '-';
    id += fmt::format("{:02x}", digest[i]);
  }
  return id;
}

Result<std::string> ParseIdempotencyKey(std::string_view header) {
  constexpr size_t kMaxBytes = 255;
  std::string_view key = header;
  if (key.size() >= 2 && key.front() == '"' && key.back() == '"') key = key.substr(1, key.size() - 2);
  if (key.empty()) return absl::InvalidArgumentError("Idempotency-Key: empty; send a new UUID for each request");
  if (key.size() > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("Idempotency-Key: ", key.size(), " bytes; at most ", kMaxBytes, " (a UUID is 36)"));
  }
  for (char c : key) {
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
      return absl::InvalidArgumentError(
          "Idempotency-Key: only visible ASCII characters without quotes or backslashes (a UUID, say)");
    }
  }
  return std::string(key);
}

// One request's events waiting for their delivery reports.
struct Ingest::Pending {
  std::mutex mutex;
  std::condition_variable done;
  std::vector<IngestOutcome> outcomes;
  size_t waiting = 0;
};

Ingest::Ingest(events::AdmissionLimits limits) : limits_(limits) {}

Result<std::unique_ptr<Ingest>> Ingest::Connect(producers::ProducerOptions options, events::AdmissionLimits limits) {
  std::unique_ptr<Ingest> ingest(new Ingest(limits));
  Ingest* self = ingest.get();
  ASSIGN_OR_RETURN(ingest->producer_,
                   producers::EventProducer::Connect(std::move(options),
                                                     [self](const producers::Delivery& d) { self->OnDelivery(d); }));
  ingest->poller_ = std::thread([self] {
    while (!self->stop_.load()) self->producer_->Poll(std::chrono::milliseconds(50));
  });
  return ingest;
}

Ingest::~Ingest() {
  if (producer_) (void)producer_->Flush(producer_->options().delivery_timeout);
  stop_ = true;
  if (poller_.joinable()) poller_.join();
}

void Ingest::OnDelivery(const producers::Delivery& delivery) {
  std::pair<std::shared_ptr<Pending>, size_t> target;
  {
    std::lock_guard lock(mutex_);
    auto it = in_flight_.find(delivery.ticket);
    if (it == in_flight_.end()) return;
    target = std::move(it->second);
    in_flight_.erase(it);
  }
  auto& [pending, index] = target;
  {
    std::lock_guard lock(pending->mutex);
    IngestOutcome& outcome = pending->outcomes[index];
    if (delivery.status.ok()) {
      outcome.partition = delivery.partition;
      outcome.offset = delivery.offset;
    } else {
      outcome.state = IngestOutcome::State::kUndelivered;
      outcome.error = std::string(delivery.status.message());
    }
    --pending->waiting;
  }
  pending->done.notify_all();
}

std::vector<IngestOutcome> Ingest::Publish(const std::vector<std::string>& events, std::string_view idempotency_key) {
  // Admission keeps an id generator and is not thread-safe: each request
  // borrows one of its own from a pool.
  std::unique_ptr<events::EventAdmission> admission;
  {
    std::lock_guard lock(mutex_);
    if (!admissions_.empty()) {
      admission = std::move(admissions_.back());
      admissions_.pop_back();
    }
  }
  if (!admission) admission = std::make_unique<events::EventAdmission>(limits_);
  auto pending = std::make_shared<Pending>();
  pending->outcomes.resize(events.size());
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < events.size(); ++i) {
    events::Admission admitted = admission->AdmitJson(
        events[i], now, idempotency_key.empty() ? std::string() : IdempotentEventId(idempotency_key, i, events[i]));
    IngestOutcome& outcome = pending->outcomes[i];
    if (!admitted.accepted()) {
      outcome.violations = std::move(admitted.violations);
      continue;
    }
    outcome.state = IngestOutcome::State::kAccepted;
    outcome.event_id = admitted.event.envelope.event_id();
    const uint64_t ticket = next_ticket_++;
    {
      std::lock_guard lock(mutex_);
      in_flight_[ticket] = {pending, i};
    }
    {
      std::lock_guard lock(pending->mutex);
      ++pending->waiting;
    }
    Status queued = producer_->Send(admitted.event.envelope, admitted.event.encoded, ticket);
    if (!queued.ok()) {
      {
        std::lock_guard lock(mutex_);
        in_flight_.erase(ticket);
      }
      std::lock_guard lock(pending->mutex);
      --pending->waiting;
      outcome.state = IngestOutcome::State::kUndelivered;
      outcome.error = std::string(queued.message());
    }
  }
  {
    std::lock_guard lock(mutex_);
    admissions_.push_back(std::move(admission));
  }
  // Every queued event gets a report within the delivery timeout (the poller
  // serves them). Should one never come, the request still ends: a margin
  // later, what is still waiting is reported undelivered and its late report
  // ignored.
  const auto limit = producer_->options().delivery_timeout + std::chrono::seconds(10);
  std::unique_lock lock(pending->mutex);
  if (!pending->done.wait_for(lock, limit, [&] { return pending->waiting == 0; })) {
    lock.unlock();
    {
      std::lock_guard tickets(mutex_);
      for (auto it = in_flight_.begin(); it != in_flight_.end();) {
        it = it->second.first == pending ? in_flight_.erase(it) : std::next(it);
      }
    }
    lock.lock();
    for (auto& outcome : pending->outcomes) {
      if (outcome.state == IngestOutcome::State::kAccepted && outcome.offset < 0) {
        outcome.state = IngestOutcome::State::kUndelivered;
        outcome.error = "no delivery report from the broker in time";
      }
    }
  }
  return pending->outcomes;  // a copy: a report racing the deadline may still write to them
}

}  // namespace rapport::api
