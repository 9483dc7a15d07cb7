#include "rapport/cli/config.h"

#include <gtest/gtest.h>

#include "rapport/testing/command.h"
#include "rapport/testing/status.h"

namespace rapport::cli {
namespace {

TEST(Config, DefaultsWithoutAFile) {
  auto config = LoadConfig(std::nullopt, {});
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(config->topics.events, "cx.events");
  EXPECT_EQ(config->topics.events_partitions, 12);
  EXPECT_EQ(config->topics.dead_letter, "cx.events.dlq");
  EXPECT_EQ(config->topics.alerts, "cx.alerts");
}

TEST(Config, TheShippedExampleLoadsAndSaysWhatItSays) {
  auto config = LoadConfig(testing::SourceDir() + "/examples/rapport.toml", {});
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(config->kafka.properties.at("client.id"), "rapport");
  EXPECT_EQ(config->publish.delivery_timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(config->publish.limits.max_event_bytes, 65536u);
}

TEST(Config, KafkaPropertiesPassThroughWithDottedOrQuotedKeys) {
  auto config = ParseConfig(R"(
[kafka.properties]
"security.protocol" = "SASL_SSL"
sasl.mechanisms = "SCRAM-SHA-512"
"socket.keepalive.enable" = true
"message.max.bytes" = 2000000
)",
                            "test.toml");
  ASSERT_OK(config);
  std::map<std::string, std::string> expected = {{"security.protocol", "SASL_SSL"},
                                                 {"sasl.mechanisms", "SCRAM-SHA-512"},
                                                 {"socket.keepalive.enable", "true"},
                                                 {"message.max.bytes", "2000000"}};
  EXPECT_EQ(config->kafka.properties, expected);
}

TEST(Config, EnvironmentOverridesTheFile) {
  auto config = ParseConfig("[kafka]\nbrokers = \"kafka-1:9092\"\n", "test.toml");
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "kafka-1:9092");
  auto overridden = LoadConfig(testing::SourceDir() + "/examples/rapport.toml",
                               {{"RAPPORT_BROKERS", "kafka-2:9092"}, {"RAPPORT_LOG_LEVEL", "debug"}});
  ASSERT_OK(overridden);
  EXPECT_EQ(overridden->kafka.brokers, "kafka-2:9092");
  EXPECT_EQ(overridden->log_level, "debug");
}

TEST(Config, ErrorsNameTheFileLineAndKey) {
  EXPECT_EQ(ParseConfig("[topics]\nevents_partitions = \"twelve\"\n", "rapport.toml").status().message(),
            "rapport.toml:2: topics.events_partitions: expected an integer");
  EXPECT_EQ(ParseConfig("[topics]\nevnts = \"x\"\n", "rapport.toml").status().message(),
            "rapport.toml:2: topics.evnts: unknown key (see examples/rapport.toml for the keys there are)");
  EXPECT_EQ(ParseConfig("[publish]\ndelivery_timeout_ms = 0\n", "rapport.toml").status().message(),
            "rapport.toml:2: publish.delivery_timeout_ms: must be greater than zero");
  EXPECT_EQ(ParseConfig("[kafka]\nbrokers = [\n", "rapport.toml").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(ParseConfig("[kafka\n", "rapport.toml").status().message())
                .rfind("rapport.toml:1: invalid TOML: ", 0),
            0u);
}

TEST(Config, MissingFileIsNotFound) {
  auto config = LoadConfig("/nonexistent/rapport.toml", {});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "cannot read config file /nonexistent/rapport.toml");
}

TEST(Config, TopicsAreKeptForever) {
  for (const auto& spec : TopicSpecs(TopicsConfig{})) {
    EXPECT_EQ(spec.configs.at("retention.ms"), "-1") << spec.name;
    EXPECT_EQ(spec.configs.at("retention.bytes"), "-1") << spec.name;
  }
}

}  // namespace
}  // namespace rapport::cli
