// Records no producer should send, against the real broker: each is
// dead-lettered with a bounded, specific reason, and `rapport run` goes on
// applying what follows, and starts again, whatever the record held.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "absl/strings/str_format.h"
#include "rapport/events/codec.h"
#include "rapport/producers/partitioner.h"
#include "rapport/producers/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

constexpr int32_t kPartitions = 4;

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.hostile");
    events_ = prefix_ + ".events";
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }
  // Topics of their own; `dlq_configs` for the dead-letter topic.
  std::string Config(const std::map<std::string, std::string>& dlq_configs = {}) {
    EXPECT_OK(producers::EnsureTopics(broker_, {{events_, kPartitions, -1, {}},
                                                {prefix_ + ".dlq", 1, -1, dlq_configs},
                                                {prefix_ + ".alerts", 1, -1, {}}})
                  .status());
    std::string dir = ::testing::TempDir() + prefix_;
    dirs_.push_back(dir);
    return testing::WriteTestConfig(broker_, prefix_,
                                    "[topics]\nevents = \"" + events_ + "\"\ndead_letter = \"" + prefix_ +
                                        ".dlq\"\nalerts = \"" + prefix_ + ".alerts\"\nevents_partitions = 4\n" +
                                        "[run]\ngroup_id = \"" + prefix_ + "\"\n[store]\ndata_dir = \"" + dir +
                                        "\"\n[log]\nlevel = \"warn\"\n");
  }
  testing::CommandResult Rapport(const std::string& config, std::vector<std::string> args,
                                 const std::map<std::string, std::string>& env = {}) {
    args.insert(args.begin(), {"--config", config});
    return testing::RunRapport(args, "", env);
  }
  // A valid consent event of `customer`, id ending in `n`.
  static v1::Envelope Event(const std::string& customer, int n, const std::string& occurred_at) {
    v1::Envelope event;
    EXPECT_FALSE(events::ParseEventJson(
                     absl::StrFormat(R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c%04d","customer_id":"%s",)"
                                     R"("occurred_at":"%s","recorded_at":"%s","source":"web",)"
                                     R"("channel":"CHANNEL_WEB","consent_changed":{"purpose":)"
                                     R"("CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
                                     n, customer, occurred_at, occurred_at),
                     event)
                     .has_value());
    return event;
  }
  // "run: A events applied, D duplicates skipped, L dead-lettered"
  static std::pair<int64_t, int64_t> AppliedAndDead(const std::string& out) {
    std::smatch m;
    static const std::regex kSummary(R"(run: (\d+) events applied, \d+ duplicates skipped, (\d+) dead-lettered)");
    EXPECT_TRUE(std::regex_search(out, m, kSummary)) << out;
    if (m.empty()) return {-1, -1};
    return {std::stoll(m[1]), std::stoll(m[2])};
  }
  static std::map<std::string, std::string> Headers(const testing::ConsumedRecord& r) {
    std::map<std::string, std::string> headers;
    for (const auto& h : r.headers) headers[h.name] = h.value;
    return headers;
  }

  producers::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::string events_;
  std::vector<std::string> dirs_;
};

// A 999,900-byte record once made a dead letter larger than Kafka takes: the
// relay failed, `run` exited, and every restart failed the same way.
TEST_F(HostileInput, AnOversizedRecordIsDeadLetteredCutAndThePipelineGoesOn) {
  const std::string config = Config();
  const std::string huge(999'900, '\xfe');
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-big", huge));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-1", events::EncodeEvent(Event("c-1", 1, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000));

  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{1}, int64_t{1}));
  auto again = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(again.exit_code, 0) << again.err;

  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 2, std::chrono::seconds(5));
  ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 1u);
  const auto& letter = letters->front();
  EXPECT_EQ(letter.value, huge.substr(0, 65536)) << "the first 64 KiB of the value are kept";
  auto headers = Headers(letter);
  EXPECT_EQ(headers["rapport-dlq-truncated"],
            "value: 999900 bytes, the first 65536 kept; the whole record stays at the origin");
  EXPECT_EQ(headers["rapport-dlq-reason"],
            "not a rapport.v1.Envelope in protobuf binary (999900 bytes that do not parse)");
  EXPECT_TRUE(std::regex_match(headers["rapport-dlq-origin"], std::regex(events_ + R"(/\d/0)")))
      << headers["rapport-dlq-origin"];
}

// A dead letter the broker still refuses (here the dead-letter topic takes
// records of at most 2,000 bytes) is set aside: the pipeline neither stops
// nor sends it again on the next start.
TEST_F(HostileInput, AnOutboxRecordKafkaRefusesForGoodIsParkedAndThePipelineGoesOn) {
  const std::string config = Config({{"max.message.bytes", "2000"}});
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-2", std::string(10'000, '\xfe')));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-2", events::EncodeEvent(Event("c-2", 2, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-3", "short garbage"));

  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{1}, int64_t{2}));
  EXPECT_NE(run.err.find("refused by Kafka for good (Broker: Message size too large); set aside"), std::string::npos)
      << run.err;
  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 3, std::chrono::seconds(5));
  ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 1u) << "the small dead letter still arrives\n" << run.err;
  EXPECT_EQ(letters->front().value, "short garbage");

  auto again = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.err.find("refused by Kafka"), std::string::npos) << "the parked record is not sent again\n"
                                                                   << again.err;
}

// A dead letter copies the record's headers; a header name that is not
// UTF-8 once made the stored outbox unreadable, so the start after a crash
// failed. The crash here comes right after the outbox write.
TEST_F(HostileInput, AHeaderNameThatIsNotUtf8SurvivesTheOutboxAcrossACrash) {
  const std::string config = Config();
  const std::string name = "bad-\xc3\x28-name";  // an invalid UTF-8 sequence
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-4", "garbage", {{name, "v"}}));

  auto crashed = Rapport(config, {"run", "--until-caught-up"}, {{"RAPPORT_FAULT", "exit-after-outbox-write"}});
  ASSERT_EQ(crashed.exit_code, 86) << crashed.err;
  auto resumed = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 2, std::chrono::seconds(5));
  ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ(Headers(letters->front())[name], "v");
}

// Records a raw producer got wrong: on a partition murmur2 does not give its
// key (it would fold into a shadow copy of the customer that queries never
// find), or stamped long before it occurred (an event in the far future
// reaches state and skews every churn fit). Both are dead-lettered, and the
// customer's state is what the valid events make.
TEST_F(HostileInput, ARecordOnTheWrongPartitionOrStampedLongBeforeItOccurredIsDeadLettered) {
  const std::string config = Config();
  const int32_t home = producers::PartitionForKey("c-5", kPartitions);
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 5, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000, (home + 1) % kPartitions));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 6, "2099-01-01T00:00:00Z")),
                                {}, 1776765600000));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 7, "2026-04-21T11:00:00Z")),
                                {}, 1776769200000));

  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{1}, int64_t{2}));
  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 3, std::chrono::seconds(5));
  ASSERT_OK(letters);
  std::set<std::string> reasons;
  for (const auto& r : *letters) reasons.insert(Headers(r)["rapport-dlq-reason"]);
  EXPECT_EQ(reasons,
            (std::set<std::string>{
                absl::StrFormat("the record is on partition %d, but its key \"c-5\" belongs on partition %d "
                                "(murmur2); produce with librdkafka's murmur2_random partitioner or Java's "
                                "default",
                                (home + 1) % kPartitions, home),
                "occurred_at: 2099-01-01T00:00:00.000Z is more than an hour after the record's Kafka timestamp "
                "2026-04-21T10:00:00.000Z; stamp a record with its occurred_at"}));
  auto profile = Rapport(config, {"query", "profile", "c-5"});
  ASSERT_EQ(profile.exit_code, 0) << profile.err;
  EXPECT_NE(profile.out.find("2026-04-21T11:00:00"), std::string::npos) << profile.out;
  EXPECT_EQ(profile.out.find("2099"), std::string::npos) << profile.out;
}

}  // namespace
}  // namespace rapport
