// ProjectionRunner, the loop that drives the runner's parts, against
// librdkafka's in-process mock cluster and temporary stores: a simulated
// stream with poison records folds each event once, sends each dead letter
// once (a second run over the same log sends nothing again), and a run
// stopped part-way and resumed, or a replay, ends in the same state. The same
// against the real broker, with kill -9, is in tests/integration and
// tests/fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "rapport/consumers/projection_runner.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/client.h"
#include "rapport/projections/registry.h"
#include "rapport/simulator/simulator.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"

namespace rapport::consumers {
namespace {

constexpr char kEvents[] = "cx.events";
constexpr char kDeadLetters[] = "cx.events.dlq";
constexpr char kAlerts[] = "cx.alerts";

class ProjectionRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_.CreateTopic(kEvents, 4);
    cluster_.CreateTopic(kDeadLetters, 1);
    cluster_.CreateTopic(kAlerts, 2);
    projections::RegisterProjections(registry_);
    PublishSimulatedStream();
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }

  // A seeded stream of 150 customers over 200 days with 3% poison records,
  // produced as any client would: keyed by customer id, murmur2 partitioning.
  void PublishSimulatedStream() {
    auto conf = kafka::BuildKafkaConf(cluster_.settings(), {{"partitioner", "murmur2_random", "as Java's"}});
    ASSERT_OK(conf);
    auto producer = kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(*conf));
    ASSERT_OK(producer);
    simulator::SimulationOptions simulation;
    simulation.customers = 150;
    simulation.days = 200;
    simulation.seed = 11;
    simulation.invalid_rate = 0.03;
    simulator::Simulator simulator(simulation);
    simulator::SimulatedRecord record;
    while (simulator.Next(record)) {
      const std::string key = record.valid ? record.event.customer_id() : record.invalid_key;
      const std::string value = record.valid ? events::EncodeEvent(record.event) : record.invalid_value;
      ASSERT_EQ(kafka::ProduceWaitingForRoom(producer->get(), {.topic = kEvents,
                                                               .partition = RD_KAFKA_PARTITION_UA,
                                                               .key = key,
                                                               .value = value,
                                                               .timestamp_ms = absl::ToUnixMillis(record.time)}),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      (record.valid ? valid_ : invalid_)++;
    }
    ASSERT_EQ(rd_kafka_flush(producer->get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_GT(invalid_, 0u);
  }

  std::string Dir(const std::string& name) {
    const std::string dir = ::testing::TempDir() + "runner-test-" + std::to_string(::getpid()) + "-" +
                            ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" + name;
    std::filesystem::remove_all(dir);
    dirs_.push_back(dir);
    return dir;
  }

  RunnerOptions Options(const std::string& group) {
    RunnerOptions options;
    options.kafka = cluster_.settings();
    options.group_id = group;
    options.topic = kEvents;
    options.dead_letter_topic = kDeadLetters;
    options.alerts_topic = kAlerts;
    options.max_batch = 200;  // many batches
    options.stop_when_caught_up = true;
    return options;
  }

  // Folds the log into the store at `dir` until caught up, or until
  // `stop_after_records` more records (events and poison alike) are applied.
  RunnerStats Run(const std::string& dir, RunnerOptions options, int64_t stop_after_records = 0) {
    std::vector<std::string> families = {ProjectionRunner::kFamily};
    for (auto* projection : registry_.all()) families.push_back(projection->Family());
    auto store = projections::ProjectionStore::Open({.path = dir}, families);
    EXPECT_OK(store);
    if (!store.ok()) return {};
    std::atomic<bool> stop = false;
    int64_t started_at = 0;  // the offsets stored before this run, summed
    if (auto stored = StoredOffsets(**store, kEvents); stored.ok()) {
      for (const auto& [partition, offset] : *stored) started_at += offset;
    }
    if (stop_after_records > 0) {
      options.on_batch = [&](const RunnerProgress& progress) {
        int64_t applied = 0;
        for (const auto& [partition, p] : progress.Snapshot()) applied += p.applied;
        if (applied - started_at >= stop_after_records) stop = true;
      };
    }
    auto runner = ProjectionRunner::Create(options, **store, registry_.all());
    EXPECT_OK(runner);
    if (!runner.ok()) return {};
    EXPECT_OK((*runner)->Run(stop));
    return (*runner)->stats();
  }

  // Each projection's digest (of the version queries read).
  std::map<std::string, std::string> Digests(const std::string& dir) {
    std::map<std::string, std::string> digests;
    auto store = projections::ProjectionStore::Open({.path = dir, .read_only = true}, {});
    EXPECT_OK(store);
    if (!store.ok()) return digests;
    for (auto* projection : registry_.all()) {
      auto serving = (*store)->ServingFamily(projection->Family());
      auto digest = (*store)->Digest(serving ? serving->GetName() : projection->Family());
      EXPECT_OK(digest);
      digests[std::string(projection->Name())] = digest.ok() ? *digest : "";
    }
    return digests;
  }

  size_t RecordsIn(const std::string& topic) {
    auto records = testing::ReadTopicToEnd(cluster_.settings(), topic, std::chrono::seconds(30));
    EXPECT_OK(records);
    return records.ok() ? records->size() : 0;
  }

  testing::MockCluster cluster_;
  projections::ProjectionRegistry registry_;
  std::vector<std::string> dirs_;
  uint64_t valid_ = 0, invalid_ = 0;
};

TEST_F(ProjectionRunnerTest, FoldsEachEventOnceAndSendsEachDeadLetterOnce) {
  const std::string live = Dir("live");
  const RunnerStats first = Run(live, Options("live"));
  EXPECT_EQ(first.applied + first.duplicates, valid_);
  EXPECT_EQ(first.dead_lettered, invalid_);
  EXPECT_EQ(RecordsIn(kDeadLetters), invalid_);
  const size_t alerts = RecordsIn(kAlerts);
  EXPECT_GT(alerts, 0u) << "the simulated stream holds complaints and low ratings";

  // The same log again: everything is behind the stored offsets.
  const RunnerStats again = Run(live, Options("live"));
  EXPECT_EQ(again.applied, 0u);
  EXPECT_EQ(again.dead_lettered, 0u);
  EXPECT_EQ(RecordsIn(kDeadLetters), invalid_) << "no dead letter sent twice";
  EXPECT_EQ(RecordsIn(kAlerts), alerts) << "no alert sent twice";

  // A replay into a new store folds the same state and sends nothing.
  const std::string replayed = Dir("replay");
  RunnerOptions replay = Options("replay");
  replay.replay = RunnerOptions::Replay{};
  const RunnerStats from_replay = Run(replayed, replay);
  EXPECT_EQ(from_replay.applied, first.applied);
  EXPECT_EQ(Digests(replayed), Digests(live));
  EXPECT_EQ(RecordsIn(kDeadLetters), invalid_);
  EXPECT_EQ(RecordsIn(kAlerts), alerts);
}

// By replay, which assigns partitions itself: each group member leaving and
// a new one joining would cost a rebalance per part.
TEST_F(ProjectionRunnerTest, ARunStoppedPartWayResumesToTheSameState) {
  RunnerOptions replay = Options("replay");
  replay.replay = RunnerOptions::Replay{};
  const std::string whole = Dir("whole");
  const uint64_t applied_whole = Run(whole, replay).applied;

  const std::string stopped = Dir("stopped");
  RunnerOptions options = replay;
  // Batches large enough to be written per shard (at least 256 records per
  // apply thread), and stopped after a few.
  options.apply_threads = 2;
  options.max_batch = 600;
  uint64_t applied = 0, duplicates = 0;
  int parts = 0;
  for (; parts < 40; ++parts) {
    const RunnerStats stats = Run(stopped, options, /*stop_after_records=*/200);
    applied += stats.applied;
    duplicates += stats.duplicates;  // a record read again after a resume, if offsets lagged the state
    if (stats.applied == 0 && stats.dead_lettered == 0) break;
  }
  EXPECT_GT(parts, 2) << "the run was stopped part-way several times";
  EXPECT_EQ(Digests(stopped), Digests(whole));
  EXPECT_EQ(applied, applied_whole) << "no event applied twice or lost";
  EXPECT_EQ(duplicates, 0u);
}

}  // namespace
}  // namespace rapport::consumers
