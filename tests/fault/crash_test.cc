// Crash safety: `rapport run` killed with SIGKILL 20 times at random moments
// while it folds about 300,000 events, restarted each time, ends in exactly the
// state of an uninterrupted run, and what it sent through its outbox (alerts,
// dead letters) is on the topics exactly once.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

TEST(CrashSafety, KilledTwentyTimesItLosesAndDoublesNothing) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string prefix = testing::UniqueTopicName("fault.crash");
  ASSERT_OK(kafka::EnsureTopics(broker, {{prefix + ".events", 6, -1, {}},
                                         {prefix + ".calm.dlq", 1, -1, {}},
                                         {prefix + ".crashy.dlq", 1, -1, {}},
                                         {prefix + ".calm.alerts", 3, -1, {}},
                                         {prefix + ".crashy.alerts", 3, -1, {}}}));
  auto config = [&](const std::string& name) {
    std::string dir = ::testing::TempDir() + prefix + "." + name;
    std::filesystem::remove_all(dir);
    return testing::WriteTestConfig(broker, prefix + "." + name,
                                    "[topics]\nevents = \"" + prefix + ".events\"\ndead_letter = \"" + prefix + "." +
                                        name + ".dlq\"\nalerts = \"" + prefix + "." + name +
                                        ".alerts\"\nevents_partitions = 6\n" + "[run]\ngroup_id = \"" + prefix + "." +
                                        name + "\"\nmax_batch = 2000\n" + "[store]\ndata_dir = \"" + dir + "\"\n");
  };
  const std::string calm = config("calm");
  const std::string crashy = config("crashy");

  auto simulated = testing::RunRapport({"--config", calm, "simulate", "--customers", "14000", "--days", "365", "--seed",
                                        "77", "--invalid-rate", "0.01", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(simulated.err, m, std::regex(R"((\d+) records \((\d+) invalid\))")));
  const int64_t records = std::stoll(m[1]), invalid = std::stoll(m[2]);
  ASSERT_GE(records, 200000);

  // The reference: one uninterrupted run.
  auto reference = testing::RunRapport({"--config", calm, "run", "--until-caught-up"});
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  auto reference_digest = testing::RunRapport({"--config", calm, "digest"});
  ASSERT_EQ(reference_digest.exit_code, 0);

  // Killed at random moments, restarted each time.
  const std::string log = ::testing::TempDir() + prefix + ".crashy.log";
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> moment_ms(50, 250);
  int killed = 0;
  for (int i = 0; i < 20; ++i) {
    int pid = testing::StartRapport({"--config", crashy, "run", "--until-caught-up"}, log);
    std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms(random)));
    int status = testing::KillAndWait(pid, SIGKILL);
    killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }
  EXPECT_EQ(killed, 20) << "each run was still consuming when killed (see " << log << ")";
  auto last = testing::RunRapport({"--config", crashy, "run", "--until-caught-up"});
  ASSERT_EQ(last.exit_code, 0) << last.err;

  auto crashy_digest = testing::RunRapport({"--config", crashy, "digest"});
  EXPECT_EQ(crashy_digest.out, reference_digest.out);

  // Dead letters: each invalid record once, in both runs.
  for (const std::string name : {"calm", "crashy"}) {
    auto letters = testing::ReadTopicToEnd(broker, prefix + "." + name + ".dlq");
    ASSERT_OK(letters);
    std::set<std::string> origins;
    for (const auto& r : *letters) {
      for (const auto& h : r.headers) {
        if (h.name == "rapport-dlq-origin") origins.insert(h.value);
      }
    }
    EXPECT_EQ(letters->size(), static_cast<size_t>(invalid)) << name;
    EXPECT_EQ(origins.size(), static_cast<size_t>(invalid)) << name << ": no record dead-lettered twice";
  }

  // Alerts: the crashed run raised exactly the reference run's alerts, each once.
  auto alert_ids = [&](const std::string& name, size_t* count) {
    auto alerts = testing::ReadTopicToEnd(broker, prefix + "." + name + ".alerts");
    EXPECT_OK(alerts);
    std::set<std::string> ids;
    for (const auto& r : *alerts) {
      for (const auto& h : r.headers) {
        if (h.name == "ce_id") ids.insert(h.value);
      }
    }
    *count = alerts->size();
    return ids;
  };
  size_t calm_records = 0, crashy_records = 0;
  std::set<std::string> calm_alerts = alert_ids("calm", &calm_records);
  std::set<std::string> crashy_alerts = alert_ids("crashy", &crashy_records);
  EXPECT_GT(calm_alerts.size(), 1000u);
  EXPECT_EQ(calm_records, calm_alerts.size());
  EXPECT_EQ(crashy_records, crashy_alerts.size()) << "no alert sent twice";
  EXPECT_EQ(crashy_alerts, calm_alerts) << "no alert lost";
}

}  // namespace
}  // namespace rapport
