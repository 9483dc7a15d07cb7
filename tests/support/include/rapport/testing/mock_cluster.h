#pragma once

// librdkafka's in-process mock cluster, for unit tests of Kafka-facing code
// that need no real broker (the same behaviour against the real one is in
// tests/integration). The cluster lives as long as this object.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <string>

#include "rapport/kafka/client.h"

namespace rapport::testing {

class MockCluster {
 public:
  explicit MockCluster(int brokers = 1);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  void CreateTopic(const std::string& topic, int32_t partitions);
  std::string bootstrap() const;
  // Settings for a client of this cluster (a 5 s timeout).
  kafka::KafkaSettings settings() const;
  void BrokerDown(int32_t broker = 1);
  // The next `count` requests of Kafka API `api_key` fail with `error`.
  void FailNextRequests(int16_t api_key, size_t count, rd_kafka_resp_err_t error);

 private:
  rd_kafka_t* owner_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

}  // namespace rapport::testing
