// The Kafka client layer against librdkafka's in-process mock cluster.
#include "rapport/kafka/client.h"

#include <gtest/gtest.h>

#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"

namespace rapport::kafka {
namespace {

constexpr int16_t kListOffsetsApi = 2;

// A just-created partition answers "not leader" for a moment (seen with a real
// broker right after `rapport topics ensure`): reading its bounds waits it out.
TEST(QueryLogBounds, RetriesNotLeaderUntilThePartitionAnswers) {
  testing::MockCluster cluster;
  cluster.CreateTopic("cx.events", 6);
  KafkaSettings settings = cluster.settings();
  auto conf = BuildKafkaConf(settings, {{"group.id", "bounds-test", "a consumer needs one"}});
  ASSERT_OK(conf);
  auto consumer = NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  ASSERT_OK(consumer);
  cluster.FailNextRequests(kListOffsetsApi, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  auto bounds = QueryLogBounds(consumer->get(), settings, "cx.events", 2);
  ASSERT_OK(bounds);
  EXPECT_EQ(bounds->low, 0);
  EXPECT_EQ(bounds->high, 0);

  // Not transient: reported at once, naming the partition.
  cluster.FailNextRequests(kListOffsetsApi, 2, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  auto denied = QueryLogBounds(consumer->get(), settings, "cx.events", 2);
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.status().message().find("cx.events partition 2"), std::string_view::npos) << denied.status();
}

}  // namespace
}  // namespace rapport::kafka
