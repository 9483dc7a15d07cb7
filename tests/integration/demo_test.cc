// ops/demo, the README's first command, end to end against the real broker:
// a small population instead of 50,000 customers, the binary already built,
// topics and state of its own. Every step of the tour must work as printed,
// and the demo must stop the `rapport run` it started.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

// The demo on the binary already built, with topics and state of its own.
std::map<std::string, std::string> DemoEnvironment(const kafka::KafkaSettings& broker, const std::string& prefix,
                                                   const std::string& dir, int port) {
  return {
      {"DEMO_SKIP_BUILD", "1"},
      {"BUILD_DIR", std::filesystem::path(testing::RapportBinary()).parent_path().parent_path()},
      {"DEMO_DIR", dir},
      {"DEMO_TOPICS", prefix},
      {"API_PORT", std::to_string(port)},
      {"KAFKA_PORT", broker.brokers.substr(broker.brokers.rfind(':') + 1)},
  };
}

TEST(Demo, RunsEveryStepOfTheTourAndStopsWhatItStarted) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string prefix = testing::UniqueTopicName("it.demo");
  const std::string dir = ::testing::TempDir() + prefix;
  const int port = testing::FreePort();
  const std::map<std::string, std::string> env = DemoEnvironment(broker, prefix, dir, port);

  auto demo = testing::RunProgram({testing::SourceDir() + "/ops/demo", "--customers", "2000", "--no-wait"}, "", env);
  ASSERT_EQ(demo.exit_code, 0) << demo.out << demo.err;
  const std::string out = demo.out + demo.err;  // reports go to standard error
  // The examples' invalid lines are reported, the simulation published.
  EXPECT_NE(out.find("line 18: review_submitted.rating: expected an integer"), std::string::npos) << out;
  EXPECT_NE(out.find("from 2000 customers over 365 days to " + prefix + ".events"), std::string::npos) << out;
  EXPECT_NE(out.find("churn models refitted"), std::string::npos) << out;
  // Each step of the tour answered with data.
  EXPECT_NE(out.find("\"customer_id\": \"c-0000003\""), std::string::npos) << out;    // total view
  EXPECT_NE(out.find("\"subject_id\": \"hotel-003\""), std::string::npos) << out;     // a hotel's reviews
  EXPECT_NE(out.find("\"kind\":\"ALERT_KIND_"), std::string::npos) << out;            // alerts
  EXPECT_NE(out.find("ranked in EUR"), std::string::npos) << out;                     // at risk by value
  EXPECT_NE(out.find("  model\n"), std::string::npos) << out;                         // ... from the models
  EXPECT_NE(out.find("\"top_20_percent_revenue_share\""), std::string::npos) << out;  // 80/20
  EXPECT_NE(out.find("replay: "), std::string::npos) << out;                          // point in time
  EXPECT_NE(out.find("event_id,customer_id,occurred_at"), std::string::npos) << out;  // export
  EXPECT_NE(out.find("\"position\""), std::string::npos) << out;                      // ingest over HTTP
  EXPECT_NE(out.find("rapport_events_applied_total"), std::string::npos) << out;      // metrics
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
  EXPECT_FALSE(testing::PortAnswers(port)) << "the demo left rapport run serving on port " << port;

  // Run again, staying up: idempotent (publishes nothing twice), serves
  // until Ctrl-C, then stops the `rapport run` it started.
  const std::string log = dir + ".again.log";
  std::ofstream(log).close();  // there before the demo writes to it
  const int again = testing::StartProgram({testing::SourceDir() + "/ops/demo"}, log, env);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (testing::ReadFile(log).find("Ctrl-C stops it") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline && waitpid(again, nullptr, WNOHANG) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const std::string up = testing::ReadFile(log);
  ASSERT_NE(up.find("Ctrl-C stops it"), std::string::npos) << up;
  EXPECT_NE(up.find("not publishing them again"), std::string::npos) << up;
  EXPECT_TRUE(testing::PortAnswers(port)) << "the demo is up but its API is not";
  const int status = testing::KillAndWait(again, SIGINT);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << status << "\n" << testing::ReadFile(log);
  EXPECT_NE(testing::ReadFile(log).find("stopping rapport run"), std::string::npos) << testing::ReadFile(log);
  EXPECT_FALSE(testing::PortAnswers(port)) << "Ctrl-C left rapport run serving on port " << port;

  auto ends = testing::EndOffsets(broker, prefix + ".events");
  ASSERT_OK(ends);
  int64_t records = 0;
  for (const auto& [partition, end] : *ends) records += end;
  // The 16 valid examples and the simulation once, plus one event per run ingested over HTTP.
  EXPECT_NE(out.find("simulate: " + std::to_string(records - 16 - 2) + " records"), std::string::npos)
      << records << " records on the topic after two runs:\n"
      << out;
  std::filesystem::remove_all(dir);
}

// `ops/demo --instances 2`: two instances in one group, each answering for
// every customer (one of them by forwarding), then a kill -9 of the second
// and the first answering every customer again.
TEST(Demo, SeveralInstancesShareThePartitionsAndSurviveAKill) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string prefix = testing::UniqueTopicName("it.demo2");
  const std::string dir = ::testing::TempDir() + prefix;
  const int port = testing::FreePort();
  const std::map<std::string, std::string> env = DemoEnvironment(broker, prefix, dir, port);
  auto demo = testing::RunProgram(
      {testing::SourceDir() + "/ops/demo", "--customers", "500", "--instances", "2", "--no-wait"}, "", env);
  ASSERT_EQ(demo.exit_code, 0) << demo.out << demo.err;
  const std::string out = demo.out + demo.err;
  EXPECT_NE(out.find("Starting 2 instances of rapport run"), std::string::npos) << out;
  EXPECT_NE(out.find("forwarded to and answered by"), std::string::npos) << out;
  EXPECT_NE(out.find("answered here"), std::string::npos) << out;
  EXPECT_NE(out.find("\"kind\":\"ALERT_KIND_"), std::string::npos) << out;
  EXPECT_NE(out.find("every customer answered again about"), std::string::npos) << out;
  EXPECT_NE(out.find(" gone "), std::string::npos) << "cluster status shows the killed instance gone\n" << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
  EXPECT_FALSE(testing::PortAnswers(port)) << "the demo left an instance serving on port " << port;
  EXPECT_FALSE(testing::PortAnswers(port + 1)) << "the demo left an instance serving on port " << port + 1;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rapport
