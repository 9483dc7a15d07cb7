// `rapport topics ensure` against the real broker.
#include "rapport/kafka/topics.h"

#include <gtest/gtest.h>

#include <fstream>

#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class TopicsEnsure : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.topics");
    config_path_ = testing::WriteTestConfig(broker_, prefix_,
                                            "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" +
                                                prefix_ + ".dlq\"\nalerts = \"" + prefix_ + ".alerts\"\nmembers = \"" +
                                                prefix_ + ".members\"\n");
  }
  testing::CommandResult Ensure() { return testing::RunRapport({"--config", config_path_, "topics", "ensure"}); }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::string config_path_;
};

TEST_F(TopicsEnsure, CreatesThenFindsThemAsConfigured) {
  auto first = Ensure();
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, prefix_ + ".events: created (12 partitions, kept forever)\n" + prefix_ +
                           ".dlq: created (3 partitions, kept forever)\n" + prefix_ +
                           ".alerts: created (12 partitions, kept forever)\n" + prefix_ +
                           ".members: created (1 partitions, compacted)\n");
  auto second = Ensure();
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, prefix_ + ".events: exists as configured\n" + prefix_ + ".dlq: exists as configured\n" +
                            prefix_ + ".alerts: exists as configured\n" + prefix_ + ".members: exists as configured\n");
}

TEST_F(TopicsEnsure, ReportsEveryDifferenceOnAnExistingTopicAndChangesNothing) {
  // Someone created the events topic by hand, with 4 partitions and 7 days' retention.
  ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 4, -1, {{"retention.ms", "604800000"}}}}));
  auto result = Ensure();
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, prefix_ +
                            ".events: exists but differs from the config (not changed):\n"
                            "  partitions: 4 on the cluster, 12 in the config\n"
                            "  retention.ms: 604800000 on the cluster, -1 in the config\n");
}

TEST_F(TopicsEnsure, UnreachableClusterIsExitTwoWithTheReason) {
  std::ofstream(config_path_) << "[kafka]\nbrokers = \"127.0.0.1:1\"\ntimeout_ms = 1000\n";
  auto result = Ensure();
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("topics ensure: no answer from Kafka at 127.0.0.1:1 within 1000 ms"), std::string::npos)
      << result.err;
}

}  // namespace
}  // namespace rapport
