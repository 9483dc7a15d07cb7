// EventProducer against librdkafka's in-process mock cluster: fast checks of
// keys, partitions, delivery reports and failure handling. The same behaviour
// against the real broker is in tests/integration.
#include "rapport/producers/event_producer.h"

#include <gtest/gtest.h>

#include <map>

#include "rapport/events/codec.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"

namespace rapport::producers {
namespace {

constexpr char kTopic[] = "cx.events";
constexpr int kPartitions = 6;

// The mock cluster with the events topic.
struct EventsCluster : testing::MockCluster {
  EventsCluster() { CreateTopic(kTopic, kPartitions); }
};

v1::Envelope Event(const std::string& customer, int n) {
  v1::Envelope e;
  e.set_event_id("019a6f3e-5b10-7c3a-9d4e-" + std::to_string(100000000000 + n));
  e.set_customer_id(customer);
  e.set_source("test");
  e.set_channel(v1::CHANNEL_WEB);
  e.mutable_occurred_at()->set_seconds(1776765600 + n);
  e.mutable_consent_changed()->set_purpose(v1::CONSENT_PURPOSE_ANALYTICS);
  e.mutable_consent_changed()->set_status(v1::CONSENT_STATUS_GRANTED);
  return e;
}

ProducerOptions Options(const std::string& brokers) {
  ProducerOptions options;
  options.kafka.brokers = brokers;
  options.kafka.timeout = std::chrono::milliseconds(5000);
  options.topic = kTopic;
  return options;
}

TEST(EventProducer, ReportsEachDeliveryOnceOnTheCustomersPartition) {
  EventsCluster cluster;
  std::map<uint64_t, Delivery> deliveries;
  int reports = 0;
  auto producer = EventProducer::Connect(Options(cluster.bootstrap()), [&](const Delivery& d) {
    ++reports;
    deliveries[d.ticket] = d;
  });
  ASSERT_OK(producer);
  EXPECT_EQ((*producer)->partition_count(), kPartitions);
  const std::vector<std::string> customers = {"c-1", "c-2", "c-3", "c-4", "c-5"};
  for (int i = 0; i < 100; ++i) {
    v1::Envelope e = Event(customers[i % customers.size()], i);
    ASSERT_OK((*producer)->Send(e, events::EncodeEvent(e), static_cast<uint64_t>(i)));
  }
  ASSERT_OK((*producer)->Flush(std::chrono::seconds(10)));
  EXPECT_EQ(reports, 100);
  ASSERT_EQ(deliveries.size(), 100u);
  std::map<int32_t, int64_t> last_offset;
  for (const auto& [ticket, d] : deliveries) {
    EXPECT_OK(d.status);
    const std::string& customer = customers[ticket % customers.size()];
    EXPECT_EQ(d.partition, kafka::PartitionForKey(customer, kPartitions)) << customer;
    // Within a partition, events keep the order they were sent in.
    if (last_offset.contains(d.partition)) {
      EXPECT_GT(d.offset, last_offset[d.partition]);
    }
    last_offset[d.partition] = d.offset;
  }
}

TEST(EventProducer, UnreachableBrokerFailsWithinTheTimeoutAndSaysSo) {
  ProducerOptions options = Options("127.0.0.1:1");
  options.kafka.timeout = std::chrono::milliseconds(1500);
  auto started = std::chrono::steady_clock::now();
  auto producer = EventProducer::Connect(options, [](const Delivery&) {});
  auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(producer.status().message()).rfind("no answer from Kafka at 127.0.0.1:1 within 1500 ms", 0), 0u)
      << producer.status().message();
  EXPECT_LT(waited, std::chrono::seconds(10)) << "Connect must not hang past its timeout";
}

TEST(EventProducer, EventsNotAcknowledgedInTimeAreReportedUndelivered) {
  EventsCluster cluster;
  ProducerOptions options = Options(cluster.bootstrap());
  options.delivery_timeout = std::chrono::milliseconds(1500);
  std::vector<Delivery> deliveries;
  auto producer = EventProducer::Connect(options, [&](const Delivery& d) { deliveries.push_back(d); });
  ASSERT_OK(producer);
  cluster.BrokerDown();
  v1::Envelope e = Event("c-1", 1);
  ASSERT_OK((*producer)->Send(e, events::EncodeEvent(e), 7));
  EXPECT_OK((*producer)->Flush(std::chrono::seconds(10)));
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].ticket, 7u);
  EXPECT_EQ(deliveries[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(std::string(deliveries[0].status.message()).find("within 1500 ms"), std::string::npos)
      << deliveries[0].status.message();
}

TEST(EventProducer, ConfigCannotWeakenDeliveryGuarantees) {
  EventsCluster cluster;
  ProducerOptions options = Options(cluster.bootstrap());
  options.kafka.properties["acks"] = "1";
  auto producer = EventProducer::Connect(options, [](const Delivery&) {});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(producer.status().message(),
            "kafka property \"acks\" = \"1\" is not allowed: rapport needs \"all\" (an acknowledged event must "
            "survive the loss of a broker)");
}

TEST(EventProducer, UnknownKafkaPropertyIsNamed) {
  ProducerOptions options = Options("127.0.0.1:9");
  options.kafka.properties["sasl.mechanismz"] = "PLAIN";
  auto producer = EventProducer::Connect(options, [](const Delivery&) {});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(std::string(producer.status().message()).rfind("kafka property \"sasl.mechanismz\" = \"PLAIN\": ", 0), 0u)
      << producer.status().message();
}

}  // namespace
}  // namespace rapport::producers
