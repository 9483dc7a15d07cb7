#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rapport/base/status.h"
#include "rapport/kafka/client.h"

namespace rapport::kafka {

// The layout a topic must have.
struct TopicSpec {
  std::string name;
  int32_t partitions = 1;
  int16_t replication_factor = -1;             // -1: the cluster's default.replication.factor
  std::map<std::string, std::string> configs;  // e.g. {"retention.ms", "-1"}
};

struct TopicReport {
  enum class Outcome { kCreated, kAsSpecified, kMismatch };
  std::string topic;
  Outcome outcome = Outcome::kAsSpecified;
  // For kMismatch, one line per difference, e.g.
  // "partitions: 6 on the cluster, 12 in the config".
  std::vector<std::string> differences;
};

// Creates the topics that do not exist; for the ones that do, compares their
// partition count and the configs the spec sets, and reports each difference
// without changing anything (a partition count change would move customers to
// other partitions). Idempotent. Waits up to settings.timeout for the cluster.
Result<std::vector<TopicReport>> EnsureTopics(const KafkaSettings& settings, const std::vector<TopicSpec>& specs);

}  // namespace rapport::kafka
