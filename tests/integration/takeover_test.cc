// Two runners in one consumer group against the real broker, each with a
// store of its own: the partitions a joining instance is given are counted
// and logged as built from the log's start; when it leaves, the partitions
// it had go back to the first instance, which takes them over from where its
// own state for them stands and catches up with what was published
// meanwhile. The first instance then holds exactly what a single instance
// folding the whole log holds, and the two instances together sent each
// alert and dead letter once: what the single instance sent.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "rapport/consumers/projection_runner.h"
#include "rapport/kafka/topics.h"
#include "rapport/projections/registry.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using consumers::ProjectionRunner;
using projections::ProjectionStore;
using Clock = std::chrono::steady_clock;

// A `rapport_...` figure as /metrics renders it; -1 when it is not there.
double Figure(Metrics& metrics, const std::string& series) {
  const std::string text = "\n" + metrics.Render();
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

class Takeover : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    spdlog::set_level(spdlog::level::warn);
    prefix_ = testing::UniqueTopicName("it.takeover");
    ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 4, -1, {}},
                                            {prefix_ + ".dlq", 1, -1, {}},
                                            {prefix_ + ".alerts", 2, -1, {}},
                                            {prefix_ + ".single.dlq", 1, -1, {}},
                                            {prefix_ + ".single.alerts", 2, -1, {}}}));
    config_ = testing::WriteTestConfig(broker_, prefix_,
                                       "[topics]\nevents = \"" + prefix_ + ".events\"\nevents_partitions = 4\n");
    projections::RegisterProjections(registry_);
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }
  void Simulate(const std::string& seed) {
    auto simulated = testing::RunRapport({"--config", config_, "simulate", "--customers", "300", "--days", "120",
                                          "--seed", seed, "--invalid-rate", "0.01", "--publish"});
    ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  }
  std::string Dir(const std::string& name) {
    std::string dir = ::testing::TempDir() + prefix_ + "." + name;
    dirs_.push_back(dir);
    return dir;
  }

  // A runner on its own thread, in group `group`, with a store at `dir`.
  struct Instance {
    Metrics metrics;
    std::unique_ptr<ProjectionStore> store;
    std::unique_ptr<ProjectionRunner> runner;
    std::atomic<bool> stop = false;
    Status result;
    std::atomic<bool> done = false;  // result is set
    std::thread thread;
    ~Instance() {  // a failed assertion must not leave the thread running
      stop = true;
      if (thread.joinable()) thread.join();
    }
  };
  // `sends_to`: the prefix of its dead-letter and alerts topics.
  std::unique_ptr<Instance> Start(const std::string& dir, const std::string& group, bool until_caught_up = false,
                                  std::string sends_to = "", std::string instance_id = "") {
    if (sends_to.empty()) sends_to = prefix_;
    auto instance = std::make_unique<Instance>();
    std::vector<std::string> families = {ProjectionRunner::kFamily};
    for (auto* projection : registry_.all()) families.push_back(projection->Family());
    auto store = ProjectionStore::Open({.path = dir}, families);
    EXPECT_OK(store);
    instance->store = std::move(*store);
    consumers::RunnerOptions options;
    options.kafka = broker_;
    options.group_id = group;
    options.instance_id = instance_id;
    options.topic = prefix_ + ".events";
    options.dead_letter_topic = sends_to + ".dlq";
    options.alerts_topic = sends_to + ".alerts";
    options.metrics = &instance->metrics;
    options.stop_when_caught_up = until_caught_up;
    auto runner = ProjectionRunner::Create(options, *instance->store, registry_.all());
    EXPECT_OK(runner);
    instance->runner = std::move(*runner);
    Instance* running = instance.get();
    instance->thread = std::thread([running] {
      running->result = running->runner->Run(running->stop);
      running->done = true;
    });
    return instance;
  }
  static void Stop(Instance& instance) {
    instance.stop = true;
    instance.thread.join();
    EXPECT_OK(instance.result);
  }
  // Waits (up to 60 s) until `done` holds.
  static bool WaitFor(const std::function<bool()>& done) {
    for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until;) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  }
  // How often each origin (events topic/partition/offset) arrived on `topic`,
  // as a read_committed reader sees it.
  std::map<std::string, int> Origins(const std::string& topic) {
    std::map<std::string, int> seen;
    auto records = testing::ReadTopicToEnd(broker_, topic, std::chrono::seconds(20));
    EXPECT_OK(records);
    if (!records.ok()) return seen;
    for (const auto& record : *records) {
      for (const auto& header : record.headers) {
        if (header.name == "rapport-origin") ++seen[header.value + " " + record.value.substr(0, 40)];
      }
    }
    return seen;
  }
  std::map<std::string, std::string> Digests(ProjectionStore& store) {
    std::map<std::string, std::string> digests;
    for (auto* projection : registry_.all()) {
      auto serving = store.ServingFamily(projection->Family());
      auto digest = store.Digest(serving ? serving->GetName() : projection->Family());
      EXPECT_OK(digest);
      digests[std::string(projection->Name())] = digest.ok() ? *digest : "";
    }
    return digests;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_, config_;
  projections::ProjectionRegistry registry_;
  std::vector<std::string> dirs_;
};

TEST_F(Takeover, APartitionThatMovesBackCatchesUpFromWhereItsStateStands) {
  Simulate("1");
  const std::string group = prefix_ + ".group";
  auto first = Start(Dir("first"), group);
  // Holding `partitions`, each caught up with the log's end as it was when
  // it was assigned.
  auto caught_up = [](Instance& instance, double partitions) {
    return Figure(instance.metrics, "rapport_partitions_assigned") == partitions &&
           Figure(instance.metrics, "rapport_partitions_catching_up") == 0;
  };
  ASSERT_TRUE(WaitFor([&] { return caught_up(*first, 4); })) << first->metrics.Render();
  EXPECT_EQ(Figure(first->metrics, "rapport_partition_assignments_total{state=\"none\"}"), 4);

  // A second instance joins: it is given some partitions, which its new
  // store builds from the log's start.
  auto second = Start(Dir("second"), group);
  ASSERT_TRUE(WaitFor([&] {
    const double moved = Figure(second->metrics, "rapport_partitions_assigned");
    return moved > 0 && caught_up(*second, moved) && Figure(first->metrics, "rapport_partitions_assigned") == 4 - moved;
  })) << second->metrics.Render();
  const double moved = Figure(second->metrics, "rapport_partitions_assigned");
  EXPECT_EQ(Figure(second->metrics, "rapport_partition_assignments_total{state=\"none\"}"), moved);

  // Events published while the second instance holds its partitions; then
  // it leaves, and the first instance takes them back from its stored
  // offsets and catches up with what it missed.
  Simulate("2");
  auto ends = testing::EndOffsets(broker_, prefix_ + ".events");
  ASSERT_OK(ends);
  ASSERT_TRUE(WaitFor([&] {  // every partition applied to its end by one instance or the other
    auto a = first->runner->progress().Snapshot(), b = second->runner->progress().Snapshot();
    for (const auto& [partition, end] : *ends) {
      if (std::max(a[partition].applied, b[partition].applied) < end) return false;
    }
    return true;
  }));
  Stop(*second);
  ASSERT_TRUE(WaitFor([&] {
    auto applied = first->runner->progress().Snapshot();
    for (const auto& [partition, end] : *ends) {
      if (applied[partition].applied < end) return false;
    }
    return caught_up(*first, 4);
  })) << first->metrics.Render();
  EXPECT_EQ(Figure(first->metrics, "rapport_partition_assignments_total{state=\"stored\"}"), moved)
      << "the partitions that came back were taken over from this store's state, not from scratch";
  EXPECT_EQ(Figure(first->metrics, "rapport_events_duplicate_total"), 0) << "no record read again";
  Stop(*first);

  // What a single instance folding the whole log holds.
  auto single = Start(Dir("single"), prefix_ + ".single", /*until_caught_up=*/true, prefix_ + ".single");
  single->thread.join();
  ASSERT_OK(single->result);
  EXPECT_EQ(Digests(*first->store), Digests(*single->store));

  // Whichever instance raised them, and though the second built its
  // partitions' history from the log's start and the first caught up on
  // what the second had sent: each alert and dead letter once.
  for (const std::string kind : {".alerts", ".dlq"}) {
    const auto sent = Origins(prefix_ + kind);
    const auto single_sent = Origins(prefix_ + ".single" + kind);
    EXPECT_FALSE(single_sent.empty()) << kind;
    EXPECT_EQ(sent, single_sent) << kind;
    for (const auto& [origin, count] : sent) EXPECT_EQ(count, 1) << kind << " " << origin;
  }
}

// Two processes given the same [run] instance_id fence each other in the
// group (librdkafka makes that fatal for the consumer fenced): each joins
// again with a new consumer, and after five fences in a minute the run stops
// and says why, instead of fencing forever.
TEST_F(Takeover, TwoInstancesWithOneInstanceIdStopWithWhy) {
  Simulate("3");
  const std::string group = prefix_ + ".group";
  auto first = Start(Dir("first"), group, false, "", "the-same-id");
  auto second = Start(Dir("second"), group, false, "", "the-same-id");
  auto stopped = [](Instance& instance) { return instance.done.load() && !instance.result.ok(); };
  ASSERT_TRUE(WaitFor([&] { return stopped(*first) || stopped(*second); })) << "neither run stopped within 60 s";
  Instance& loser = stopped(*first) ? *first : *second;
  EXPECT_EQ(loser.result.code(), absl::StatusCode::kFailedPrecondition) << loser.result;
  EXPECT_NE(std::string(loser.result.message()).find("the same [run] instance_id \"the-same-id\""), std::string::npos)
      << loser.result;
}

}  // namespace
}  // namespace rapport
