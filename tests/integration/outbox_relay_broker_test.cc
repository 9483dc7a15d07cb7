// The outbox relay's transactions against the real broker, where what the
// mock cluster leaves out is real: the watermarks reach the group with the
// records, a reader with isolation.level=read_committed never sees an aborted
// transaction's records, a batch the topic refuses as too large aborts the
// transaction and its records are sent again alone, and an instance the group
// has moved on from (a zombie) can commit nothing: its transaction aborts,
// records and watermark alike.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <thread>

#include "outbox_relay.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"
#include "runner_keys.h"

namespace rapport::consumers {
namespace {

using Clock = std::chrono::steady_clock;

class RelayOnTheBroker : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    spdlog::set_level(spdlog::level::warn);
    prefix_ = testing::UniqueTopicName("it.relay");
    events_ = prefix_ + ".events";
    alerts_ = prefix_ + ".alerts";
    group_ = prefix_ + ".group";
    // Records over 2,000 bytes are refused by the topic, not by the client.
    ASSERT_OK(kafka::EnsureTopics(broker_, {{events_, 2, -1, {}}, {alerts_, 2, -1, {{"max.message.bytes", "2000"}}}}));
    path_ = std::filesystem::path(::testing::TempDir()) / prefix_;
    auto opened = projections::ProjectionStore::Open({.path = path_}, {ProjectionRunner::kFamily});
    ASSERT_OK(opened);
    store_ = std::move(*opened);
    family_ = store_->family(ProjectionRunner::kFamily);
  }
  void TearDown() override {
    for (auto& consumer : consumers_) rd_kafka_consumer_close(consumer.get());
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  // A member of the group, subscribed to the events topic, polled until it
  // holds partitions; `max_poll_ms`: how long it may go unpolled before
  // librdkafka takes it out of the group.
  rd_kafka_t* Member(int max_poll_ms = 300000) {
    kafka::KafkaSettings settings = broker_;
    settings.properties["group.id"] = group_;
    settings.properties["max.poll.interval.ms"] = std::to_string(max_poll_ms);
    settings.properties["session.timeout.ms"] = "6000";
    settings.properties["enable.auto.commit"] = "false";
    auto conf = kafka::BuildKafkaConf(settings, {});
    EXPECT_OK(conf);
    auto consumer = kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
    EXPECT_OK(consumer);
    rd_kafka_poll_set_consumer(consumer->get());
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, events_.c_str(), RD_KAFKA_PARTITION_UA);
    EXPECT_EQ(rd_kafka_subscribe(consumer->get(), topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    for (auto until = Clock::now() + std::chrono::seconds(30); Clock::now() < until;) {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer->get(), 100)) rd_kafka_message_destroy(m);
      rd_kafka_topic_partition_list_t* assigned = nullptr;
      rd_kafka_assignment(consumer->get(), &assigned);
      const int count = assigned->cnt;
      rd_kafka_topic_partition_list_destroy(assigned);
      if (count > 0) break;
    }
    consumers_.push_back(std::move(*consumer));
    return consumers_.back().get();
  }

  Result<std::unique_ptr<OutboxRelay>> Relay() {
    return OutboxRelay::Create({.kafka = broker_,
                                .source_topic = events_,
                                .transactional_id = prefix_ + ".relay",
                                .parked = &parked_,
                                .transactions = &committed_,
                                .aborted = &aborted_,
                                .linger = std::chrono::milliseconds(0)},
                               *store_, family_);
  }
  state::v1::OutboxEntry Entry(int64_t offset, size_t value_bytes = 0) {
    state::v1::OutboxEntry entry;
    entry.set_topic(alerts_);
    entry.set_key("c-1");  // one key: one target partition, one record batch
    entry.set_value(value_bytes > 0 ? std::string(value_bytes, 'v') : "alert " + std::to_string(offset));
    entry.set_timestamp_ms(1776765600000 + offset);
    entry.set_source_partition(0);
    entry.set_source_offset(offset);
    return entry;
  }
  void StageAndWrite(OutboxRelay& relay, std::vector<state::v1::OutboxEntry> entries) {
    rocksdb::WriteBatch batch;
    relay.Stage(std::move(entries), batch);
    ASSERT_OK(relay.StageSettled(batch));
    ASSERT_OK(store_->Write(batch));
  }
  // Origins on the alerts topic as a read_committed reader sees them.
  std::map<std::string, int> Origins() {
    std::map<std::string, int> seen;
    auto records = testing::ReadTopicToEnd(broker_, alerts_, std::chrono::seconds(10));
    EXPECT_OK(records);
    if (!records.ok()) return seen;
    for (const auto& record : *records) {
      for (const auto& header : record.headers) {
        if (header.name == kOriginHeader) ++seen[header.value];
      }
    }
    return seen;
  }
  std::string Origin(int64_t offset) { return events_ + "/0/" + std::to_string(offset); }
  int64_t Watermark() {
    auto committed = testing::CommittedOffsets(broker_, group_, events_);
    EXPECT_OK(committed);
    return committed.ok() ? (*committed)[0] : -2;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_, events_, alerts_, group_;
  std::filesystem::path path_;
  std::unique_ptr<projections::ProjectionStore> store_;
  rocksdb::ColumnFamilyHandle* family_ = nullptr;
  std::vector<kafka::KafkaHandle> consumers_;
  Counter parked_, committed_, aborted_;
};

TEST_F(RelayOnTheBroker, TheWatermarkReachesTheGroupWithTheRecords) {
  rd_kafka_t* member = Member();
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, {Entry(3), Entry(7)});
  // As the runner's loop does: flush until it went (the first flush may
  // find the transaction coordinator still loading, and wait for it).
  for (int i = 0; i < 100 && committed_.value() == 0; ++i) {
    ASSERT_OK((*relay)->Flush(member, {{0, 12}}, /*now=*/true));
    if (committed_.value() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto origins = Origins();
  EXPECT_EQ(origins, (std::map<std::string, int>{{Origin(3), 1}, {Origin(7), 1}}));
  EXPECT_EQ(Watermark(), 12) << "the group's offset is the relay's watermark";
  EXPECT_EQ(committed_.value(), 1u);
}

TEST_F(RelayOnTheBroker, ABatchTheTopicRefusesAbortsAndItsRecordsAreSentAgainAlone) {
  rd_kafka_t* member = Member();
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, {Entry(0), Entry(1, 5000), Entry(2)});
  ASSERT_OK((*relay)->Flush(member, {{0, 3}}));
  // As the runner's loop does: flush again until everything settled (an
  // abort can cost the transaction after it one more try).
  for (int i = 0; i < 5 && ((*relay)->pending() > 0 || (*relay)->watermark(0) < 3); ++i) {
    ASSERT_OK((*relay)->Flush(member, {{0, 3}}, /*now=*/true));
  }
  EXPECT_GE(aborted_.value(), 1u) << "the batch with the large record was refused as a whole";
  EXPECT_EQ(parked_.value(), 1u) << "refused alone too: parked";
  EXPECT_EQ(Origins(), (std::map<std::string, int>{{Origin(0), 1}, {Origin(2), 1}}))
      << "the small records once each: the aborted copies are never seen";
  EXPECT_EQ(Watermark(), 3) << committed_.value() << " committed, " << aborted_.value() << " aborted";
  EXPECT_EQ((*relay)->pending(), 0u);
}

TEST_F(RelayOnTheBroker, AnInstanceTheGroupMovedOnFromCommitsNothing) {
  // A member that stops polling (stalled, cut off) is taken out of the group
  // after max.poll.interval.ms and another takes its partitions; its relay
  // still holds entries and still believes it owns partition 0.
  rd_kafka_t* zombie = Member(/*max_poll_ms=*/6000);  // the least librdkafka takes (the session timeout)
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  ASSERT_OK((*relay)->Flush(zombie, {{0, 1}}, /*now=*/true));  // reads its watermark while still a member
  StageAndWrite(**relay, {Entry(5)});
  std::this_thread::sleep_for(std::chrono::seconds(7));
  Member();  // the group's new generation, without the zombie
  ASSERT_OK((*relay)->Flush(zombie, {{0, 6}}, /*now=*/true));
  EXPECT_GE(aborted_.value(), 1u);
  EXPECT_EQ((*relay)->pending(), 1u) << "its entry stays in the store, unsent";
  EXPECT_TRUE(Origins().empty()) << "a read_committed reader sees none of the zombie's records";
  EXPECT_EQ(Watermark(), 1) << "nor does the group take its watermark";
}

}  // namespace
}  // namespace rapport::consumers
