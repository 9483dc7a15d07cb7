// Records no producer should send, against the real broker: each is
// dead-lettered with a bounded, specific reason, and `rapport run` goes on
// applying what follows, and starts again, whatever the record held.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <limits>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/str_format.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/kafka/topics.h"
#include "rapport/projections/registry.h"
#include "rapport/projections/store.h"
#include "rapport/state/v1/runner.pb.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"
#include "runner_keys.h"

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
    EXPECT_OK(kafka::EnsureTopics(broker_, {{events_, kPartitions, -1, {}},
                                            {prefix_ + ".dlq", 1, -1, dlq_configs},
                                            {prefix_ + ".alerts", 1, -1, {}}})
                  .status());
    const std::string dir = DataDir();
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

  std::string DataDir() const { return ::testing::TempDir() + prefix_; }

  kafka::KafkaSettings broker_ = testing::TestBroker();
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
  const int32_t home = kafka::PartitionForKey("c-5", kPartitions);
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 5, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000, (home + 1) % kPartitions));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 6, "2099-01-01T00:00:00Z")),
                                {}, 1776765600000));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 7, "2026-04-21T11:00:00Z")),
                                {}, 1776769200000));
  // Stamped later than it occurred is allowed (a client that leaves the
  // timestamp to its library stamps the send time), even absurdly later:
  // the check must not overflow.
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 8, "2026-04-21T12:00:00Z")),
                                {}, std::numeric_limits<int64_t>::max() - 1));

  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{2}, int64_t{2}));
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
  EXPECT_NE(profile.out.find("2026-04-21T12:00:00"), std::string::npos) << profile.out;
  EXPECT_EQ(profile.out.find("2099"), std::string::npos) << profile.out;
}

// Whatever a record holds, its dead letter and the log line about it stay
// small: thousands of headers, thousands of violations, a key of 100 KB.
TEST_F(HostileInput, ADeadLetterStaysBoundedWhateverTheRecordHolds) {
  const std::string config = Config();
  std::vector<events::Header> headers;
  for (int i = 0; i < 5000; ++i) headers.push_back({absl::StrFormat("h%04d", i), "0123456789"});
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-6", "garbage with headers", headers));
  v1::Envelope many = Event("c-6", 9, "2026-04-21T10:00:00Z");
  many.clear_payload();
  auto* purchase = many.mutable_purchase_completed();
  purchase->set_order_id("o-1");
  purchase->mutable_total()->set_currency("EUR");
  purchase->mutable_total()->set_amount("1.00");
  for (int i = 0; i < 1000; ++i) {
    auto* item = purchase->add_items();
    item->set_category("Not A Category");
    item->set_quantity(0);
  }
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-6", events::EncodeEvent(many), {}, 1776765600000));
  const std::string long_key(100'000, 'k');
  ASSERT_OK(testing::ProduceRaw(broker_, events_, long_key,
                                events::EncodeEvent(Event("c-6", 10, "2026-04-21T10:00:00Z")), {}, 1776765600000));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-6", events::EncodeEvent(Event("c-6", 11, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000));

  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{1}, int64_t{3}));
  EXPECT_LT(run.err.size(), 20'000u) << "the log lines quote bounded reasons";
  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 4, std::chrono::seconds(5));
  ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 3u);
  std::map<std::string, std::map<std::string, std::string>> by_stage;
  for (const auto& r : *letters) {
    auto h = Headers(r);
    size_t header_bytes = 0;
    for (const auto& header : r.headers) header_bytes += header.name.size() + header.value.size();
    EXPECT_LT(header_bytes, 24u << 10) << h["rapport-dlq-reason"];
    EXPECT_LE(r.key.size(), 1024u);
    by_stage[h["rapport-dlq-stage"]] = h;
  }
  EXPECT_NE(by_stage["decode"]["rapport-dlq-truncated"].find("headers: "), std::string::npos)
      << by_stage["decode"]["rapport-dlq-truncated"];
  const std::string& violations = by_stage["validate"]["rapport-dlq-reason"];
  EXPECT_LT(violations.size(), 2200u);
  EXPECT_TRUE(std::regex_search(violations, std::regex(R"(; \.\.\. and \d+ more violations$)"))) << violations;
  auto& wrong_key = by_stage["key"];
  EXPECT_LT(wrong_key["rapport-dlq-reason"].size(), 2200u);
  EXPECT_NE(wrong_key["rapport-dlq-reason"].find("bytes in all)"), std::string::npos);
  EXPECT_EQ(wrong_key["rapport-dlq-truncated"],
            "key: 100000 bytes, the first 1024 kept; the whole record stays at the origin");
}

// A store whose outbox holds a record no broker takes (1.1 MB, as an
// earlier version wrote dead letters) once failed every start: the relay's
// send is refused at once, and the entry is parked instead.
TEST_F(HostileInput, AStoreWhoseOutboxHoldsARecordKafkaCannotTakeStartsAndParksIt) {
  const std::string config = Config();
  {
    projections::ProjectionRegistry registry;
    projections::RegisterProjections(registry);
    auto families = registry.families();
    families.push_back(consumers::ProjectionRunner::kFamily);
    auto store = projections::ProjectionStore::Open({.path = DataDir()}, families);
    ASSERT_OK(store);
    state::v1::OutboxEntry entry;
    entry.set_topic(prefix_ + ".dlq");
    entry.set_key("c-8");
    entry.set_value(std::string(1'100'000, 'x'));
    auto* runner = (*store)->family(consumers::ProjectionRunner::kFamily);
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(batch.Put(runner, consumers::runner_keys::OutboxKey(0), entry.SerializeAsString()).ok());
    ASSERT_TRUE(batch.Put(runner, consumers::runner_keys::kOutboxNextKey, consumers::runner_keys::U64(1)).ok());
    ASSERT_OK((*store)->Write(batch));
  }
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-8", events::EncodeEvent(Event("c-8", 12, "2026-04-21T10:00:00Z")),
                                {}, 1776765600000));
  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{1}, int64_t{0}));
  EXPECT_NE(run.err.find("outbox record 0 to " + prefix_ + ".dlq refused by Kafka for good"), std::string::npos)
      << run.err;
  auto again = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.err.find("refused by Kafka"), std::string::npos) << again.err;
}

// A store remembers how far it applied each partition. A topic deleted and
// created again (or a log cut by an unclean leader election) is shorter than
// that: its new records once were skipped without a word until the log grew
// past the stored offset. Now the run stops and says what happened.
TEST_F(HostileInput, ALogShorterThanWhatTheStoreAppliedStopsTheRunWithWhatToDo) {
  const std::string config = Config();
  const int32_t partition = kafka::PartitionForKey("c-4", kPartitions);
  for (int n = 1; n <= 3; ++n) {
    ASSERT_OK(testing::ProduceRaw(
        broker_, events_, "c-4", events::EncodeEvent(Event("c-4", 40 + n, "2026-04-21T10:00:00Z")), {}, 1776765600000));
  }
  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(AppliedAndDead(run.out), std::make_pair(int64_t{3}, int64_t{0}));

  ASSERT_OK(testing::DeleteTopic(broker_, events_));
  ASSERT_OK(testing::CreateTopic(broker_, events_, kPartitions));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-4", events::EncodeEvent(Event("c-4", 44, "2026-04-21T11:00:00Z")),
                                {}, 1776769200000));
  const std::string expected = absl::StrCat(events_, "[", partition,
                                            "] now ends at offset 1, but this store has applied it up to offset 3: "
                                            "the topic was deleted and recreated");
  for (int attempt = 0; attempt < 2; ++attempt) {  // and every restart alike: nothing is skipped quietly
    auto stopped = Rapport(config, {"run", "--until-caught-up"});
    EXPECT_NE(stopped.exit_code, 0) << stopped.out;
    EXPECT_NE(stopped.err.find(expected), std::string::npos) << stopped.err;
    EXPECT_NE(stopped.err.find("move the store's directory ([store] data_dir) aside"), std::string::npos);
  }
  std::filesystem::remove_all(DataDir());  // what the message says to do
  auto rebuilt = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.err;
  EXPECT_EQ(AppliedAndDead(rebuilt.out), std::make_pair(int64_t{1}, int64_t{0}));
}

// The same while `rapport run` is running: Kafka answers "offset out of
// range" for the partition once it is back, and the run stops.
TEST_F(HostileInput, ATopicRecreatedUnderARunningRunnerStopsIt) {
  const std::string config = Config();
  for (int n = 1; n <= 3; ++n) {
    ASSERT_OK(testing::ProduceRaw(
        broker_, events_, "c-6", events::EncodeEvent(Event("c-6", 60 + n, "2026-04-21T10:00:00Z")), {}, 1776765600000));
  }
  const std::string log_path = DataDir() + ".log";
  const int pid = testing::StartRapport({"--config", config, "run"}, log_path);
  const int32_t partition = kafka::PartitionForKey("c-6", kPartitions);
  for (int waited = 0; waited < 300; ++waited) {  // until the advisory commit shows all three applied
    auto committed = testing::CommittedOffsets(broker_, prefix_, events_);
    if (committed.ok() && (*committed)[partition] == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK(testing::DeleteTopic(broker_, events_));
  ASSERT_OK(testing::CreateTopic(broker_, events_, kPartitions));
  ASSERT_OK(testing::ProduceRaw(broker_, events_, "c-6", events::EncodeEvent(Event("c-6", 64, "2026-04-21T11:00:00Z")),
                                {}, 1776769200000));
  int status = 0;
  bool exited = false;
  for (int waited = 0; waited < 600 && !exited; ++waited) {
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!exited) testing::KillAndWait(pid, SIGKILL);
  const std::string log = testing::ReadFile(log_path);
  ASSERT_TRUE(exited) << "run still running 60 s after its topic was recreated\n" << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << log;
  EXPECT_NE(
      log.find(absl::StrCat("[", partition, "] now ends at offset 1, but this store has applied it up to offset 3")),
      std::string::npos)
      << log;
}

// Retention deleted records this store had not applied yet (it was stopped
// longer than the topic keeps records): nothing can bring them back, so the
// run goes on from the log's start, and says how many it lost.
TEST_F(HostileInput, RecordsDeletedByRetentionBeforeTheyWereAppliedAreCountedAndTheRunGoesOn) {
  const std::string config = Config();
  const int32_t partition = kafka::PartitionForKey("c-5", kPartitions);
  auto send = [&](int n) {
    ASSERT_OK(testing::ProduceRaw(
        broker_, events_, "c-5", events::EncodeEvent(Event("c-5", 50 + n, "2026-04-21T10:00:00Z")), {}, 1776765600000));
  };
  for (int n = 1; n <= 3; ++n) send(n);
  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (int n = 4; n <= 6; ++n) send(n);
  ASSERT_OK(testing::DeleteRecordsBefore(broker_, events_, partition, 5));

  auto after = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(AppliedAndDead(after.out), std::make_pair(int64_t{1}, int64_t{0}));
  EXPECT_NE(after.err.find(absl::StrCat(events_, "[", partition,
                                        "]: records 3..4 were deleted from the log (retention) before this store "
                                        "applied them; going on from offset 5")),
            std::string::npos)
      << after.err;
}

// Partitions added to the events topic under a store move customers
// (murmur2 of the key modulo the count): queries would look for them on
// other partitions, and their new events would fold into second copies.
// The run stops instead, and says why.
TEST_F(HostileInput, PartitionsAddedUnderAStoreStopTheRunWithWhy) {
  const std::string config = Config();
  for (int n = 1; n <= 4; ++n) {
    const std::string customer = "c-part-" + std::to_string(n);
    ASSERT_OK(testing::ProduceRaw(broker_, events_, customer,
                                  events::EncodeEvent(Event(customer, 70 + n, "2026-04-21T10:00:00Z")), {},
                                  1776765600000));
  }
  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_OK(testing::AddPartitions(broker_, events_, kPartitions + 2));
  auto stopped = Rapport(config, {"run", "--until-caught-up"});
  EXPECT_NE(stopped.exit_code, 0) << stopped.out;
  EXPECT_NE(stopped.err.find(events_ + " has 6 partitions now, but this store was built when it had 4"),
            std::string::npos)
      << stopped.err;
  auto query = Rapport(config, {"query", "profile", "c-part-1"});
  EXPECT_EQ(query.exit_code, 0) << "the store still answers for what it holds: " << query.err;
}

}  // namespace
}  // namespace rapport
