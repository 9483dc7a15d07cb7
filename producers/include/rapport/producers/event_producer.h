#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "rapport/base/status.h"
#include "rapport/kafka/client.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::producers {

struct ProducerOptions {
  kafka::KafkaSettings kafka;
  std::string topic = "cx.events";
  // An event not acknowledged by the cluster within this time is reported
  // undelivered (librdkafka's message.timeout.ms).
  std::chrono::milliseconds delivery_timeout{30000};
};

// The fate of one sent event, reported exactly once.
struct Delivery {
  uint64_t ticket = 0;  // the caller's id for the event, as given to Send
  Status status;        // OK when the cluster acknowledged it (acks=all)
  int32_t partition = -1;
  int64_t offset = -1;
};

// Called for each delivery, on the thread that calls Send, Poll or Flush.
using DeliveryHandler = std::function<void(const Delivery&)>;

// Publishes events to Kafka: idempotent (no duplicates from retries), acks=all,
// keyed by customer id, murmur2 partitioning (Kafka's Java default), with
// CloudEvents headers and the event's occurred_at as the record timestamp.
//
// Threading: not thread-safe; one thread calls Send, Poll and Flush, and the
// delivery handler runs on that thread.
class EventProducer {
 public:
  // Connects and checks, within options.kafka.timeout, that the cluster answers
  // and the topic exists: Unavailable or NotFound with a clear message if not.
  static Result<std::unique_ptr<EventProducer>> Connect(ProducerOptions options, DeliveryHandler on_delivery);

  EventProducer(const EventProducer&) = delete;
  EventProducer& operator=(const EventProducer&) = delete;
  // Waits up to the delivery timeout for events still in flight.
  ~EventProducer();

  // Queues `encoded` (EncodeEvent(event)) for sending. When librdkafka's queue
  // is full it serves deliveries until there is room. An error here means the
  // event was not queued and no delivery will be reported for it.
  [[nodiscard]] Status Send(const v1::Envelope& event, std::string_view encoded, uint64_t ticket);

  // Queues a record exactly as given, without headers: for tools that must
  // write what rapport itself would reject, such as the simulator's invalid
  // records. An empty key means none.
  [[nodiscard]] Status SendRecord(std::string_view key, std::string_view value, int64_t timestamp_ms, uint64_t ticket);

  // Serves delivery reports for up to `wait`.
  void Poll(std::chrono::milliseconds wait);

  // Waits until every queued event is delivered or has failed, at most
  // `wait`; DeadlineExceeded with the number still in flight otherwise.
  [[nodiscard]] Status Flush(std::chrono::milliseconds wait);

  int32_t partition_count() const { return partition_count_; }
  const ProducerOptions& options() const { return options_; }

 private:
  EventProducer(ProducerOptions options, DeliveryHandler on_delivery);
  static void OnDelivery(rd_kafka_t* handle, const rd_kafka_message_t* message, void* opaque);
  // Produces one record, serving deliveries while the queue is full. Owns
  // `headers` (may be null) from here on, whatever the outcome.
  Status Produce(std::string_view key, std::string_view value, int64_t timestamp_ms, rd_kafka_headers_t* headers,
                 uint64_t ticket, std::string_view what);

  ProducerOptions options_;
  DeliveryHandler on_delivery_;
  kafka::KafkaHandle handle_;
  int32_t partition_count_ = 0;
};

}  // namespace rapport::producers
