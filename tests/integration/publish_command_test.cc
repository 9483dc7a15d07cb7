// `rapport publish` against the real broker, as a user runs it.
#include <gtest/gtest.h>

#include <fstream>

#include "google/protobuf/util/message_differencer.h"
#include "rapport/events/codec.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class PublishCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    topic_ = testing::UniqueTopicName("it.publish");
    config_path_ = testing::WriteTestConfig(broker_, topic_, "[topics]\nevents = \"" + topic_ + "\"\n");
  }
  testing::CommandResult Publish(const std::vector<std::string>& args, const std::string& input = "") {
    std::vector<std::string> all = {"--config", config_path_, "publish"};
    all.insert(all.end(), args.begin(), args.end());
    return testing::RunRapport(all, input);
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string topic_;
  std::string config_path_;
};

TEST_F(PublishCommand, ExampleFilePutsTheValidEventsOnTheTopicAndReportsTheRest) {
  ASSERT_OK(testing::CreateTopic(broker_, topic_, 12));
  const std::string path = testing::SourceDir() + "/examples/events.jsonl";
  auto result = Publish({path});
  EXPECT_EQ(result.exit_code, 1);  // some lines were rejected
  EXPECT_EQ(result.out.rfind("publish: 16 sent, 5 rejected, 0 undelivered to " + topic_ + " in ", 0), 0u) << result.out;
  std::vector<std::string> errors = testing::Lines(result.err);
  ASSERT_EQ(errors.size(), 5u) << result.err;
  for (int line = 17; line <= 21; ++line) {
    EXPECT_EQ(errors[line - 17].rfind("line " + std::to_string(line) + ": ", 0), 0u) << errors[line - 17];
  }

  auto records = testing::ReadTopic(broker_, topic_, 16, std::chrono::seconds(30));
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 16u);
  // Every valid line arrived once, as written; rapport added only the id and recorded_at.
  std::vector<std::string> lines = testing::Lines(testing::ReadFile(path));
  std::vector<bool> seen(16, false);
  for (const auto& r : *records) {
    v1::Envelope consumed;
    ASSERT_FALSE(events::DecodeEvent(r.value, consumed).has_value());
    EXPECT_EQ(r.key, consumed.customer_id());
    EXPECT_EQ(consumed.event_id().size(), 36u);
    EXPECT_TRUE(consumed.has_recorded_at());
    bool matched = false;
    for (size_t i = 0; i < 16 && !matched; ++i) {
      v1::Envelope written;
      ASSERT_FALSE(events::ParseEventJson(lines[i], written).has_value());
      v1::Envelope stripped = consumed;
      if (written.event_id().empty()) stripped.clear_event_id();
      stripped.clear_recorded_at();
      if (!seen[i] && google::protobuf::util::MessageDifferencer::Equals(written, stripped)) {
        seen[i] = matched = true;
      }
    }
    EXPECT_TRUE(matched) << "consumed an event no line wrote: " << events::EventToJson(consumed);
  }
}

TEST_F(PublishCommand, VerboseShowsWhereEachEventWent) {
  ASSERT_OK(testing::CreateTopic(broker_, topic_, 3));
  const std::string event =
      R"({"customer_id":"c-9","occurred_at":"2026-04-21T10:00:00Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})";
  auto result = Publish({"-v", "-"}, event + "\n" + event + "\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> lines = testing::Lines(result.out);
  ASSERT_EQ(lines.size(), 3u) << result.out;
  EXPECT_EQ(lines[0].rfind("line 1: sent to " + topic_ + " partition ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(" offset 0"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(" offset 1"), std::string::npos) << lines[1];
}

TEST_F(PublishCommand, MissingTopicStopsBeforeReadingWithExitTwo) {
  auto result = Publish({testing::SourceDir() + "/examples/events.jsonl"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "publish: topic " + topic_ + " does not exist on " + broker_.brokers +
                            "; create it with `rapport topics ensure`\n");
}

TEST_F(PublishCommand, UnreachableBrokerFailsWithinTheConfiguredTimeout) {
  std::ofstream(config_path_) << "[kafka]\nbrokers = \"127.0.0.1:1\"\ntimeout_ms = 1000\n";
  auto result = Publish({testing::SourceDir() + "/examples/events.jsonl"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("publish: no answer from Kafka at 127.0.0.1:1 within 1000 ms"), std::string::npos)
      << result.err;
}

}  // namespace
}  // namespace rapport
