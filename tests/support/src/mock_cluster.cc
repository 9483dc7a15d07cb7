#include "rapport/testing/mock_cluster.h"

#include <vector>

namespace rapport::testing {

MockCluster::MockCluster(int brokers) {
  char error[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", error, sizeof(error));
  owner_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  cluster_ = rd_kafka_mock_cluster_new(owner_, brokers);
}

MockCluster::~MockCluster() {
  rd_kafka_mock_cluster_destroy(cluster_);
  rd_kafka_destroy(owner_);
}

void MockCluster::CreateTopic(const std::string& topic, int32_t partitions) {
  rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1);
}

std::string MockCluster::bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

kafka::KafkaSettings MockCluster::settings() const {
  kafka::KafkaSettings settings;
  settings.brokers = bootstrap();
  settings.timeout = std::chrono::milliseconds(5000);
  return settings;
}

void MockCluster::BrokerDown(int32_t broker) { rd_kafka_mock_broker_set_down(cluster_, broker); }

void MockCluster::FailNextRequests(int16_t api_key, size_t count, rd_kafka_resp_err_t error) {
  std::vector<rd_kafka_resp_err_t> errors(count, error);
  rd_kafka_mock_push_request_errors_array(cluster_, api_key, errors.size(), errors.data());
}

}  // namespace rapport::testing
