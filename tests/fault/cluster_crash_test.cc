// Crash safety across instances: three `rapport run` processes in one group,
// a random one killed with SIGKILL ten times while events are published
// (restarted at once, or only after the others have run on without it), lose
// and double nothing: every alert and dead letter is on its topic once, the
// same as an uninterrupted single instance sent, and the instance left
// running at the end, once it has taken every partition over, holds exactly
// the single instance's state (with standbys of every partition). The same
// checks, without standbys, after scaling from one
// instance to three and back to one, with a rolling restart in between.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using Clock = std::chrono::steady_clock;

class ClusterCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("fault.cluster");
    ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 6, -1, {}},
                                            {prefix_ + ".single.dlq", 1, -1, {}},
                                            {prefix_ + ".cluster.dlq", 1, -1, {}},
                                            {prefix_ + ".single.alerts", 3, -1, {}},
                                            {prefix_ + ".cluster.alerts", 3, -1, {}},
                                            {prefix_ + ".members", 1, -1, {{"cleanup.policy", "compact"}}}}));
  }
  void TearDown() override {
    for (auto& instance : instances_) {
      if (instance.pid > 0) testing::KillAndWait(instance.pid, SIGKILL);
    }
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }

  // `sends_to`: which alerts and dead-letter topics ("single" or "cluster").
  std::string Config(const std::string& name, const std::string& sends_to, int port) {
    const std::string dir = ::testing::TempDir() + prefix_ + "." + name;
    std::filesystem::remove_all(dir);
    dirs_.push_back(dir);
    return testing::WriteTestConfig(
        broker_, prefix_ + "." + name,
        "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" + prefix_ + "." + sends_to +
            ".dlq\"\nalerts = \"" + prefix_ + "." + sends_to + ".alerts\"\nmembers = \"" + prefix_ +
            ".members\"\nevents_partitions = 6\n[run]\ngroup_id = \"" + prefix_ + "." + sends_to +
            "\"\nmax_batch = 2000\n" +
            (sends_to == "cluster" ? fmt::format("standby_replicas = {}\n", standby_replicas_) : "") +
            "[store]\ndata_dir = \"" + dir + "\"\n[churn]\nrefit_interval_s = 0\n" +
            (port > 0 ? "[api]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\nopen_reads_on_loopback = true\n"
                      : ""));
  }
  struct Instance {
    std::string config;
    int port = 0;
    int pid = -1;
  };
  void Launch(Instance& instance) { instance.pid = testing::StartRapport({"--config", instance.config, "run"}, log_); }
  // The cluster as `instance` hears it: every partition applied to its end
  // by one of `live` live instances.
  bool Settled(const Instance& instance, size_t live) {
    httplib::Client client("127.0.0.1", instance.port);
    auto result = client.Get("/v1/cluster");
    if (!result || result->status != 200) return false;
    auto data = nlohmann::json::parse(result->body)["data"];
    size_t heard = 0;
    for (const auto& member : data["instances"]) heard += member["live"].get<bool>() ? 1 : 0;
    if (heard != live || data["partitions"].size() != 6) return false;
    for (const auto& p : data["partitions"]) {
      if (p["owner"].is_null() || p.value("by_standby", false) || p["lag_records"] != 0) return false;
    }
    return true;
  }
  // Each origin on `topic` (a header's value), with how often it arrived.
  std::map<std::string, int> Seen(const std::string& topic, const std::string& header) {
    std::map<std::string, int> seen;
    auto records = testing::ReadTopicToEnd(broker_, topic, std::chrono::seconds(60));
    EXPECT_OK(records);
    if (!records.ok()) return seen;
    for (const auto& r : *records) {
      for (const auto& h : r.headers) {
        if (h.name == header) ++seen[h.value];
      }
    }
    return seen;
  }
  // Waits (up to 3 minutes) until `asked` says every partition is applied
  // to its end by one of `live` live instances.
  bool Settle(const Instance& asked, size_t live) {
    for (auto until = Clock::now() + std::chrono::minutes(3); Clock::now() < until;) {
      if (Settled(asked, live)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return false;
  }
  // Once every instance has stopped: the first one holds what an
  // uninterrupted single instance over the same log holds, and the
  // instances together sent each of its dead letters (`invalid`) and alerts
  // once.
  void ExpectWhatASingleInstanceDoes(int64_t invalid) {
    BuildSingle();
    const std::string& single = single_config_;
    auto expected_digest = testing::RunRapport({"--config", single, "digest"});
    auto survivor_digest = testing::RunRapport({"--config", instances_[0].config, "digest"});
    ASSERT_EQ(expected_digest.exit_code, 0);
    EXPECT_EQ(survivor_digest.out, expected_digest.out) << "the last instance holds the single instance's state";

    const auto letters = Seen(prefix_ + ".cluster.dlq", "rapport-dlq-origin");
    EXPECT_EQ(letters.size(), static_cast<size_t>(invalid)) << "each invalid record dead-lettered";
    for (const auto& [origin, count] : letters) EXPECT_EQ(count, 1) << "dead-lettered twice: " << origin;

    const auto alerts = Seen(prefix_ + ".cluster.alerts", "ce_id");
    const auto single_alerts = Seen(prefix_ + ".single.alerts", "ce_id");
    EXPECT_GT(single_alerts.size(), 1000u);
    EXPECT_EQ(alerts, single_alerts) << "each alert once, none lost, none doubled";
  }
  // The uninterrupted single instance over the whole log: a store of its
  // own, applied once to the log's end (its alerts on the "single" topics).
  void BuildSingle() {
    if (!single_config_.empty()) return;
    single_port_ = testing::FreePort();
    single_config_ = Config("single", "single", single_port_);
    auto reference = testing::RunRapport({"--config", single_config_, "run", "--until-caught-up"});
    ASSERT_EQ(reference.exit_code, 0) << reference.err;
  }
  // The answer's data (its freshness differs between stores), or its status.
  static nlohmann::json Read(int port, const std::string& target) {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60, 0);
    auto result = client.Get(target);
    if (!result) return "no answer";
    if (result->status != 200) return result->status;
    return nlohmann::json::parse(result->body, nullptr, false)["data"];
  }
  // Every read of every customer, and some customers' own, on each running
  // instance, as the single instance answers them (its store served
  // read-only beside them): gathered or forwarded, the same answers.
  void ExpectReadsAsASingleInstance() {
    BuildSingle();
    const int pid = testing::StartRapport({"--config", single_config_, "run", "--read-only"}, log_);
    std::vector<std::string> reads = {"/v1/segments?as_of=2025-12-31", "/v1/insights/pareto?as_of=2025-12-31",
                                      "/v1/churn/at-risk?as_of=2025-12-31&limit=20",
                                      "/v1/churn/at-risk?as_of=2025-12-31&limit=5&currency=EUR",
                                      "/v1/segments/champions/customers?as_of=2025-12-31&limit=20"};
    for (int n = 0; n < 100; n += 3) {
      const std::string id = "c-" + std::string(7 - std::to_string(n).size(), '0') + std::to_string(n);
      reads.push_back("/v1/customers/" + id);
      reads.push_back("/v1/customers/" + id + "/churn?as_of=2025-12-31");
    }
    for (auto until = Clock::now() + std::chrono::seconds(30);
         !Read(single_port_, reads[0]).is_object() && Clock::now() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    // A targeting read page by page, by the single instance's cursors.
    std::string page = "/v1/customers?category=restaurants&limit=25";
    for (int pages = 0; pages < 4; ++pages) {
      reads.push_back(page);
      const auto data = Read(single_port_, page);
      if (!data.is_object() || !data["next_cursor"].is_string()) break;
      page = "/v1/customers?category=restaurants&limit=25&cursor=" + data["next_cursor"].get<std::string>();
    }
    size_t found = 0;
    for (const std::string& target : reads) {
      const auto expected = Read(single_port_, target);
      found += expected.is_object();
      for (const Instance& instance : instances_) {
        if (instance.pid > 0) {
          const auto answer = Read(instance.port, target);
          EXPECT_TRUE(answer == expected) << target << " on :" << instance.port << ": " << answer.dump().substr(0, 300)
                                          << " vs " << expected.dump().substr(0, 300);
        }
      }
    }
    EXPECT_GE(found, reads.size() * 9 / 10) << "most reads find something";
    testing::KillAndWait(pid, SIGTERM);
  }
  void Publish(const std::string& config, const std::string& seed, int64_t* invalid) {
    auto simulated = testing::RunRapport({"--config", config, "simulate", "--customers", "7000", "--days", "365",
                                          "--seed", seed, "--invalid-rate", "0.01", "--publish"});
    ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(simulated.err, m, std::regex(R"((\d+) records \((\d+) invalid\))")));
    records_ += std::stoll(m[1]);
    *invalid += std::stoll(m[2]);
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::string log_;
  int standby_replicas_ = 0;  // [run] standby_replicas of the instances in the group
  std::vector<std::string> dirs_;
  std::vector<Instance> instances_;
  int64_t records_ = 0;
  std::string single_config_;
  int single_port_ = 0;
};

// With a standby of every partition: the standbys apply as their owners do
// and send nothing, and an instance that takes a dead one's partition over
// from its standby copy sends only what the dead one had not.
TEST_F(ClusterCrash, ThreeInstancesKilledTenTimesWhilePublishingLoseAndDoubleNothing) {
  log_ = ::testing::TempDir() + prefix_ + ".log";
  standby_replicas_ = 1;
  for (int i = 0; i < 3; ++i) {
    const int port = testing::FreePort();
    instances_.push_back({Config("node" + std::to_string(i), "cluster", port), port});
    Launch(instances_.back());
  }
  int64_t invalid = 0;
  Publish(instances_[0].config, "1", &invalid);

  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> moment_ms(300, 1500), which(0, 2);
  int killed = 0;
  for (int round = 0; round < 10; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms(random)));
    Instance& victim = instances_[which(random)];
    if (victim.pid < 0) Launch(victim);
    const int status = testing::KillAndWait(victim.pid, SIGKILL);
    killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    victim.pid = -1;
    if (round == 4) Publish(instances_[0].config, "2", &invalid);  // the second half, mid-way
    // Every other round the victim comes back at once (static membership:
    // its partitions with it); otherwise only in a later round, so that the
    // others take its partitions over meanwhile.
    if (round % 2 == 0) Launch(victim);
  }
  EXPECT_EQ(killed, 10);
  for (auto& instance : instances_) {
    if (instance.pid < 0) Launch(instance);
  }
  ASSERT_GE(records_, 200000);
  ASSERT_TRUE(Settle(instances_[0], 3)) << testing::ReadFile(log_);
  ExpectReadsAsASingleInstance();

  // Two of them stop; the last takes every partition over from where its
  // own store stands.
  for (int i = 1; i < 3; ++i) {
    testing::KillAndWait(instances_[i].pid, SIGTERM);
    instances_[i].pid = -1;
  }
  ASSERT_TRUE(Settle(instances_[0], 1)) << testing::ReadFile(log_);
  testing::KillAndWait(instances_[0].pid, SIGTERM);
  instances_[0].pid = -1;

  ExpectWhatASingleInstanceDoes(invalid);
}

// Scale up from one instance to three and down to one while events are
// published, with a rolling restart of all three in between: the same
// checks, and the three answer every read as a single instance does.
TEST_F(ClusterCrash, ScalingOneToThreeToOneWithARollingRestartLosesAndDoublesNothing) {
  log_ = ::testing::TempDir() + prefix_ + ".log";
  for (int i = 0; i < 3; ++i) {
    const int port = testing::FreePort();
    instances_.push_back({Config("node" + std::to_string(i), "cluster", port), port});
  }
  int64_t invalid = 0;
  Launch(instances_[0]);
  Publish(instances_[0].config, "1", &invalid);
  // Up to three while the second half is published.
  Launch(instances_[1]);
  Launch(instances_[2]);
  Publish(instances_[0].config, "2", &invalid);
  ASSERT_TRUE(Settle(instances_[0], 3)) << testing::ReadFile(log_);
  // A rolling restart: each instance stopped and started again in turn,
  // taking its partitions back (static membership) while the others run.
  for (auto& instance : instances_) {
    testing::KillAndWait(instance.pid, SIGTERM);
    Launch(instance);
    ASSERT_TRUE(Settle(instances_[0], 3)) << testing::ReadFile(log_);
  }
  ExpectReadsAsASingleInstance();
  // Down to one.
  for (int i = 1; i < 3; ++i) {
    testing::KillAndWait(instances_[i].pid, SIGTERM);
    instances_[i].pid = -1;
  }
  ASSERT_TRUE(Settle(instances_[0], 1)) << testing::ReadFile(log_);
  testing::KillAndWait(instances_[0].pid, SIGTERM);
  instances_[0].pid = -1;
  ASSERT_GE(records_, 200000);

  ExpectWhatASingleInstanceDoes(invalid);
}

}  // namespace
}  // namespace rapport
