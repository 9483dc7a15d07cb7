#include "rapport/producers/event_producer.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "rapport/events/cloudevents.h"
#include "rapport/events/time_text.h"

namespace rapport::producers {
namespace {

const std::vector<kafka::RequiredProperty>& ProducerGuarantees() {
  static const std::vector<kafka::RequiredProperty> required = {
      {"enable.idempotence", "true", "retries must not duplicate or reorder events"},
      {"acks", "all", "an acknowledged event must survive the loss of a broker"},
      {"partitioner", "murmur2_random", "customers must land on the partition other Kafka clients choose"},
  };
  return required;
}

int64_t TimestampMillis(const v1::Envelope& event) { return events::ToUnixMillis(event.occurred_at()); }

}  // namespace

EventProducer::EventProducer(ProducerOptions options, DeliveryHandler on_delivery)
    : options_(std::move(options)), on_delivery_(std::move(on_delivery)) {}

Result<std::unique_ptr<EventProducer>> EventProducer::Connect(ProducerOptions options, DeliveryHandler on_delivery) {
  std::unique_ptr<EventProducer> producer(new EventProducer(std::move(options), std::move(on_delivery)));
  std::vector<kafka::RequiredProperty> required = ProducerGuarantees();
  required.push_back({"message.timeout.ms", std::to_string(producer->options_.delivery_timeout.count()),
                      "set it with [producer] delivery_timeout_ms"});
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(producer->options_.kafka, required));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &EventProducer::OnDelivery);
  rd_kafka_conf_set_opaque(conf.get(), producer.get());
  ASSIGN_OR_RETURN(producer->handle_, kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  ASSIGN_OR_RETURN(
      producer->partition_count_,
      kafka::TopicPartitionCount(producer->handle_.get(), producer->options_.kafka, producer->options_.topic));
  ModuleLogger("producers")
      ->debug("producer connected to {}, topic {} has {} partitions", producer->options_.kafka.brokers,
              producer->options_.topic, producer->partition_count_);
  return producer;
}

EventProducer::~EventProducer() {
  if (!handle_) return;
  Status flushed = Flush(options_.delivery_timeout + std::chrono::seconds(1));
  if (!flushed.ok()) ModuleLogger("producers")->error("closing the producer: {}", std::string(flushed.message()));
}

Status EventProducer::Send(const v1::Envelope& event, std::string_view encoded, uint64_t ticket) {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(8);
  for (const auto& h : events::CloudEventHeaders(event)) {
    rd_kafka_header_add(headers, h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                        static_cast<ssize_t>(h.value.size()));
  }
  return Produce(event.customer_id(), encoded, TimestampMillis(event), headers, ticket, event.event_id());
}

Status EventProducer::SendRecord(std::string_view key, std::string_view value, int64_t timestamp_ms, uint64_t ticket) {
  return Produce(key, value, timestamp_ms, nullptr, ticket, "a raw record");
}

Status EventProducer::Produce(std::string_view key, std::string_view value, int64_t timestamp_ms,
                              rd_kafka_headers_t* headers, uint64_t ticket, std::string_view what) {
  rd_kafka_resp_err_t err =
      kafka::ProduceWaitingForRoom(handle_.get(), {.topic = options_.topic,
                                                   .key = key.empty() ? std::string_view() : key,
                                                   .value = value,
                                                   .timestamp_ms = timestamp_ms,
                                                   .headers = headers,
                                                   .opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(ticket))});
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  return kafka::KafkaStatus(err, absl::StrCat("queueing ", std::string(what), " for ", options_.topic));
}

void EventProducer::Poll(std::chrono::milliseconds wait) {
  rd_kafka_poll(handle_.get(), static_cast<int>(wait.count()));
}

Status EventProducer::Flush(std::chrono::milliseconds wait) {
  rd_kafka_resp_err_t err = rd_kafka_flush(handle_.get(), static_cast<int>(wait.count()));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat(rd_kafka_outq_len(handle_.get()), " events still in flight after waiting ", wait.count(), " ms"));
}

void EventProducer::OnDelivery(rd_kafka_t* /*handle*/, const rd_kafka_message_t* message, void* opaque) {
  auto* self = static_cast<EventProducer*>(opaque);
  Delivery delivery;
  delivery.ticket = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(message->_private));
  delivery.partition = message->partition;
  delivery.offset = message->offset;
  if (message->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
    delivery.status = absl::DeadlineExceededError(
        absl::StrCat("not acknowledged by Kafka at ", self->options_.kafka.brokers, " within ",
                     self->options_.delivery_timeout.count(), " ms (is the broker reachable?)"));
  } else if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    delivery.status = kafka::KafkaStatus(message->err, "delivery failed");
  }
  // An exception must not unwind through librdkafka's C frames.
  try {
    self->on_delivery_(delivery);
  } catch (const std::exception& e) {
    ModuleLogger("producers")->error("delivery handler failed for ticket {}: {}", delivery.ticket, e.what());
  }
}

}  // namespace rapport::producers
