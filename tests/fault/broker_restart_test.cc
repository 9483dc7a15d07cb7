// The broker going away mid-stream: `rapport run` waits for it, loses
// nothing when it returns, and ends cleanly on SIGTERM. Runs a broker of its
// own (another port), because stopping the shared one would disturb the
// tests running beside this one.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class OwnBroker {
 public:
  OwnBroker() : dir_(::testing::TempDir() + "rapport-broker-" + std::to_string(::getpid())) {}
  ~OwnBroker() { Ops("wipe"); }
  testing::CommandResult Ops(const std::string& action) {
    return testing::RunProgram({testing::SourceDir() + "/ops/kafka", action}, "",
                               {{"KAFKA_PORT", "19092"}, {"RAPPORT_KAFKA_DIR", dir_}, {"KAFKA_HEAP", "512m"}});
  }
  kafka::KafkaSettings settings() const {
    kafka::KafkaSettings s;
    s.brokers = "127.0.0.1:19092";
    s.timeout = std::chrono::milliseconds(20000);
    return s;
  }

 private:
  std::string dir_;
};

TEST(BrokerOutage, RunWaitsLosesNothingAndStopsCleanlyOnSigterm) {
  OwnBroker broker;
  auto started = broker.Ops("start");
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  const std::string dir = ::testing::TempDir() + "outage-store-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const std::string config = testing::WriteTestConfig(
      broker.settings(), "outage", "[run]\ngroup_id = \"outage\"\n[store]\ndata_dir = \"" + dir + "\"\n");
  ASSERT_EQ(testing::RunRapport({"--config", config, "topics", "ensure"}).exit_code, 0);

  auto publish = [&](const std::string& seed, const std::string& start) {
    auto result = testing::RunRapport({"--config", config, "simulate", "--customers", "500", "--days", "60", "--seed",
                                       seed, "--start", start, "--publish"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(result.err, m, std::regex(R"((\d+) records)")));
    return m.empty() ? 0 : std::stoll(m[1]);
  };
  int64_t total = publish("1", "2025-01-01");

  const std::string log = dir + ".log";
  int pid = testing::StartRapport({"--config", config, "run"}, log);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(broker.Ops("stop").exit_code, 0);
  std::this_thread::sleep_for(std::chrono::seconds(4));  // the runner keeps waiting
  ASSERT_EQ(waitpid(pid, nullptr, WNOHANG), 0) << "rapport run must wait for the broker, not exit (see " << log << ")";
  auto restarted = broker.Ops("start");
  ASSERT_EQ(restarted.exit_code, 0) << restarted.out << restarted.err;
  total += publish("2", "2025-03-01");  // more events after the outage

  // A second store folds the whole log from scratch: the state the running
  // store must reach once the broker is back.
  const std::string fresh_dir = dir + "-fresh";
  std::filesystem::remove_all(fresh_dir);
  const std::string fresh =
      testing::WriteTestConfig(broker.settings(), "outage-fresh",
                               "[run]\ngroup_id = \"outage-fresh\"\n[store]\ndata_dir = \"" + fresh_dir + "\"\n");
  ASSERT_EQ(testing::RunRapport({"--config", fresh, "run", "--until-caught-up"}).exit_code, 0);
  const std::string expected = testing::RunRapport({"--config", fresh, "digest"}).out;
  ASSERT_FALSE(expected.empty());
  // The running store catches up (its digest can be read beside it); the
  // client reconnects with backoff, so allow for that, within a bound.
  bool caught_up = false;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
       !caught_up && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    caught_up = testing::RunRapport({"--config", config, "digest"}).out == expected;
  }
  EXPECT_TRUE(caught_up) << "the running store did not catch up within 90 s of the broker's return (see " << log << ")";

  int status = testing::KillAndWait(pid, SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << "SIGTERM ends the run cleanly (see " << log << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::string output = testing::ReadFile(log);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(output, m, std::regex(R"(run: (\d+) events applied)"))) << output;
  EXPECT_EQ(std::stoll(m[1]), total) << "every event published before and after the outage was applied once";
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(fresh_dir);
}

}  // namespace
}  // namespace rapport
