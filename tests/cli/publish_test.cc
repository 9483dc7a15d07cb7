// `rapport publish` without a broker (--dry-run) and through the binary: what
// a user sees for good and bad input. Sending to the real broker is in
// tests/integration/publish_command_test.cc.
#include "rapport/cli/publish.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "rapport/testing/command.h"

namespace rapport::cli {
namespace {

struct Output {
  int exit_code;
  std::string out;
  std::string err;
};

Output DryRun(const std::string& input, Config config = {}) {
  std::istringstream in(input);
  std::ostringstream out, err;
  std::atomic<bool> stop{false};
  int code = RunPublish(config, {.dry_run = true}, in, out, err, stop);
  return {code, out.str(), err.str()};
}

const std::string kValid =
    R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"web","channel":"CHANNEL_WEB",)"
    R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})";

TEST(Publish, ExampleFileReportsEachInvalidLinePrecisely) {
  auto result = testing::RunRapport({"publish", "--dry-run", testing::SourceDir() + "/examples/events.jsonl"});
  EXPECT_EQ(result.exit_code, kPublishSomeFailed);
  EXPECT_EQ(result.out, "publish (dry run): 16 valid, 5 rejected\n");
  EXPECT_EQ(testing::Lines(result.err),
            (std::vector<std::string>{
                "line 17: invalid JSON: Unexpected end of string. Expected , or } after key:value pair.",
                "line 18: review_submitted.rating: expected an integer, got \"five\"",
                "line 19: unknown event type \"purchase_cancelled\"; expected one of customer_registered, "
                "profile_updated, identity_linked, purchase_completed, refund_issued, review_submitted, "
                "service_rated, survey_answered, complaint_opened, complaint_resolved, interaction, "
                "loyalty_activity, campaign_touched, consent_changed",
                "line 20: customer_id: required",
                "line 21: purchase_completed.total.amount: \"12.345\" has 3 decimal places; EUR allows 2",
            }));
}

TEST(Publish, AllValidInputExitsZero) {
  auto result = DryRun(kValid + "\n" + kValid + "\n");
  EXPECT_EQ(result.exit_code, kPublishOk);
  EXPECT_EQ(result.out, "publish (dry run): 2 valid, 0 rejected\n");
  EXPECT_EQ(result.err, "");
}

TEST(Publish, BlankLinesCrlfAndAByteOrderMarkAreTolerated) {
  auto result = DryRun("\xEF\xBB\xBF" + kValid + "\r\n\n   \n" + kValid);
  EXPECT_EQ(result.exit_code, kPublishOk) << result.err;
  EXPECT_EQ(result.out, "publish (dry run): 2 valid, 0 rejected\n");
}

TEST(Publish, EveryViolationOfALineIsReported) {
  auto result = DryRun(R"({"customer_id":"c 1","source":"web","consent_changed":{}})"
                       "\n");
  EXPECT_EQ(result.exit_code, kPublishSomeFailed);
  EXPECT_EQ(testing::Lines(result.err),
            (std::vector<std::string>{
                "line 1: customer_id: contains a space or a non-printable character at position 2; ids are "
                "printable ASCII without spaces",
                "line 1: occurred_at: required; an RFC 3339 timestamp such as \"2026-11-22T09:30:00Z\"",
                "line 1: channel: required; one of CHANNEL_STORE, CHANNEL_WEB, CHANNEL_APP, CHANNEL_CALL_CENTRE, "
                "CHANNEL_CHAT, CHANNEL_EMAIL, CHANNEL_SOCIAL, CHANNEL_PARTNER, CHANNEL_KIOSK, CHANNEL_OTHER",
                "line 1: consent_changed.purpose: required; one of CONSENT_PURPOSE_MARKETING_EMAIL, "
                "CONSENT_PURPOSE_MARKETING_SMS, CONSENT_PURPOSE_MARKETING_PHONE, CONSENT_PURPOSE_PERSONALISATION, "
                "CONSENT_PURPOSE_ANALYTICS, CONSENT_PURPOSE_THIRD_PARTY_SHARING",
                "line 1: consent_changed.status: required; one of CONSENT_STATUS_GRANTED, CONSENT_STATUS_WITHDRAWN",
            }));
}

TEST(Publish, AnOverlongLineIsRejectedAndTheNextOneStillRead) {
  Config config;
  config.publish.limits.max_json_bytes = 1000;
  auto result = DryRun(std::string(200000, 'x') + "\n" + kValid + "\n", config);
  EXPECT_EQ(result.exit_code, kPublishSomeFailed);
  EXPECT_EQ(result.err, "line 1: event is 200000 bytes of JSON; the limit is 1000\n");
  EXPECT_EQ(result.out, "publish (dry run): 1 valid, 1 rejected\n");
}

TEST(Publish, ReadsStandardInputAndHasHelp) {
  auto piped = testing::RunRapport({"publish", "--dry-run", "-"}, kValid + "\n");
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, "publish (dry run): 1 valid, 0 rejected\n");
  auto help = testing::RunRapport({"publish", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--dry-run"), std::string::npos);
  EXPECT_NE(help.out.find("line N: field: reason"), std::string::npos);
}

TEST(Publish, AStopRequestEndsReadingAndSaysWhere) {
  std::istringstream in(kValid + "\n" + kValid + "\n");
  std::ostringstream out, err;
  std::atomic<bool> stop{true};  // as after Ctrl-C
  int code = RunPublish(Config{}, {.dry_run = true}, in, out, err, stop);
  EXPECT_EQ(code, kPublishOk);
  EXPECT_EQ(err.str(), "publish: interrupted after line 0\n");
  EXPECT_EQ(out.str(), "publish (dry run): 0 valid, 0 rejected\n");
}

TEST(Cli, EveryCommandHasHelp) {
  for (const std::vector<std::string>& command : std::vector<std::vector<std::string>>{{"--help"},
                                                                                       {"publish", "--help"},
                                                                                       {"topics", "--help"},
                                                                                       {"topics", "ensure", "--help"},
                                                                                       {"tail", "--help"},
                                                                                       {"simulate", "--help"},
                                                                                       {"run", "--help"},
                                                                                       {"digest", "--help"},
                                                                                       {"query", "--help"},
                                                                                       {"export", "--help"},
                                                                                       {"replay", "--help"},
                                                                                       {"api-key", "--help"}}) {
    auto result = testing::RunRapport(command);
    EXPECT_EQ(result.exit_code, 0) << command.front();
    EXPECT_NE(result.out.find("Usage:"), std::string::npos) << command.front() << ": " << result.out;
  }
  auto top = testing::RunRapport({"--help"});
  for (const char* name :
       {"publish", "topics", "tail", "simulate", "run", "replay", "digest", "query", "export", "api-key"}) {
    EXPECT_NE(top.out.find(name), std::string::npos) << name;
  }
}

TEST(Cli, UnknownCommandOrOptionIsAUsageError) {
  auto result = testing::RunRapport({"frobnicate"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err,
            "rapport: unknown command or argument 'frobnicate'; commands: publish, topics ensure, tail, simulate, run, "
            "replay, digest, query, churn fit, export, api-key (see rapport --help)\n");
  auto option = testing::RunRapport({"publish", "--dryrun"});
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_NE(option.err.find("--dryrun"), std::string::npos) << option.err;
}

TEST(Cli, NoCommandShowsHelpAsAUsageError) {
  auto result = testing::RunRapport({});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("Usage:"), std::string::npos) << result.err;
}

TEST(Cli, BadConfigIsReportedBeforeAnythingRuns) {
  const std::string path = ::testing::TempDir() + "bad-rapport.toml";
  std::ofstream(path) << "[topics]\nevnts = \"x\"\n";
  auto result = testing::RunRapport({"--config", path, "publish", "--dry-run", "-"}, kValid + "\n");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err,
            "rapport: " + path + ":2: topics.evnts: unknown key (see examples/rapport.toml for the keys there are)\n");
}

TEST(Publish, MissingFileIsACleanError) {
  auto result = testing::RunRapport({"publish", "/nonexistent/events.jsonl"});
  EXPECT_EQ(result.exit_code, kPublishCannotStart);
  EXPECT_EQ(result.err, "publish: cannot open /nonexistent/events.jsonl: No such file or directory\n");
}

}  // namespace
}  // namespace rapport::cli
