// `rapport simulate --publish` against the real broker: the topic receives
// exactly the stream that --out writes, each customer's events in order on
// the customer's partition, and the invalid records as they are.
#include <gtest/gtest.h>

#include <map>

#include "rapport/events/codec.h"
#include "rapport/events/validation.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

TEST(SimulatePublish, TheTopicHoldsTheSameStreamAsTheFile) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string topic = testing::UniqueTopicName("it.simulate");
  ASSERT_OK(testing::CreateTopic(broker, topic, 6));
  const std::string config = testing::WriteTestConfig(broker, topic, "[topics]\nevents = \"" + topic + "\"\n");
  const std::vector<std::string> options = {"--customers", "300", "--days",         "90",
                                            "--seed",      "21",  "--invalid-rate", "0.03"};

  std::vector<std::string> publish = {"--config", config, "simulate", "--publish"};
  publish.insert(publish.end(), options.begin(), options.end());
  auto published = testing::RunRapport(publish);
  ASSERT_EQ(published.exit_code, 0) << published.err;
  std::vector<std::string> write = {"simulate", "--out", "-"};
  write.insert(write.end(), options.begin(), options.end());
  auto written = testing::RunRapport(write);
  ASSERT_EQ(written.exit_code, 0) << written.err;
  std::vector<std::string> lines = testing::Lines(written.out);

  // The file, per customer, in order; and the invalid lines.
  std::map<std::string, std::vector<std::string>> expected;
  size_t invalid_lines = 0;
  for (const auto& line : lines) {
    v1::Envelope e;
    if (events::ParseEventJson(line, e).has_value() || e.customer_id().empty() ||
        !events::Validate(e, {.reference_time = absl::FromUnixSeconds(e.recorded_at().seconds() + 1)}).empty()) {
      ++invalid_lines;
      continue;
    }
    expected[e.customer_id()].push_back(line);
  }
  ASSERT_GT(invalid_lines, 0u);
  EXPECT_NE(
      published.err.find(std::to_string(lines.size()) + " records (" + std::to_string(invalid_lines) + " invalid)"),
      std::string::npos)
      << published.err;

  auto records = testing::ReadTopic(broker, topic, lines.size(), std::chrono::seconds(60));
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), lines.size());
  std::map<std::string, std::vector<std::string>> actual;  // ReadTopic sorts by partition and offset
  size_t invalid_records = 0;
  for (const auto& r : *records) {
    v1::Envelope e;
    bool valid = !events::DecodeEvent(r.value, e).has_value() && !r.key.empty() &&
                 events::Validate(e, {.reference_time = absl::FromUnixSeconds(e.recorded_at().seconds() + 1)}).empty();
    if (!valid) {
      ++invalid_records;
      continue;
    }
    EXPECT_EQ(r.partition, kafka::PartitionForKey(r.key, 6));
    actual[r.key].push_back(events::EventToJson(e));
  }
  EXPECT_EQ(invalid_records, invalid_lines);
  EXPECT_EQ(actual, expected);
}

TEST(SimulatePublish, RatePacesPublishing) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string topic = testing::UniqueTopicName("it.simulate.rate");
  ASSERT_OK(testing::CreateTopic(broker, topic, 2));
  const std::string config = testing::WriteTestConfig(broker, topic, "[topics]\nevents = \"" + topic + "\"\n");
  auto counted = testing::RunRapport({"simulate", "--customers", "8", "--days", "30", "--seed", "3", "--out", "-"});
  const size_t records = testing::Lines(counted.out).size();
  ASSERT_GT(records, 50u);

  constexpr double kRate = 200;  // records per second
  auto started = std::chrono::steady_clock::now();
  auto paced = testing::RunRapport({"--config", config, "simulate", "--customers", "8", "--days", "30", "--seed", "3",
                                    "--publish", "--rate", "200"});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(paced.exit_code, 0) << paced.err;
  // Never faster than asked (a lower bound only: a slow machine may take longer).
  EXPECT_GE(seconds, 0.9 * static_cast<double>(records - 1) / kRate) << records << " records";
}

}  // namespace
}  // namespace rapport
