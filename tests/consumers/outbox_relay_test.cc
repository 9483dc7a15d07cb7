// OutboxRelay against librdkafka's in-process mock cluster and a temporary
// store: entries of owned partitions leave in a transaction with their
// partitions' watermarks; entries below the group's watermark were sent by
// an earlier owner and are forgotten unsent (the takeover arithmetic: what
// makes alerts once across instances); a partition not owned sends nothing;
// a record the client refuses for good is parked while the rest go on. The
// mock cluster neither keeps transactional offsets nor hides aborted
// records, so what needs them (the watermark reaching the group, aborts, a
// zombie instance) is tested against the real broker in
// tests/integration/outbox_relay_broker_test.cc; across processes and kill -9
// in tests/fault/outbox_resume_test.cc and tests/integration/takeover_test.cc.
#include "outbox_relay.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "rapport/consumers/projection_runner.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"
#include "runner_keys.h"

namespace rapport::consumers {
namespace {

constexpr char kEvents[] = "cx.events";
constexpr char kAlerts[] = "cx.alerts";
constexpr char kGroup[] = "rapport-test";
constexpr int32_t kPartitions = 3;

class OutboxRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_.CreateTopic(kEvents, 2);
    cluster_.CreateTopic(kAlerts, kPartitions);
    path_ =
        std::filesystem::path(::testing::TempDir()) / ("outbox-relay-" + std::to_string(::getpid()) + "-" +
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    OpenStore();
    kafka::KafkaSettings settings = cluster_.settings();
    settings.properties["group.id"] = kGroup;  // assigns itself; its group metadata carries the watermarks
    auto conf = kafka::BuildKafkaConf(settings, {});
    ASSERT_OK(conf);
    auto consumer = kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
    ASSERT_OK(consumer);
    consumer_ = std::move(*consumer);
  }
  void TearDown() override {
    rd_kafka_consumer_close(consumer_.get());
    store_.reset();
    std::filesystem::remove_all(path_);
  }
  void OpenStore() {
    store_.reset();
    auto opened = projections::ProjectionStore::Open({.path = path_}, {ProjectionRunner::kFamily});
    ASSERT_OK(opened);
    store_ = std::move(*opened);
    family_ = store_->family(ProjectionRunner::kFamily);
  }

  Result<std::unique_ptr<OutboxRelay>> Relay(kafka::KafkaSettings kafka, std::string transactional_id = "relay-a") {
    return OutboxRelay::Create({.kafka = std::move(kafka),
                                .source_topic = kEvents,
                                .transactional_id = std::move(transactional_id),
                                .parked = &parked_,
                                .transactions = &committed_,
                                .aborted = &aborted_,
                                .linger = std::chrono::milliseconds(0)},
                               *store_, family_);
  }
  Result<std::unique_ptr<OutboxRelay>> Relay() { return Relay(cluster_.settings()); }

  // The entry the record at `partition`/`offset` of the events topic caused.
  static state::v1::OutboxEntry Entry(int32_t partition, int64_t offset, size_t value_bytes = 0) {
    state::v1::OutboxEntry entry;
    entry.set_topic(kAlerts);
    entry.set_key("c-" + std::to_string(offset));
    entry.set_value(value_bytes > 0 ? std::string(value_bytes, 'v') : "alert " + std::to_string(offset));
    entry.set_timestamp_ms(1776765600000 + offset);
    entry.set_source_partition(partition);
    entry.set_source_offset(offset);
    auto* header = entry.add_headers();
    header->set_name("rapport-type");
    header->set_value("alert");
    return entry;
  }
  static std::vector<state::v1::OutboxEntry> Entries(int32_t partition, int64_t from, int64_t to) {
    std::vector<state::v1::OutboxEntry> entries;
    for (int64_t offset = from; offset < to; ++offset) entries.push_back(Entry(partition, offset));
    return entries;
  }

  // Stages `entries` and writes them, as the runner does with a batch.
  void StageAndWrite(OutboxRelay& relay, std::vector<state::v1::OutboxEntry> entries) {
    rocksdb::WriteBatch batch;
    relay.Stage(std::move(entries), batch);
    ASSERT_OK(relay.StageSettled(batch));
    ASSERT_OK(store_->Write(batch));
  }
  // The runner's next write: removes what was delivered.
  void WriteSettled(OutboxRelay& relay) {
    rocksdb::WriteBatch batch;
    ASSERT_OK(relay.StageSettled(batch));
    ASSERT_OK(store_->Write(batch));
  }

  std::set<uint64_t> Keys(const std::string& prefix) {
    std::set<uint64_t> seqs;
    EXPECT_OK(store_->Scan(family_, prefix, [&](std::string_view key, std::string_view) -> Result<bool> {
      seqs.insert(projections::ReadU64(key.substr(1)));
      return true;
    }));
    return seqs;
  }
  std::set<uint64_t> Outbox() { return Keys("x"); }
  std::set<uint64_t> Parked() { return Keys("p"); }

  // How often each origin arrived on the alerts topic (what a reader with
  // isolation.level=read_committed sees), "" for records with none.
  std::map<std::string, int> Origins() {
    std::map<std::string, int> seen;
    auto records = testing::ReadTopic(cluster_.settings(), kAlerts, 10000, std::chrono::milliseconds(1500));
    EXPECT_OK(records);
    if (!records.ok()) return seen;
    for (const auto& record : *records) {
      std::string origin;
      for (const auto& header : record.headers) {
        if (header.name == kOriginHeader) origin = header.value;
      }
      EXPECT_EQ(record.partition, kafka::PartitionForKey(record.key, kPartitions)) << record.key;
      ++seen[origin];
    }
    return seen;
  }
  static std::map<std::string, int> Once(int32_t partition, int64_t from, int64_t to) {
    std::map<std::string, int> once;
    for (int64_t offset = from; offset < to; ++offset) {
      once[std::string(kEvents) + "/" + std::to_string(partition) + "/" + std::to_string(offset)] = 1;
    }
    return once;
  }
  // What an earlier owner's transaction leaves: the group's watermark for
  // `partition` (committed plainly: the mock cluster keeps only those).
  void CommitWatermark(int32_t partition, int64_t offset) {
    rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offsets, kEvents, partition)->offset = offset;
    ASSERT_EQ(rd_kafka_commit(consumer_.get(), offsets, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(offsets);
  }

  testing::MockCluster cluster_;
  std::filesystem::path path_;
  std::unique_ptr<projections::ProjectionStore> store_;
  rocksdb::ColumnFamilyHandle* family_ = nullptr;
  kafka::KafkaHandle consumer_;
  Counter parked_, committed_, aborted_;
};

TEST_F(OutboxRelayTest, SendsAnOwnedPartitionsEntriesWithItsWatermarkInOneTransaction) {
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, Entries(0, 0, 10));
  EXPECT_EQ(Outbox().size(), 10u) << "staged entries are in the store before anything is sent";
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 25}}));
  WriteSettled(**relay);
  EXPECT_TRUE(Outbox().empty()) << "delivered entries are removed";
  EXPECT_EQ(Origins(), Once(0, 0, 10));
  EXPECT_EQ((*relay)->watermark(0), 25) << "every record of partition 0 below 25 has its entries on their topics";
  EXPECT_EQ(committed_.value(), 1u);

  // A later relay of the same store numbers on from where this one stopped.
  relay->reset();
  auto next = Relay();
  ASSERT_OK(next);
  EXPECT_EQ((*next)->next_seq(), 10u);
  EXPECT_EQ((*next)->pending(), 0u);
}

TEST_F(OutboxRelayTest, APartitionNotOwnedSendsNothingUntilItIs) {
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, Entries(1, 0, 4));  // partition 1: another instance's, or a standby's
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 3}, {1, 4}}, /*now=*/true));
  EXPECT_TRUE(Origins().empty());
  EXPECT_EQ((*relay)->watermark(1), -1) << "no watermark for a partition not owned";
  EXPECT_EQ((*relay)->pending(), 4u);

  (*relay)->Own(1);
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 3}, {1, 4}}, /*now=*/true));
  EXPECT_EQ(Origins(), Once(1, 0, 4));
  EXPECT_EQ((*relay)->watermark(1), 4);
}

TEST_F(OutboxRelayTest, ATakeoverSendsOnlyWhatNoEarlierOwnerSent) {
  // The first owner of partition 0 sent the entries of records 0..5 with
  // its watermark (6), applied records 6..9 too and died before it sent
  // theirs.
  {
    auto first = Relay(cluster_.settings(), "relay-first");
    ASSERT_OK(first);
    (*first)->Own(0);
    StageAndWrite(**first, Entries(0, 0, 6));
    ASSERT_OK((*first)->Flush(consumer_.get(), {{0, 6}}));
    StageAndWrite(**first, Entries(0, 6, 10));
  }
  CommitWatermark(0, 6);
  // Another store takes the partition over and builds it from the log's
  // start: it stages the entries of every record again.
  std::filesystem::remove_all(path_);
  OpenStore();
  auto next = Relay(cluster_.settings(), "relay-next");
  ASSERT_OK(next);
  (*next)->Own(0);
  StageAndWrite(**next, Entries(0, 0, 10));
  ASSERT_OK((*next)->Flush(consumer_.get(), {{0, 10}}));
  WriteSettled(**next);
  EXPECT_EQ(Origins(), Once(0, 0, 10)) << "each entry on its topic exactly once";
  EXPECT_TRUE(Outbox().empty()) << "the entries below the watermark are forgotten unsent";
  EXPECT_EQ((*next)->watermark(0), 10);
}

TEST_F(OutboxRelayTest, APartitionOwnedAgainReadsItsWatermarkAgain) {
  auto relay = Relay();
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, Entries(0, 0, 2));
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 2}}));
  (*relay)->Disown(0);
  // Meanwhile another instance owned it and sent up to record 8; this store
  // catches up from record 2 and stages what records 2..9 caused.
  CommitWatermark(0, 8);
  StageAndWrite(**relay, Entries(0, 2, 10));
  (*relay)->Own(0);
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 10}}));
  WriteSettled(**relay);
  auto sent_here = Once(0, 0, 2);
  sent_here.merge(Once(0, 8, 10));
  EXPECT_EQ(Origins(), sent_here) << "2..7 are the other instance's to have sent";
  EXPECT_EQ((*relay)->pending(), 0u);
  EXPECT_TRUE(Outbox().empty());
}

TEST_F(OutboxRelayTest, AStandbyForgetsTheEntriesItsOwnerSentAndKeepsTheRestForAPromotion) {
  auto relay = Relay();
  ASSERT_OK(relay);
  // A standby of partition 1 applied records 0..9 as its owner did; the
  // owner has sent what records 0..5 caused (its watermark: 6).
  StageAndWrite(**relay, Entries(1, 0, 10));
  StageAndWrite(**relay, Entries(0, 0, 3));  // partition 0: not a standby here, left alone
  CommitWatermark(1, 6);
  (*relay)->ForgetSentByOwners(consumer_.get(), {1});
  WriteSettled(**relay);
  EXPECT_EQ((*relay)->pending(), 4u + 3u) << "records 6..9 of partition 1 wait, and partition 0's entries";
  EXPECT_EQ(Outbox().size(), 7u) << "what the owner sent is removed from the store";
  EXPECT_TRUE(Origins().empty()) << "a standby sends nothing";

  (*relay)->Own(0);  // (an owned partition is never pruned by it, whatever its watermark)
  CommitWatermark(0, 3);
  (*relay)->ForgetSentByOwners(consumer_.get(), {0, 1});
  EXPECT_EQ((*relay)->pending(), 7u);
  (*relay)->Disown(0);

  // Promoted: the group gives partition 1 here; only what the owner had
  // not sent goes out.
  (*relay)->Own(1);
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{1, 10}}, /*now=*/true));
  WriteSettled(**relay);
  EXPECT_EQ(Origins(), Once(1, 6, 10));
}

TEST_F(OutboxRelayTest, EntriesWithNoOriginAreSentAsTheyAre) {
  rocksdb::WriteBatch batch;  // an outbox written before entries had origins
  for (int n = 0; n < 3; ++n) {
    state::v1::OutboxEntry entry = Entry(0, n);
    entry.clear_source_partition();
    entry.clear_source_offset();
    ASSERT_TRUE(batch.Put(family_, runner_keys::OutboxKey(n), entry.SerializeAsString()).ok());
  }
  ASSERT_TRUE(batch.Put(family_, runner_keys::kOutboxNextKey, runner_keys::U64(3)).ok());
  ASSERT_OK(store_->Write(batch));
  auto relay = Relay();
  ASSERT_OK(relay);
  EXPECT_EQ((*relay)->pending(), 3u);
  EXPECT_EQ((*relay)->next_seq(), 3u);
  ASSERT_OK((*relay)->Flush(consumer_.get(), {}, /*now=*/true));
  WriteSettled(**relay);
  EXPECT_EQ(Origins(), (std::map<std::string, int>{{"", 3}}));
  EXPECT_TRUE(Outbox().empty());
}

TEST_F(OutboxRelayTest, ARecordKafkaRefusesForGoodIsParkedAndTheRestGoOn) {
  kafka::KafkaSettings kafka = cluster_.settings();
  kafka.properties["message.max.bytes"] = "2000";
  auto relay = Relay(kafka);
  ASSERT_OK(relay);
  (*relay)->Own(0);
  StageAndWrite(**relay, {Entry(0, 0), Entry(0, 1, 5000), Entry(0, 2)});
  ASSERT_OK((*relay)->Flush(consumer_.get(), {{0, 3}}));
  WriteSettled(**relay);
  EXPECT_TRUE(Outbox().empty());
  EXPECT_EQ(Parked(), (std::set<uint64_t>{1}));
  EXPECT_EQ(parked_.value(), 1u);
  auto kept = store_->Get(family_, runner_keys::ParkedKey(1));
  ASSERT_OK(kept);
  state::v1::OutboxEntry entry;
  ASSERT_TRUE(entry.ParseFromString(*kept));
  EXPECT_EQ(entry.value().size(), 5000u) << "the parked entry is kept whole";
  auto origins = Origins();
  EXPECT_EQ(origins, (std::map<std::string, int>{{"cx.events/0/0", 1}, {"cx.events/0/2", 1}}));
}

TEST_F(OutboxRelayTest, ADamagedOutboxEntryStopsTheStartWithAClearError) {
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(batch.Put(family_, runner_keys::OutboxKey(0), "\xff\xff not a protobuf").ok());
  ASSERT_OK(store_->Write(batch));
  auto relay = Relay();
  EXPECT_EQ(relay.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(relay.status().message()).find("outbox entry does not parse"), std::string::npos)
      << relay.status();
}

TEST(OutboxTransactionalId, IsTheGroupAndTheStoreIdInHex) {
  EXPECT_EQ(OutboxTransactionalId("rapport", std::string("\x01\xab", 2)), "rapport.relay.01ab");
}

}  // namespace
}  // namespace rapport::consumers
