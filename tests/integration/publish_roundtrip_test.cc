// EventProducer against the real broker: what is published is exactly what a
// plain librdkafka consumer reads back — value bytes, key, headers, partition
// and timestamp.
#include <gtest/gtest.h>

#include <map>

#include "rapport/events/cloudevents.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/producers/event_producer.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class PublishRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(testing::CheckBrokerAnswers(broker_)); }
  kafka::KafkaSettings broker_ = testing::TestBroker();
};

v1::Envelope PurchaseEvent(int n) {
  v1::Envelope e;
  e.set_event_id("019a6f3e-5b10-7c3a-9d4e-" + std::to_string(100000000000 + n));
  e.set_customer_id("c-" + std::to_string(n % 50));
  e.set_source("pos/store-" + std::to_string(n % 7));
  e.set_channel(v1::CHANNEL_STORE);
  e.mutable_occurred_at()->set_seconds(1776765600 + n);
  e.mutable_occurred_at()->set_nanos(123000000);
  e.mutable_recorded_at()->set_seconds(1776765700 + n);
  auto* p = e.mutable_purchase_completed();
  p->set_order_id("o-" + std::to_string(n));
  p->mutable_total()->set_currency("EUR");
  p->mutable_total()->set_amount(std::to_string(n) + ".99");
  return e;
}

TEST_F(PublishRoundTrip, ConsumerReadsBackExactlyWhatWasPublished) {
  const std::string topic = testing::UniqueTopicName("it.roundtrip");
  ASSERT_OK(testing::CreateTopic(broker_, topic, 12));
  constexpr int kEvents = 500;

  std::map<uint64_t, producers::Delivery> deliveries;
  producers::ProducerOptions options{.kafka = broker_, .topic = topic};
  auto producer =
      producers::EventProducer::Connect(options, [&](const producers::Delivery& d) { deliveries[d.ticket] = d; });
  ASSERT_OK(producer);
  std::map<std::pair<int32_t, int64_t>, v1::Envelope> sent;
  for (int i = 0; i < kEvents; ++i) {
    v1::Envelope e = PurchaseEvent(i);
    ASSERT_OK((*producer)->Send(e, events::EncodeEvent(e), static_cast<uint64_t>(i)));
  }
  ASSERT_OK((*producer)->Flush(std::chrono::seconds(30)));
  ASSERT_EQ(deliveries.size(), static_cast<size_t>(kEvents));
  for (const auto& [ticket, d] : deliveries) {
    ASSERT_OK(d.status);
    sent[{d.partition, d.offset}] = PurchaseEvent(static_cast<int>(ticket));
  }

  auto records = testing::ReadTopic(broker_, topic, kEvents, std::chrono::seconds(30));
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), static_cast<size_t>(kEvents));
  for (const auto& r : *records) {
    auto it = sent.find({r.partition, r.offset});
    ASSERT_NE(it, sent.end()) << "record at " << r.partition << "/" << r.offset << " was not reported delivered there";
    const v1::Envelope& e = it->second;
    EXPECT_EQ(r.value, events::EncodeEvent(e));
    EXPECT_EQ(r.key, e.customer_id());
    EXPECT_EQ(r.partition, kafka::PartitionForKey(e.customer_id(), 12));
    EXPECT_EQ(r.headers, events::CloudEventHeaders(e));
    EXPECT_EQ(r.timestamp_ms, e.occurred_at().seconds() * 1000 + 123);
  }
}

TEST_F(PublishRoundTrip, MissingTopicIsReportedBeforeAnythingIsSent) {
  producers::ProducerOptions options{.kafka = broker_, .topic = testing::UniqueTopicName("it.absent")};
  auto producer = producers::EventProducer::Connect(options, [](const producers::Delivery&) {});
  ASSERT_FALSE(producer.ok());
  EXPECT_EQ(producer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(producer.status().message(), "topic " + options.topic + " does not exist on " + broker_.brokers +
                                             "; create it with `rapport topics ensure`");
}

}  // namespace
}  // namespace rapport
