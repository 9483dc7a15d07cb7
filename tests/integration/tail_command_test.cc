// `rapport tail` against the real broker.
#include <gtest/gtest.h>

#include <fstream>

#include "rapport/events/admission.h"
#include "rapport/events/codec.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class TailCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    topic_ = testing::UniqueTopicName("it.tail");
    ASSERT_OK(testing::CreateTopic(broker_, topic_, 2));
    config_path_ = testing::WriteTestConfig(broker_, topic_, "[topics]\nevents = \"" + topic_ + "\"\n");
  }
  testing::CommandResult Tail(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_path_, "tail"});
    return testing::RunRapport(args);
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string topic_;
  std::string config_path_;
};

TEST_F(TailCommand, PrintsEventsDecodedAndOtherRecordsWithTheirHeaders) {
  events::EventAdmission admission;
  auto admitted = admission.AdmitJson(
      R"({"customer_id":"c-7","occurred_at":"2026-04-21T10:00:00Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
      absl::FromUnixSeconds(1795348800));
  ASSERT_TRUE(admitted.accepted());
  const int64_t occurred_ms = 1776765600000;  // 2026-04-21T10:00:00Z, as rapport's producer stamps it
  ASSERT_OK(testing::ProduceRaw(broker_, topic_, "c-7", admitted.event.encoded, {}, occurred_ms));
  ASSERT_OK(testing::ProduceRaw(broker_, topic_, "c-7", "\xff\xfe garbage", {{"dlq_reason", "not protobuf"}}));

  auto result = Tail({});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> lines = testing::Lines(result.out);
  ASSERT_EQ(lines.size(), 2u) << result.out;
  const std::string prefix = R"({"partition":)";
  EXPECT_EQ(lines[0].rfind(prefix, 0), 0u);
  EXPECT_NE(lines[0].find(R"("offset":0,"timestamp":"2026-04-21T10:00:00.000Z","key":"c-7","event":{"event_id":")" +
                          admitted.event.envelope.event_id() + "\""),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS")"), std::string::npos);
  EXPECT_NE(lines[1].find(R"("offset":1,)"), std::string::npos) << lines[1];
  const std::string dead_letter_part =
      "\"headers\":{\"dlq_reason\":\"not protobuf\"},"
      "\"error\":\"not a rapport.v1.Envelope in protobuf binary (10 bytes that do not parse)\"}";
  EXPECT_NE(lines[1].find(dead_letter_part), std::string::npos) << lines[1];
}

TEST_F(TailCommand, MaxStopsAfterThatManyRecords) {
  for (int i = 0; i < 5; ++i) ASSERT_OK(testing::ProduceRaw(broker_, topic_, "c-1", "x"));
  auto result = Tail({"-n", "3"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(testing::Lines(result.out).size(), 3u);
}

TEST_F(TailCommand, EmptyTopicEndsAtOnceWithNothing) {
  auto result = Tail({});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "");
}

TEST_F(TailCommand, MissingTopicIsExitTwo) {
  auto result = Tail({"--topic", topic_ + ".absent"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err.rfind("tail: topic " + topic_ + ".absent does not exist on ", 0), 0u) << result.err;
}

}  // namespace
}  // namespace rapport
