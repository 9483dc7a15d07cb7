// The outbox relay resumes correctly when a store dies between writing a
// batch and relaying it, even when the target topic already holds records
// relayed by another store (an earlier, emptied data directory).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "rapport/events/codec.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

TEST(OutboxResume, ANewStoreNeverTakesAnOlderStoresRecordsForItsOwn) {
  kafka::KafkaSettings broker = testing::TestBroker();
  ASSERT_OK(testing::CheckBrokerAnswers(broker));
  const std::string prefix = testing::UniqueTopicName("fault.outbox");
  ASSERT_OK(kafka::EnsureTopics(
      broker, {{prefix + ".events", 2, -1, {}}, {prefix + ".dlq", 1, -1, {}}, {prefix + ".alerts", 1, -1, {}}}));
  for (int i = 0; i < 5; ++i) ASSERT_OK(testing::ProduceRaw(broker, prefix + ".events", "c-1", "not an envelope"));

  auto config = [&](const std::string& name) {
    std::string dir = ::testing::TempDir() + prefix + "." + name;
    std::filesystem::remove_all(dir);
    return testing::WriteTestConfig(broker, prefix + "." + name,
                                    "[topics]\nevents = \"" + prefix + ".events\"\ndead_letter = \"" + prefix +
                                        ".dlq\"\nalerts = \"" + prefix + ".alerts\"\nevents_partitions = 2\n" +
                                        "[run]\ngroup_id = \"" + prefix + "." + name + "\"\n[store]\ndata_dir = \"" +
                                        dir + "\"\n[log]\nlevel = \"warn\"\n");
  };
  // An earlier store dead-letters the five records.
  const std::string earlier = config("earlier");
  ASSERT_EQ(testing::RunRapport({"--config", earlier, "run", "--until-caught-up"}).exit_code, 0);

  // A new store writes its batch and dies before relaying, then restarts.
  const std::string fresh = config("fresh");
  auto died = testing::RunRapport({"--config", fresh, "run", "--until-caught-up"}, "",
                                  {{"RAPPORT_FAULT", "exit-after-outbox-write"}});
  ASSERT_EQ(died.exit_code, 86) << died.err;
  auto resumed = testing::RunRapport({"--config", fresh, "run", "--until-caught-up"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  auto letters = testing::ReadTopic(broker, prefix + ".dlq", 20, std::chrono::seconds(5));
  ASSERT_OK(letters);
  EXPECT_EQ(letters->size(), 10u) << "five from each store: none lost, none doubled";
  std::set<std::string> stores;
  for (const auto& r : *letters) {
    for (const auto& h : r.headers) {
      if (h.name == "rapport-outbox-seq") stores.insert(h.value.substr(0, 16));
    }
  }
  EXPECT_EQ(stores.size(), 2u);
}

}  // namespace
}  // namespace rapport
