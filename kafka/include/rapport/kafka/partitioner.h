#pragma once

#include <cstdint>
#include <string_view>

namespace rapport::kafka {

// The partition of a record keyed by `key` among `partition_count`
// partitions: Kafka's default (Java) partitioner, murmur2 of the key bytes,
// made positive, modulo the count. It is the partitioner rapport's producers
// use (librdkafka's murmur2_random), so a Java, Go or Python producer keyed by
// the same customer id lands on the same partition.
int32_t PartitionForKey(std::string_view key, int32_t partition_count);

}  // namespace rapport::kafka
