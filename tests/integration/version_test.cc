// Raising a projection's version against the real broker: the new version is
// built from the start of the log beside the live one, which keeps answering
// (and keeps being updated); the build resumes after a stop; going back to the
// old version mid-build loses nothing; once caught up the new version is
// swapped in, the old one dropped, and no alert or dead letter is sent twice.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "rapport/consumers/projection_runner.h"
#include "rapport/kafka/topics.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/registry.h"
#include "rapport/projections/reviews.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using consumers::ProjectionRunner;
using consumers::RunnerProgress;
using projections::ChurnProjection;
using projections::Projection;
using projections::ProjectionStore;

// The same fold under a raised version: what an engineer's change to a
// projection's code comes with.
class Raised : public Projection {
 public:
  explicit Raised(Projection& inner) : inner_(inner) {}
  std::string_view Name() const override { return inner_.Name(); }
  int Version() const override { return inner_.Version() + 1; }
  bool Reads(v1::Envelope::PayloadCase type) const override { return inner_.Reads(type); }

 protected:
  Status DoApply(const v1::Envelope& event, const projections::LogPosition& position, projections::StateBatch& state,
                 std::vector<projections::OutboxRecord>& outbox) override {
    return inner_.Apply(event, position, state, outbox);
  }

 private:
  Projection& inner_;
};

class Versions : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    spdlog::set_level(spdlog::level::warn);
    prefix_ = testing::UniqueTopicName("it.versions");
    ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 4, -1, {}},
                                            {prefix_ + ".dlq", 1, -1, {}},
                                            {prefix_ + ".alerts", 1, -1, {}},
                                            {prefix_ + ".reference.dlq", 1, -1, {}},
                                            {prefix_ + ".reference.alerts", 1, -1, {}}}));
    config_ = testing::WriteTestConfig(broker_, prefix_,
                                       "[topics]\nevents = \"" + prefix_ + ".events\"\nevents_partitions = 4\n");
    projections::RegisterProjections(registry_);
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }
  void Simulate(const std::string& customers, const std::string& seed) {
    auto simulated = testing::RunRapport({"--config", config_, "simulate", "--customers", customers, "--days", "120",
                                          "--seed", seed, "--invalid-rate", "0.02", "--publish"});
    ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  }
  std::string Dir(const std::string& name) {
    std::string dir = ::testing::TempDir() + prefix_ + "." + name;
    dirs_.push_back(dir);
    return dir;
  }
  Projection& Original(std::string_view name) {
    for (auto* projection : registry_.all()) {
      if (projection->Name() == name) return *projection;
    }
    throw std::logic_error("no such projection");
  }

  // Folds the log into the store at `dir` with `projections` until caught up,
  // or until `stop_now` (asked after every batch) says so.
  struct Fold {
    std::vector<Projection*> projections = {};
    std::string sends_to = "";  // topic infix for alerts and dead letters
    std::function<bool(ProjectionStore&, const RunnerProgress&)> stop_now = nullptr;
  };
  void Run(const std::string& dir, const Fold& fold) {
    std::vector<std::string> families = {ProjectionRunner::kFamily};
    for (auto* projection : fold.projections) families.push_back(projection->Family());
    auto store = ProjectionStore::Open({.path = dir}, families);
    ASSERT_OK(store);
    consumers::RunnerOptions options;
    options.kafka = broker_;
    options.group_id = prefix_ + "." + std::filesystem::path(dir).filename().string();
    options.topic = prefix_ + ".events";
    options.dead_letter_topic = prefix_ + fold.sends_to + ".dlq";
    options.alerts_topic = prefix_ + fold.sends_to + ".alerts";
    options.max_batch = 100;  // many batches, so that the build is seen in progress
    options.stop_when_caught_up = true;
    Metrics metrics;
    options.metrics = &metrics;
    metrics_ = &metrics;
    std::atomic<bool> stop = false;
    if (fold.stop_now) {
      options.on_batch = [&](const RunnerProgress& progress) {
        if (fold.stop_now(**store, progress)) stop = true;
      };
    }
    auto runner = ProjectionRunner::Create(options, **store, fold.projections);
    ASSERT_OK(runner);
    ASSERT_OK((*runner)->Run(stop));
    rebuild_lag_at_exit_ = RebuildLagMetric();
    metrics_ = nullptr;
  }
  // `rapport_rebuild_lag_records` as /metrics shows it now.
  double RebuildLagMetric() {
    const std::string text = metrics_->Render();
    const std::string name = "\nrapport_rebuild_lag_records ";
    auto at = text.find(name);
    EXPECT_NE(at, std::string::npos) << text;
    return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size()));
  }
  std::string Digest(const std::string& dir, const std::string& family) {
    auto store = ProjectionStore::Open({.path = dir, .read_only = true}, {});
    EXPECT_OK(store);
    if (!store.ok()) return "";
    auto digest = (*store)->Digest(family);
    EXPECT_OK(digest);
    return digest.ok() ? *digest : "";
  }
  std::set<std::string> FamiliesAt(const std::string& dir) {
    auto store = ProjectionStore::Open({.path = dir, .read_only = true}, {});
    EXPECT_OK(store);
    if (!store.ok()) return {};
    auto names = (*store)->family_names();
    return {names.begin(), names.end()};
  }
  // The ids of the alerts on `topic`, each as often as it was sent.
  std::multiset<std::string> AlertIds(const std::string& topic) {
    auto records = testing::ReadTopicToEnd(broker_, topic);
    EXPECT_OK(records);
    std::multiset<std::string> ids;
    if (!records.ok()) return ids;
    for (const auto& record : *records) {
      for (const auto& header : record.headers) {
        if (header.name == "ce_id") ids.insert(header.value);
      }
    }
    return ids;
  }
  int64_t Records(const std::string& topic) {
    auto records = testing::ReadTopicToEnd(broker_, topic);
    EXPECT_OK(records);
    return records.ok() ? static_cast<int64_t>(records->size()) : -1;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_, config_;
  Metrics* metrics_ = nullptr;  // the running fold's
  double rebuild_lag_at_exit_ = -1;
  std::vector<std::string> dirs_;
  projections::ProjectionRegistry registry_;
};

TEST_F(Versions, ARaisedVersionIsBuiltBesideTheLiveOneAndSwappedInWithoutSendingAnythingTwice) {
  Projection& profile = Original("customer_profile");
  Projection& reviews = Original("reviews");
  Projection& churn = Original("churn");
  Raised reviews_v2(reviews);
  const std::vector<Projection*> v1 = {&profile, &reviews, &churn};
  const std::vector<Projection*> v2 = {&profile, &reviews_v2, &churn};

  // Version 1 is live and has sent its alerts; then more events arrive.
  Simulate("2000", "11");
  const std::string live = Dir("live");
  Run(live, {.projections = v1});
  ASSERT_GT(Records(prefix_ + ".alerts"), 0);
  Simulate("1000", "12");

  // What folding the whole log with one version gives (its own topics).
  const std::string reference = Dir("reference");
  Run(reference, {.projections = v1, .sends_to = ".reference"});

  // Version 2 of reviews, stopped a few batches into its build. Meanwhile
  // queries read version 1, which the live lane keeps updating.
  int building = 0;
  std::string v1_digest_at_start;
  bool v1_moved = false;
  auto watch = [&](int stop_after) {
    return [&, stop_after](ProjectionStore& store, const RunnerProgress& progress) {
      if (progress.rebuild().families != "reviews@v2") return false;
      ++building;
      EXPECT_GT(progress.rebuild().behind, 0);
      EXPECT_GT(RebuildLagMetric(), 0);
      auto serving = store.ServingFamily(reviews_v2.Family());
      EXPECT_TRUE(serving != nullptr && serving->GetName() == "reviews@v1");
      if (!v1_moved) {
        std::string digest = store.Digest("reviews@v1").value();
        if (v1_digest_at_start.empty()) v1_digest_at_start = digest;
        v1_moved = digest != v1_digest_at_start;
        // Until the live lane has joined its group and applied something,
        // slow the build, or it reaches the live position first.
        if (!v1_moved) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return stop_after > 0 && building >= stop_after && v1_moved;
    };
  };
  Run(live, {.projections = v2, .stop_now = watch(6)});
  EXPECT_GE(building, 6);
  EXPECT_TRUE(v1_moved) << "the live version was not kept up to date during the build";
  EXPECT_TRUE(FamiliesAt(live).contains("reviews@v2"));

  // Going back to version 1 mid-build: the build is dropped, version 1 has
  // every event.
  Run(live, {.projections = v1});
  EXPECT_FALSE(FamiliesAt(live).contains("reviews@v2"));
  EXPECT_EQ(Digest(live, "reviews@v1"), Digest(reference, "reviews@v1"));

  // Version 2 again: interrupted, resumed, then swapped in.
  building = 0;
  v1_digest_at_start.clear();
  v1_moved = true;  // the live lane has nothing new now: stop by batches alone
  Run(live, {.projections = v2, .stop_now = watch(3)});
  EXPECT_GE(building, 3);
  building = 0;
  Run(live, {.projections = v2, .stop_now = watch(0)});
  EXPECT_GT(building, 0);
  EXPECT_EQ(rebuild_lag_at_exit_, 0);
  auto families = FamiliesAt(live);
  EXPECT_TRUE(families.contains("reviews@v2"));
  EXPECT_FALSE(families.contains("reviews@v1")) << "the replaced version was not dropped";
  {
    auto store = ProjectionStore::Open({.path = live, .read_only = true}, {});
    ASSERT_OK(store);
    EXPECT_TRUE((*store)->IsLive("reviews@v2"));
    EXPECT_EQ((*store)->ServingFamily("reviews@v1")->GetName(), "reviews@v2");
  }
  EXPECT_EQ(Digest(live, "reviews@v2"), Digest(reference, "reviews@v1"));
  EXPECT_EQ(Digest(live, "customer_profile@v1"), Digest(reference, "customer_profile@v1"));
  EXPECT_EQ(Digest(live, ChurnProjection().Family()), Digest(reference, ChurnProjection().Family()));

  // Every alert and dead letter exactly once, as a single fold sends them.
  auto alerts = AlertIds(prefix_ + ".alerts");
  auto expected = AlertIds(prefix_ + ".reference.alerts");
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(alerts, expected);
  EXPECT_EQ(std::set<std::string>(alerts.begin(), alerts.end()).size(), alerts.size()) << "an alert was sent twice";
  EXPECT_EQ(Records(prefix_ + ".dlq"), Records(prefix_ + ".reference.dlq"));

  // Later events go into the new version, and it sends their alerts.
  Simulate("100", "13");
  Run(live, {.projections = v2});
  Run(reference, {.projections = v1, .sends_to = ".reference"});
  EXPECT_EQ(Digest(live, "reviews@v2"), Digest(reference, "reviews@v1"));
  EXPECT_EQ(AlertIds(prefix_ + ".alerts"), AlertIds(prefix_ + ".reference.alerts"));
}

TEST_F(Versions, AProjectionNewToTheStoreIsBuiltFromHistoryOnceAndServedOnlyWhenComplete) {
  Projection& profile = Original("customer_profile");
  Projection& reviews = Original("reviews");
  Projection& churn = Original("churn");
  Simulate("1500", "21");
  const std::string live = Dir("live");
  Run(live, {.projections = {&profile, &churn}});  // a deployment before reviews existed
  const std::string reference = Dir("reference");
  Run(reference, {.projections = {&profile, &reviews, &churn}, .sends_to = ".reference"});

  // Reviews arrives: built from the start, applied by the build alone (not
  // also by the live lane), and not served before it is complete.
  int building = 0;
  Run(live, {.projections = {&profile, &reviews, &churn},
             .stop_now = [&](ProjectionStore& store, const RunnerProgress& progress) {
               if (progress.rebuild().families != "reviews@v1") return false;
               ++building;
               EXPECT_EQ(store.ServingFamily("reviews@v1"), nullptr);
               auto view = projections::ReviewsView(store, 4).ByCustomer("c-0000001");
               EXPECT_EQ(view.status().code(), absl::StatusCode::kUnavailable) << view.status();
               return false;
             }});
  EXPECT_GT(building, 0);
  {
    auto store = ProjectionStore::Open({.path = live, .read_only = true}, {});
    ASSERT_OK(store);
    EXPECT_TRUE((*store)->IsLive("reviews@v1"));
  }
  EXPECT_EQ(Digest(live, "reviews@v1"), Digest(reference, "reviews@v1"));
  EXPECT_EQ(Digest(live, ChurnProjection().Family()), Digest(reference, ChurnProjection().Family()));
  // History raises no alerts from a new projection: those events were
  // answered (or not) long ago.
  EXPECT_EQ(Records(prefix_ + ".alerts"), 0);
  EXPECT_GT(Records(prefix_ + ".reference.alerts"), 0);
}

}  // namespace
}  // namespace rapport
