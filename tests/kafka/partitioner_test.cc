#include "rapport/kafka/partitioner.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace rapport::kafka {
namespace {

// murmur2 of the key bytes as Kafka's Java client computes it
// (org.apache.kafka.common.utils.UtilsTest#testMurmur2).
struct JavaVector {
  const char* key;
  int32_t murmur2;
};
constexpr JavaVector kJavaVectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};

// Java's DefaultPartitioner / BuiltInPartitioner: toPositive(murmur2(key)) % n.
int32_t JavaPartition(int32_t murmur2, int32_t partitions) {
  return static_cast<int32_t>((static_cast<uint32_t>(murmur2) & 0x7fffffffu) % static_cast<uint32_t>(partitions));
}

TEST(Partitioner, MatchesKafkasJavaClientOnItsOwnTestVectors) {
  for (const auto& v : kJavaVectors) {
    for (int32_t partitions : {1, 3, 12, 100, 1000, std::numeric_limits<int32_t>::max()}) {
      EXPECT_EQ(PartitionForKey(v.key, partitions), JavaPartition(v.murmur2, partitions))
          << "key " << v.key << ", " << partitions << " partitions";
    }
  }
}

TEST(Partitioner, SameCustomerAlwaysSamePartition) {
  EXPECT_EQ(PartitionForKey("c-1001", 12), PartitionForKey(std::string("c-1001"), 12));
  int32_t p = PartitionForKey("c-1001", 12);
  EXPECT_GE(p, 0);
  EXPECT_LT(p, 12);
}

}  // namespace
}  // namespace rapport::kafka
