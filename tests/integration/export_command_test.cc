// `rapport export` against the real broker: each filter returns exactly the
// matching events, in JSON lines and in CSV; time windows seek instead of
// scanning; a customer's export reads only their partition.
#include "rapport/cli/export_command.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "nlohmann/json.hpp"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using nlohmann::json;

class ExportCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.export");
    ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 4, -1, {}}}));
    config_ = testing::WriteTestConfig(broker_, prefix_, "[topics]\nevents = \"" + prefix_ + ".events\"\n");
    auto published =
        testing::RunRapport({"--config", config_, "publish", testing::SourceDir() + "/examples/events.jsonl"});
    ASSERT_EQ(published.exit_code, 1) << published.err;  // 5 invalid lines on purpose
    // A record that is not an event (another system wrote it): skipped and counted.
    ASSERT_OK(testing::ProduceRaw(broker_, prefix_ + ".events", "c-1001", "not protobuf", {}, 1775000000000));
    // The valid examples, as the test's own expectation.
    for (const auto& line : testing::Lines(testing::ReadFile(testing::SourceDir() + "/examples/events.jsonl"))) {
      json event = json::parse(line, nullptr, false);
      if (event.is_object() && event.contains("event_id")) examples_.push_back(event);
    }
    ASSERT_EQ(examples_.size(), 16u);
  }

  // The ids of the examples that `keep` selects.
  std::set<std::string> Expected(const std::function<bool(const json&)>& keep) {
    std::set<std::string> ids;
    for (const auto& e : examples_) {
      if (keep(e)) ids.insert(e["event_id"].get<std::string>());
    }
    return ids;
  }
  static std::string TypeOf(const json& e) {
    for (const auto& [key, value] : e.items()) {
      if (value.is_object() && key != "details") return key;
    }
    return "";
  }
  testing::CommandResult Export(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_, "export"});
    auto result = testing::RunRapport(args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result;
  }
  // The event ids of JSON-lines output.
  static std::set<std::string> Ids(const std::string& jsonl) {
    std::set<std::string> ids;
    for (const auto& line : testing::Lines(jsonl)) ids.insert(json::parse(line)["event_id"].get<std::string>());
    return ids;
  }
  // "export: N events of M records read ..." -> {N, M}
  static std::pair<int, int> Counts(const std::string& err) {
    std::smatch m;
    EXPECT_TRUE(std::regex_search(err, m, std::regex(R"(export: (\d+) events of (\d+) records read)"))) << err;
    return m.empty() ? std::pair{-1, -1} : std::pair{std::stoi(m[1]), std::stoi(m[2])};
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_, config_;
  std::vector<json> examples_;
};

TEST_F(ExportCommand, EveryEventByDefaultAndOnlyEvents) {
  auto all = Export({});
  EXPECT_EQ(Ids(all.out), Expected([](const json&) { return true; }));
  EXPECT_EQ(Counts(all.err), (std::pair{16, 17}));
  EXPECT_NE(all.err.find("1 records were not events and were skipped"), std::string::npos) << all.err;
  // What export writes, publish reads: the JSON lines are valid events.
  auto again = testing::RunRapport({"publish", "--dry-run"}, all.out);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("16 valid, 0 rejected"), std::string::npos) << again.out;
}

TEST_F(ExportCommand, TypeAndCustomerFiltersAreExact) {
  auto types = Export({"--type", "purchase_completed,refund_issued"});
  EXPECT_EQ(Ids(types.out),
            Expected([](const json& e) { return TypeOf(e) == "purchase_completed" || TypeOf(e) == "refund_issued"; }));
  auto customer = Export({"--customer", "c-1002"});
  EXPECT_EQ(Ids(customer.out), Expected([](const json& e) { return e["customer_id"] == "c-1002"; }));
  EXPECT_LT(Counts(customer.err).second, 17) << "read more than the customer's partition";
  auto both = Export({"--customer", "c-1001", "--type", "purchase_completed"});
  EXPECT_EQ(Ids(both.out),
            Expected([](const json& e) { return e["customer_id"] == "c-1001" && TypeOf(e) == "purchase_completed"; }));
}

TEST_F(ExportCommand, TimeWindowsSeekAndFilterExactly) {
  // The examples' times are all "YYYY-MM-DDTHH:MM:SSZ": they compare as text.
  auto window = Export({"--since", "2026-04-01", "--until", "2026-04-15T00:00:00Z"});
  const auto expected = Expected([](const json& e) {
    const std::string at = e["occurred_at"];
    return at >= "2026-04-01T00:00:00Z" && at < "2026-04-15T00:00:00Z";
  });
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(Ids(window.out), expected);
  EXPECT_LT(Counts(window.err).second, 17) << "a time window should not read the whole log";
  auto after = Export({"--since", "2026-04-15"});
  EXPECT_EQ(Ids(after.out), Expected([](const json& e) { return e["occurred_at"] >= "2026-04-15T00:00:00Z"; }));
  auto none = Export({"--since", "2030-01-01"});
  EXPECT_EQ(none.out, "");
  EXPECT_EQ(Counts(none.err), (std::pair{0, 0}));
}

TEST_F(ExportCommand, CsvHasStableColumnsAndOneRowPerEvent) {
  const std::string file = ::testing::TempDir() + prefix_ + ".csv";
  Export({"--type", "purchase_completed", "--format", "csv", "--out", file});
  auto lines = testing::Lines(testing::ReadFile(file));
  std::filesystem::remove(file);
  ASSERT_FALSE(lines.empty());
  const auto columns = cli::CsvColumns({"purchase_completed"});
  std::string header;
  for (const auto& c : columns) header += (header.empty() ? "" : ",") + c;
  EXPECT_EQ(lines[0], header);
  EXPECT_EQ(lines[0].rfind("event_id,customer_id,occurred_at,recorded_at,source,channel,correlation_id,type,", 0), 0u);
  EXPECT_NE(lines[0].find(",purchase_completed.total.currency,purchase_completed.total.amount,"), std::string::npos);
  EXPECT_EQ(lines.size() - 1, Expected([](const json& e) { return TypeOf(e) == "purchase_completed"; }).size());
  // The first purchase of the examples, cell by cell where it matters.
  const size_t amount = std::find(columns.begin(), columns.end(), "purchase_completed.total.amount") - columns.begin();
  bool found = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].rfind("019ceda7-dc18-7004-8000-0e0000000004,c-1001,", 0) != 0) continue;
    found = true;
    // Split on commas outside quotes.
    std::vector<std::string> cells(1);
    bool quoted = false;
    for (char c : lines[i]) {
      if (c == '"') quoted = !quoted;
      if (c == ',' && !quoted) {
        cells.emplace_back();
      } else {
        cells.back() += c;
      }
    }
    ASSERT_EQ(cells.size(), columns.size()) << lines[i];
    EXPECT_EQ(cells[amount], "57.30");
    EXPECT_EQ(cells[7], "purchase_completed");
  }
  EXPECT_TRUE(found);
}

TEST_F(ExportCommand, BadArgumentsAreUsageErrors) {
  auto type = testing::RunRapport({"--config", config_, "export", "--type", "purchase"});
  EXPECT_EQ(type.exit_code, 2);
  EXPECT_NE(type.err.find("--type: \"purchase\" is not an event type"), std::string::npos) << type.err;
  auto since = testing::RunRapport({"--config", config_, "export", "--since", "last week"});
  EXPECT_EQ(since.exit_code, 2);
  EXPECT_NE(since.err.find("--since: \"last week\" is not a date"), std::string::npos) << since.err;
  auto backwards =
      testing::RunRapport({"--config", config_, "export", "--since", "2026-05-01", "--until", "2026-04-01"});
  EXPECT_EQ(backwards.exit_code, 2);
  auto format = testing::RunRapport({"--config", config_, "export", "--format", "xml"});
  EXPECT_EQ(format.exit_code, 2);
}

}  // namespace
}  // namespace rapport
