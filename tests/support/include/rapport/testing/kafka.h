#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rapport/base/status.h"
#include "rapport/events/cloudevents.h"
#include "rapport/kafka/client.h"

namespace rapport::testing {

// The real broker the integration tests run against: $RAPPORT_TEST_BROKERS,
// else 127.0.0.1:9092 (where ops/kafka starts it).
kafka::KafkaSettings TestBroker();

// OK when the broker answers; FailedPrecondition saying how to start it if not.
Status CheckBrokerAnswers(const kafka::KafkaSettings& broker);

// A topic name no other test run uses: "<prefix>.<pid>.<counter>.<random>".
std::string UniqueTopicName(const std::string& prefix);

// Writes a rapport config file in the test's temporary directory that points
// at `broker`, followed by `extra_toml` (e.g. a [topics] table); returns its path.
std::string WriteTestConfig(const kafka::KafkaSettings& broker, const std::string& name, const std::string& extra_toml);

// Creates a topic (kept forever) and waits until it is usable.
Status CreateTopic(const kafka::KafkaSettings& broker, const std::string& topic, int32_t partitions);

// Deletes a topic and waits until the cluster no longer lists it, so that it
// can be created again (a topic replaced while rapport keeps a store of it).
Status DeleteTopic(const kafka::KafkaSettings& broker, const std::string& topic);

// Raises `topic`'s partition count to `total`, as `kafka-topics --alter` does.
Status AddPartitions(const kafka::KafkaSettings& broker, const std::string& topic, int32_t total);

// Deletes the records of `topic`'s `partition` before `offset`, as retention
// does: the partition's log then starts at `offset`.
Status DeleteRecordsBefore(const kafka::KafkaSettings& broker, const std::string& topic, int32_t partition,
                           int64_t offset);

// Writes one record as any Kafka client could (no rapport encoding), waiting
// for the broker's acknowledgement. A timestamp of 0 means now; a partition
// of RD_KAFKA_PARTITION_UA (-1) means Kafka's default partitioner (murmur2
// of the key).
Status ProduceRaw(const kafka::KafkaSettings& broker, const std::string& topic, const std::string& key,
                  const std::string& value, const std::vector<events::Header>& headers = {}, int64_t timestamp_ms = 0,
                  int32_t partition = -1);

struct ConsumedRecord {
  int32_t partition = -1;
  int64_t offset = -1;
  int64_t timestamp_ms = -1;
  std::string key;
  std::string value;
  std::vector<events::Header> headers;
};

// Reads `topic` from the beginning of every partition with a plain librdkafka
// consumer (no group, no rapport code) until `count` records arrived or
// `timeout` passed; returns what it read, sorted by partition and offset.
Result<std::vector<ConsumedRecord>> ReadTopic(const kafka::KafkaSettings& broker, const std::string& topic,
                                              size_t count, std::chrono::milliseconds timeout);

// The offsets `group` has committed for each partition of `topic` (what lag
// tools see); -1 for a partition without one.
Result<std::map<int32_t, int64_t>> CommittedOffsets(const kafka::KafkaSettings& broker, const std::string& group,
                                                    const std::string& topic);

// The end (high watermark) of each partition of `topic`.
Result<std::map<int32_t, int64_t>> EndOffsets(const kafka::KafkaSettings& broker, const std::string& topic);

// Reads all of `topic` as it is now: up to each partition's high watermark
// taken at the start, however long that takes (up to `timeout`, then an error).
Result<std::vector<ConsumedRecord>> ReadTopicToEnd(const kafka::KafkaSettings& broker, const std::string& topic,
                                                   std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace rapport::testing
