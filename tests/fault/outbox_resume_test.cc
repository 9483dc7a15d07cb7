// The outbox relay across processes: a store that dies between writing a
// batch and relaying it sends the batch's records once on restart; another
// group (another platform on the same topics) sends its own; and a new store
// in the same group, built from the log's start (an emptied data directory,
// or an instance taking the partitions over), sends nothing already sent.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "rapport/events/codec.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

TEST(OutboxResume, EachGroupSendsEachDeadLetterOnceAcrossADeathBeforeRelayingAndANewStore) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string prefix = testing::UniqueTopicName("fault.outbox");
  ASSERT_OK(kafka::EnsureTopics(
      broker, {{prefix + ".events", 2, -1, {}}, {prefix + ".dlq", 1, -1, {}}, {prefix + ".alerts", 1, -1, {}}}));
  for (int i = 0; i < 5; ++i) ASSERT_OK(testing::ProduceRaw(broker, prefix + ".events", "c-1", "not an envelope"));

  auto config = [&](const std::string& name, const std::string& group) {
    std::string dir = ::testing::TempDir() + prefix + "." + name;
    std::filesystem::remove_all(dir);
    return testing::WriteTestConfig(broker, prefix + "." + name,
                                    "[topics]\nevents = \"" + prefix + ".events\"\ndead_letter = \"" + prefix +
                                        ".dlq\"\nalerts = \"" + prefix + ".alerts\"\nevents_partitions = 2\n" +
                                        "[run]\ngroup_id = \"" + prefix + "." + group + "\"\ninstance_id = \"" +
                                        prefix + "." + group + "\"\n[store]\ndata_dir = \"" + dir +
                                        "\"\n[log]\nlevel = \"warn\"\n");
  };
  // Another group's store dead-letters the five records.
  const std::string earlier = config("earlier", "other");
  ASSERT_EQ(testing::RunRapport({"--config", earlier, "run", "--until-caught-up"}).exit_code, 0);

  // A new store writes its batch and dies before relaying, then restarts.
  const std::string fresh = config("fresh", "platform");
  auto died = testing::RunRapport({"--config", fresh, "run", "--until-caught-up"}, "",
                                  {{"RAPPORT_FAULT", "exit-after-outbox-write"}});
  ASSERT_EQ(died.exit_code, 86) << died.err;
  auto resumed = testing::RunRapport({"--config", fresh, "run", "--until-caught-up"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  // The same instance with a new store (an emptied data directory) builds
  // the partitions from the log's start: the group's watermarks say its dead
  // letters were sent.
  const std::string rebuilt = config("rebuilt", "platform");
  auto again = testing::RunRapport({"--config", rebuilt, "run", "--until-caught-up"});
  ASSERT_EQ(again.exit_code, 0) << again.err;

  auto letters = testing::ReadTopic(broker, prefix + ".dlq", 30, std::chrono::seconds(5));
  ASSERT_OK(letters);
  EXPECT_EQ(letters->size(), 10u) << "five for each group: none lost, none doubled";
  std::map<std::string, int> origins;
  for (const auto& r : *letters) {
    for (const auto& h : r.headers) {
      if (h.name == "rapport-origin") ++origins[h.value];
    }
  }
  EXPECT_EQ(origins.size(), 5u);
  for (const auto& [origin, count] : origins) EXPECT_EQ(count, 2) << origin << ": once per group";
}

}  // namespace
}  // namespace rapport
