// An upstream system publishing with its own Kafka client, in another
// language, with no rapport code: examples/python/publish_from_python.py
// (confluent-kafka) against the real broker. Its records must be exactly what
// rapport itself would write: decodable, valid, on the customer's partition,
// with the CloudEvents headers rapport derives from the envelope.
#include <gtest/gtest.h>

#include <cstdlib>

#include "rapport/events/cloudevents.h"
#include "rapport/events/codec.h"
#include "rapport/events/validation.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

std::string VenvPython() { return testing::VenvBin("python"); }

TEST(PythonClient, RecordsFromAnotherLanguageAreFirstClassEvents) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string topic = testing::UniqueTopicName("it.python");
  constexpr int kPartitions = 12;
  ASSERT_OK(testing::CreateTopic(broker, topic, kPartitions));

  std::string customers;
  for (int i = 0; i < 40; ++i) customers += (i ? "," : "") + std::string("py-customer-") + std::to_string(i);
  auto python = testing::RunProgram({VenvPython(), testing::SourceDir() + "/examples/python/publish_from_python.py",
                                     "--brokers", broker.brokers, "--topic", topic, "--customers", customers},
                                    "", {{"PYTHONPATH", RAPPORT_PYTHON_SCHEMAS}});
  ASSERT_EQ(python.exit_code, 0) << "run ops/install-deps for the Python packages\n" << python.err;

  auto records = testing::ReadTopic(broker, topic, 40, std::chrono::seconds(30));
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 40u);
  for (const auto& r : *records) {
    v1::Envelope event;
    ASSERT_FALSE(events::DecodeEvent(r.value, event).has_value()) << r.key;
    absl::Time recorded = absl::FromUnixSeconds(event.recorded_at().seconds());
    events::Violations violations = events::Validate(event, {.reference_time = recorded});
    EXPECT_TRUE(violations.empty()) << r.key << ": " << violations.front().ToString();
    EXPECT_EQ(r.key, event.customer_id());
    EXPECT_EQ(r.partition, kafka::PartitionForKey(r.key, kPartitions)) << r.key;
    EXPECT_EQ(r.headers, events::CloudEventHeaders(event)) << r.key;
    EXPECT_EQ(r.timestamp_ms, event.occurred_at().seconds() * 1000 + event.occurred_at().nanos() / 1000000);
  }
}

}  // namespace
}  // namespace rapport
