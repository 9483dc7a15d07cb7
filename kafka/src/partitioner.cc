#include "rapport/kafka/partitioner.h"

#include <librdkafka/rdkafka.h>

namespace rapport::kafka {

int32_t PartitionForKey(std::string_view key, int32_t partition_count) {
  // librdkafka's own function, the same one its murmur2_random partitioner
  // calls for non-empty keys; it does not use the topic handle.
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partition_count, nullptr, nullptr);
}

}  // namespace rapport::kafka
