// A record written by another Kafka client with the same key lands on the
// same partition as rapport's: Kafka's own Java console producer (default
// partitioner) writes keyed records, and rapport's partitioner must agree
// with where the broker stored each one.
#include <gtest/gtest.h>

#include <cstdlib>

#include "rapport/kafka/partitioner.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

std::string KafkaLibs() {
  if (const char* libs = std::getenv("RAPPORT_KAFKA_LIBS"); libs != nullptr && *libs != '\0') return libs;
  auto result = testing::RunProgram({testing::SourceDir() + "/ops/kafka", "libs"});
  std::string path = result.out;
  while (!path.empty() && path.back() == '\n') path.pop_back();
  return path;
}

TEST(CrossClient, JavaProducerAndRapportPutTheSameCustomerOnTheSamePartition) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string topic = testing::UniqueTopicName("it.crossclient");
  constexpr int kPartitions = 12;
  ASSERT_OK(testing::CreateTopic(broker, topic, kPartitions));

  std::string input;
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back("customer-" + std::to_string(i * 7919));
    input += keys.back() + "|{}\n";
  }
  keys.push_back("c-1001");
  input += "c-1001|{}\n";
  auto java = testing::RunProgram({"java", "-cp", KafkaLibs() + "/*", "-Dlog4j.configuration=file:/dev/null",
                                   "kafka.tools.ConsoleProducer", "--bootstrap-server", broker.brokers, "--topic",
                                   topic, "--property", "parse.key=true", "--property", "key.separator=|"},
                                  input);
  ASSERT_EQ(java.exit_code, 0) << java.err;

  auto records = testing::ReadTopic(broker, topic, keys.size(), std::chrono::seconds(30));
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), keys.size());
  std::set<int32_t> partitions_used;
  for (const auto& r : *records) {
    EXPECT_EQ(r.partition, kafka::PartitionForKey(r.key, kPartitions)) << "key " << r.key;
    partitions_used.insert(r.partition);
  }
  EXPECT_EQ(partitions_used.size(), static_cast<size_t>(kPartitions)) << "200 keys should spread over all partitions";
}

}  // namespace
}  // namespace rapport
