// The broker going away mid-stream: `rapport run` waits for it, loses
// nothing when it returns, and ends cleanly on SIGTERM. Runs a broker of its
// own (another port), because stopping the shared one would disturb the
// tests running beside this one.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "rapport/producers/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

// A broker on a port of its own (each test its own port: CTest runs them side by side).
class OwnBroker {
 public:
  explicit OwnBroker(int port = 19092)
      : port_(std::to_string(port)),
        dir_(::testing::TempDir() + "rapport-broker-" + port_ + "-" + std::to_string(::getpid())) {}
  ~OwnBroker() { Ops("wipe"); }
  testing::CommandResult Ops(const std::string& action) {
    return testing::RunProgram({testing::SourceDir() + "/ops/kafka", action}, "",
                               {{"KAFKA_PORT", port_}, {"RAPPORT_KAFKA_DIR", dir_}, {"KAFKA_HEAP", "512m"}});
  }
  producers::KafkaSettings settings() const {
    producers::KafkaSettings s;
    s.brokers = "127.0.0.1:" + port_;
    s.timeout = std::chrono::milliseconds(20000);
    return s;
  }

 private:
  std::string port_;
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

TEST(BrokerOutage, TheApiAnswers503ForIngestAndKeepsServingReadsThenRecovers) {
  OwnBroker broker(19093);
  auto started = broker.Ops("start");
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  const std::string dir = ::testing::TempDir() + "outage-api-store-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const std::string key = "outage-ingest-key-0001";
  const std::string config = testing::WriteTestConfig(
      broker.settings(), "outage-api",
      "[publish]\ndelivery_timeout_ms = 3000\n[run]\ngroup_id = \"outage-api\"\n[store]\ndata_dir = \"" + dir +
          "\"\n[api]\nopen_reads_on_loopback = true\n[api.keys.etl]\nkey = \"" + key + "\"\nscopes = [\"ingest\"]\n");
  ASSERT_EQ(testing::RunRapport({"--config", config, "topics", "ensure"}).exit_code, 0);
  ASSERT_EQ(
      testing::RunRapport({"--config", config, "publish", testing::SourceDir() + "/examples/events.jsonl"}).exit_code,
      1);
  const std::string port = std::to_string(19500 + ::getpid() % 400);
  const std::string url = "http://127.0.0.1:" + port;
  const std::string log = dir + ".log";
  int pid = testing::StartRapport({"--config", config, "run", "--http", "127.0.0.1:" + port}, log);
  // curl's status code, and the body. (No --retry: curl would retry a 503 itself.)
  auto curl = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {"curl", "-s", "-w", "\n%{http_code}", "-m", "30"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto out = testing::RunProgram(argv).out;
    size_t nl = out.rfind('\n');
    return std::pair{out.substr(nl + 1), out.substr(0, nl)};
  };
  auto post = [&] {
    return curl({"-X", "POST", "-H", "Authorization: Bearer " + key, "-H", "Content-Type: application/json",
                 "--data-binary", "@" + testing::SourceDir() + "/examples/catalog/purchase_completed.json",
                 url + "/v1/events"});
  };
  // Ready: listening, and the examples applied.
  for (int i = 0; i < 300 && curl({url + "/v1/customers/c-1001"}).first != "200"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(curl({url + "/v1/customers/c-1001"}).first, "200") << testing::ReadFile(log);
  ASSERT_EQ(post().first, "202") << testing::ReadFile(log);

  ASSERT_EQ(broker.Ops("stop").exit_code, 0);
  // Ingest cannot be acknowledged: 503 with the reason, after the delivery timeout, not a hang.
  auto [status, body] = post();
  EXPECT_EQ(status, "503") << body;
  EXPECT_NE(body.find("\"broker_unavailable\""), std::string::npos) << body;
  // Reads go on from the store.
  EXPECT_EQ(curl({url + "/v1/customers/c-1001"}).first, "200");
  EXPECT_EQ(curl({url + "/healthz"}).first, "200");

  ASSERT_EQ(broker.Ops("start").exit_code, 0);
  std::string after;
  for (int i = 0; i < 30 && (after = post().first) != "202"; ++i) std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(after, "202") << testing::ReadFile(log);
  int exit_status = testing::KillAndWait(pid, SIGTERM);
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0) << testing::ReadFile(log);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rapport
