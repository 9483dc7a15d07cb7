// OutboxRelay against librdkafka's in-process mock cluster and a temporary
// store: staged entries leave after their write and are forgotten once
// delivered; a restart sends exactly what the target partitions lack (the
// resume arithmetic, which only this store's records count for); a record
// Kafka refuses for good is parked while the rest go on; a batch refused as
// too large is sent again one record at a time. The same relay under kill -9
// against the real broker is tests/fault/outbox_resume_test.cc.
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

constexpr char kAlerts[] = "cx.alerts";
constexpr int32_t kPartitions = 3;
constexpr int16_t kProduceApi = 0;

// A record read back from the target topic.
struct Received {
  int32_t partition;
  std::string key;
  std::string value;
  std::string store_id;  // from the rapport-outbox-seq header; empty without one
  uint64_t seq = 0;
};

class OutboxRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_.CreateTopic(kAlerts, kPartitions);
    path_ =
        std::filesystem::path(::testing::TempDir()) / ("outbox-relay-" + std::to_string(::getpid()) + "-" +
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    auto opened = projections::ProjectionStore::Open({.path = path_}, {ProjectionRunner::kFamily});
    ASSERT_OK(opened);
    store_ = std::move(*opened);
    family_ = store_->family(ProjectionRunner::kFamily);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  Result<std::unique_ptr<OutboxRelay>> Relay(kafka::KafkaSettings kafka) {
    return OutboxRelay::Create({.kafka = std::move(kafka), .store_id = kStoreId, .parked = &parked_}, *store_, family_);
  }
  Result<std::unique_ptr<OutboxRelay>> Relay() { return Relay(cluster_.settings()); }

  static state::v1::OutboxEntry Entry(int n, size_t value_bytes = 0) {
    state::v1::OutboxEntry entry;
    entry.set_topic(kAlerts);
    entry.set_key("c-" + std::to_string(n));
    entry.set_value(value_bytes > 0 ? std::string(value_bytes, 'v') : "alert " + std::to_string(n));
    entry.set_timestamp_ms(1776765600000 + n);
    auto* header = entry.add_headers();
    header->set_name("rapport-type");
    header->set_value("alert");
    return entry;
  }
  static std::vector<state::v1::OutboxEntry> Entries(int count) {
    std::vector<state::v1::OutboxEntry> entries;
    for (int n = 0; n < count; ++n) entries.push_back(Entry(n));
    return entries;
  }

  // Stages `entries` and writes them, as the runner does with a batch.
  void StageAndWrite(OutboxRelay& relay, std::vector<state::v1::OutboxEntry> entries) {
    rocksdb::WriteBatch batch;
    relay.Stage(std::move(entries), batch);
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

  // Produces a record to its key's partition as a relay would have, seq
  // header and all (`seq_header` empty: as a client with no header).
  void ProduceAsRelay(const state::v1::OutboxEntry& entry, const std::string& store_id, uint64_t seq) {
    ProduceRaw(entry, store_id + runner_keys::U64(seq));
  }
  void ProduceRaw(const state::v1::OutboxEntry& entry, const std::string& seq_header) {
    std::vector<events::Header> headers;
    if (!seq_header.empty()) headers.push_back({"rapport-outbox-seq", seq_header});
    ASSERT_OK(testing::ProduceRaw(cluster_.settings(), entry.topic(), entry.key(), entry.value(), headers,
                                  entry.timestamp_ms(), PartitionOf(entry.key())));
  }
  static int32_t PartitionOf(const std::string& key) { return kafka::PartitionForKey(key, kPartitions); }

  std::vector<Received> ReadAll() {
    std::vector<Received> received;
    auto records = testing::ReadTopicToEnd(cluster_.settings(), kAlerts, std::chrono::seconds(10));
    EXPECT_OK(records);
    if (!records.ok()) return received;
    for (const auto& record : *records) {
      Received& r = received.emplace_back();
      r.partition = record.partition;
      r.key = record.key;
      r.value = record.value;
      for (const auto& header : record.headers) {
        if (header.name == "rapport-outbox-seq" && header.value.size() == 24) {
          r.store_id = header.value.substr(0, 16);
          r.seq = projections::ReadU64(std::string_view(header.value).substr(16));
        }
      }
    }
    return received;
  }
  // How often each sequence number of this store arrived.
  std::map<uint64_t, int> OwnSeqs(const std::vector<Received>& received) {
    std::map<uint64_t, int> seen;
    for (const auto& r : received) {
      if (r.store_id == kStoreId) ++seen[r.seq];
    }
    return seen;
  }
  static std::map<uint64_t, int> EachOnce(uint64_t count) {
    std::map<uint64_t, int> once;
    for (uint64_t seq = 0; seq < count; ++seq) once[seq] = 1;
    return once;
  }

  const std::string kStoreId = std::string("store-id-0123456", 16);
  testing::MockCluster cluster_;
  std::filesystem::path path_;
  std::unique_ptr<projections::ProjectionStore> store_;
  rocksdb::ColumnFamilyHandle* family_ = nullptr;
  Counter parked_;
};

TEST_F(OutboxRelayTest, SendsStagedEntriesAfterTheirWriteAndForgetsThemOnceDelivered) {
  auto relay = Relay();
  ASSERT_OK(relay);
  StageAndWrite(**relay, Entries(10));
  EXPECT_EQ(Outbox().size(), 10u) << "staged entries are in the store before anything is sent";
  ASSERT_OK((*relay)->SendStaged());
  ASSERT_OK((*relay)->Drain());
  EXPECT_TRUE(Outbox().empty()) << "delivered entries are removed";
  EXPECT_EQ((*relay)->next_seq(), 10u);

  const auto received = ReadAll();
  EXPECT_EQ(OwnSeqs(received), EachOnce(10));
  for (const auto& r : received) {
    EXPECT_EQ(r.partition, kafka::PartitionForKey(r.key, kPartitions)) << r.key;
    EXPECT_EQ(r.value, Entry(static_cast<int>(r.seq)).value());
  }
  // A later relay of the same store numbers on from where this one stopped.
  relay->reset();
  auto next = Relay();
  ASSERT_OK(next);
  EXPECT_EQ((*next)->next_seq(), 10u);
}

TEST_F(OutboxRelayTest, ResumeSendsExactlyWhatTheTargetPartitionsLack) {
  // What a relay killed mid-send leaves: ten entries in the outbox, of which
  // the first six reached their partitions (each partition holds a prefix
  // of its entries) and were not yet forgotten.
  rocksdb::WriteBatch batch;
  for (int n = 0; n < 10; ++n) {
    ASSERT_TRUE(batch.Put(family_, runner_keys::OutboxKey(n), Entry(n).SerializeAsString()).ok());
  }
  ASSERT_TRUE(batch.Put(family_, runner_keys::kOutboxNextKey, runner_keys::U64(10)).ok());
  ASSERT_OK(store_->Write(batch));
  for (int n = 0; n < 6; ++n) ProduceAsRelay(Entry(n), kStoreId, n);
  // Other writers of the same topic after them: another store's relay (an
  // emptied data directory) with higher numbers, and a client with no header.
  for (int n = 0; n < 10; ++n) ProduceAsRelay(Entry(n), std::string("another-store-id", 16), 100 + n);
  ProduceRaw(Entry(7), "");

  auto relay = Relay();
  ASSERT_OK(relay);
  ASSERT_OK((*relay)->Resume());
  ASSERT_OK((*relay)->Drain());
  EXPECT_TRUE(Outbox().empty());
  EXPECT_EQ(OwnSeqs(ReadAll()), EachOnce(10)) << "each outbox entry on its topic exactly once";
  EXPECT_EQ((*relay)->next_seq(), 10u);
}

TEST_F(OutboxRelayTest, ResumeWithNothingSentSendsEverything) {
  {
    auto relay = Relay();
    ASSERT_OK(relay);
    StageAndWrite(**relay, Entries(5));  // written, then the process died before SendStaged
  }
  auto relay = Relay();
  ASSERT_OK(relay);
  ASSERT_OK((*relay)->Resume());
  ASSERT_OK((*relay)->Drain());
  EXPECT_TRUE(Outbox().empty());
  EXPECT_EQ(OwnSeqs(ReadAll()), EachOnce(5));
}

TEST_F(OutboxRelayTest, ARecordKafkaRefusesForGoodIsParkedAndTheRestGoOn) {
  kafka::KafkaSettings kafka = cluster_.settings();
  kafka.properties["message.max.bytes"] = "2000";
  auto relay = Relay(kafka);
  ASSERT_OK(relay);
  StageAndWrite(**relay, {Entry(0), Entry(1, 5000), Entry(2)});
  ASSERT_OK((*relay)->SendStaged());
  ASSERT_OK((*relay)->Drain());
  EXPECT_TRUE(Outbox().empty());
  EXPECT_EQ(Parked(), (std::set<uint64_t>{1}));
  EXPECT_EQ(parked_.value(), 1u);
  auto kept = store_->Get(family_, runner_keys::ParkedKey(1));
  ASSERT_OK(kept);
  state::v1::OutboxEntry entry;
  ASSERT_TRUE(entry.ParseFromString(*kept));
  EXPECT_EQ(entry.value().size(), 5000u) << "the parked entry is kept whole";
  EXPECT_EQ(OwnSeqs(ReadAll()), (std::map<uint64_t, int>{{0, 1}, {2, 1}}));
}

TEST_F(OutboxRelayTest, ABatchRefusedAsTooLargeIsSentAgainOneRecordAtATime) {
  auto relay = Relay();
  ASSERT_OK(relay);
  // The broker refuses the first produce request as a whole, as it does a
  // record batch over its limit that holds one record too large.
  cluster_.FailNextRequests(kProduceApi, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  StageAndWrite(**relay, Entries(4));
  ASSERT_OK((*relay)->SendStaged());
  ASSERT_OK((*relay)->Drain());
  EXPECT_TRUE(Outbox().empty());
  EXPECT_TRUE(Parked().empty()) << "records refused only for the company they had are not parked";
  EXPECT_EQ(OwnSeqs(ReadAll()), EachOnce(4));
}

TEST_F(OutboxRelayTest, AStoreIdOfTheWrongSizeIsRefused) {
  auto relay = OutboxRelay::Create({.kafka = cluster_.settings(), .store_id = "short"}, *store_, family_);
  EXPECT_EQ(relay.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(relay.status().message()).find("16 bytes"), std::string::npos) << relay.status();
}

TEST_F(OutboxRelayTest, ADamagedOutboxEntryStopsTheResumeWithAClearError) {
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(batch.Put(family_, runner_keys::OutboxKey(0), "\xff\xff not a protobuf").ok());
  ASSERT_OK(store_->Write(batch));
  auto relay = Relay();
  ASSERT_OK(relay);
  Status resumed = (*relay)->Resume();
  EXPECT_EQ(resumed.code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(resumed.message()).find("outbox entry does not parse"), std::string::npos) << resumed;
}

}  // namespace
}  // namespace rapport::consumers
