// `rapport simulate` as a user runs it (without a broker; --publish is in
// tests/integration/simulate_publish_test.cc).
#include <gtest/gtest.h>

#include "rapport/testing/command.h"

namespace rapport {
namespace {

TEST(SimulateCommand, SameSeedSameBytesOnStandardOutput) {
  std::vector<std::string> args = {"simulate", "--customers", "200", "--days", "60", "--seed", "9", "--out", "-"};
  auto first = testing::RunRapport(args);
  auto second = testing::RunRapport(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_GT(testing::Lines(first.out).size(), 1000u);
  EXPECT_EQ(first.out, second.out);
  EXPECT_EQ(first.err.rfind("simulate: " + std::to_string(testing::Lines(first.out).size()) +
                                " records (0 invalid) from 200 customers over 60 days to standard output in ",
                            0),
            0u)
      << first.err;
  args[6] = "10";
  EXPECT_NE(testing::RunRapport(args).out, first.out);
}

TEST(SimulateCommand, WritesAFileAndATruthFile) {
  const std::string out = ::testing::TempDir() + "simulate-out.jsonl";
  const std::string truth = ::testing::TempDir() + "simulate-truth.csv";
  auto result = testing::RunRapport({"simulate", "--customers", "50", "--days", "30", "--seed", "2", "--start",
                                     "2026-01-01", "--out", out, "--truth", truth});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto lines = testing::Lines(testing::ReadFile(out));
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.front().find("\"occurred_at\":\"2026-01-"), std::string::npos) << lines.front();
  auto rows = testing::Lines(testing::ReadFile(truth));
  ASSERT_EQ(rows.size(), 51u);
  EXPECT_EQ(rows[0],
            "customer_id,acquired_at,purchase_rate_per_day,dropout_probability,alive_at_end,dropped_out_at,purchases,"
            "revenue_eur");
  EXPECT_EQ(rows[1].rfind("c-0000001,2026-01-", 0), 0u) << rows[1];
  // Every record publishes cleanly.
  auto check = testing::RunRapport({"publish", "--dry-run", out});
  EXPECT_EQ(check.exit_code, 0) << check.err;
}

TEST(SimulateCommand, InvalidRecordsAreRejectedByPublish) {
  const std::string out = ::testing::TempDir() + "simulate-invalid.jsonl";
  auto result = testing::RunRapport(
      {"simulate", "--customers", "100", "--days", "60", "--seed", "4", "--invalid-rate", "0.05", "--out", out});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto check = testing::RunRapport({"publish", "--dry-run", out});
  EXPECT_EQ(check.exit_code, 1);
  size_t rejected = 0;
  for (const auto& line : testing::Lines(check.err)) {
    ++rejected;
    bool expected = line.find(": invalid JSON: ") != std::string::npos ||
                    line.find(": review_submitted.rating: expected an integer, got \"five\"") != std::string::npos ||
                    line.find(": review_submitted.rating: must be from 1 to 5, got ") != std::string::npos ||
                    line.find(": customer_id: required") != std::string::npos;
    EXPECT_TRUE(expected) << line;
  }
  size_t total = testing::Lines(testing::ReadFile(out)).size();
  EXPECT_NEAR(static_cast<double>(rejected) / static_cast<double>(total), 0.05, 0.015);
}

TEST(SimulateCommand, UsageErrorsAreClear) {
  auto nowhere = testing::RunRapport({"simulate", "--customers", "10"});
  EXPECT_EQ(nowhere.exit_code, 2);
  EXPECT_EQ(nowhere.err, "simulate: say where the events go: --out FILE (or - for standard output) or --publish\n");
  auto both = testing::RunRapport({"simulate", "--out", "-", "--publish"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
  auto start = testing::RunRapport({"simulate", "--start", "last tuesday", "--out", "-"});
  EXPECT_EQ(start.exit_code, 2);
  EXPECT_EQ(start.err,
            "simulate: --start: \"last tuesday\" is not a date such as 2025-01-01 or a time such as "
            "2025-01-01T00:00:00Z\n");
  auto rate = testing::RunRapport({"simulate", "--invalid-rate", "1.5", "--out", "-"});
  EXPECT_EQ(rate.exit_code, 2);
}

}  // namespace
}  // namespace rapport
