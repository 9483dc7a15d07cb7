// `rapport run` against the real broker: exactly-once folding, dead letters,
// de-duplication, and resuming where the store is.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/str_format.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class RunCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.run");
    ASSERT_OK(kafka::EnsureTopics(
        broker_, {{prefix_ + ".events", 6, -1, {}}, {prefix_ + ".dlq", 1, -1, {}}, {prefix_ + ".alerts", 1, -1, {}}}));
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }
  // A config for one store (and consumer group) of its own; `run` adds
  // lines to its [run] table.
  std::string Config(const std::string& name, const std::string& run = "") {
    std::string dir = ::testing::TempDir() + prefix_ + "." + name;
    dirs_.push_back(dir);
    return testing::WriteTestConfig(broker_, prefix_ + "." + name,
                                    "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" + prefix_ +
                                        ".dlq\"\nalerts = \"" + prefix_ + ".alerts\"\nevents_partitions = 6\n" +
                                        "[run]\ngroup_id = \"" + prefix_ + "." + name + "\"\n" + run +
                                        "[store]\ndata_dir = \"" + dir + "\"\n[log]\nlevel = \"warn\"\n");
  }
  testing::CommandResult Rapport(const std::string& config, std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    return testing::RunRapport(args);
  }
  // "run: A events applied, D duplicates skipped, L dead-lettered in B batches"
  std::array<int64_t, 3> RunCounts(const std::string& out) {
    std::smatch m;
    static const std::regex kSummary(R"(run: (\d+) events applied, (\d+) duplicates skipped, (\d+) dead-lettered)");
    EXPECT_TRUE(std::regex_search(out, m, kSummary)) << out;
    if (m.empty()) return {-1, -1, -1};
    return {std::stoll(m[1]), std::stoll(m[2]), std::stoll(m[3])};
  }
  std::string Digest(const std::string& config) {
    auto result = Rapport(config, {"digest"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::vector<std::string> dirs_;
};

TEST_F(RunCommand, AppliesEveryValidEventDeadLettersTheRestAndIsDeterministic) {
  const std::string a = Config("a");
  auto simulated = Rapport(
      a, {"simulate", "--customers", "400", "--days", "120", "--seed", "31", "--invalid-rate", "0.02", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(simulated.err, m, std::regex(R"((\d+) records \((\d+) invalid\))"))) << simulated.err;
  const int64_t records = std::stoll(m[1]), invalid = std::stoll(m[2]);
  ASSERT_GT(invalid, 0);

  auto run = Rapport(a, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto [applied, duplicates, dead] = RunCounts(run.out);
  EXPECT_EQ(applied, records - invalid);
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(dead, invalid);

  // Lag tools see the group caught up: the advisory commits reach the end.
  auto committed = testing::CommittedOffsets(broker_, prefix_ + ".a", prefix_ + ".events");
  ASSERT_OK(committed);
  auto ends = testing::EndOffsets(broker_, prefix_ + ".events");
  ASSERT_OK(ends);
  EXPECT_EQ(*committed, *ends);

  auto letters =
      testing::ReadTopic(broker_, prefix_ + ".dlq", static_cast<size_t>(invalid) + 1, std::chrono::seconds(5));
  ASSERT_OK(letters);
  EXPECT_EQ(letters->size(), static_cast<size_t>(invalid)) << "each invalid record is dead-lettered once";
  for (const auto& r : *letters) {
    std::map<std::string, std::string> headers;
    for (const auto& h : r.headers) headers[h.name] = h.value;
    EXPECT_FALSE(headers["rapport-dlq-reason"].empty());
    EXPECT_TRUE(std::regex_match(headers["rapport-dlq-origin"], std::regex(prefix_ + R"(\.events/\d/\d+)")))
        << headers["rapport-dlq-origin"];
  }

  // The same log folded again by another store gives the same state.
  const std::string b = Config("b");
  ASSERT_EQ(Rapport(b, {"run", "--until-caught-up"}).exit_code, 0);
  std::string digest = Digest(a);
  EXPECT_EQ(digest.rfind("customer_profile ", 0), 0u) << digest;
  EXPECT_EQ(Digest(b), digest);

  auto profile = Rapport(a, {"query", "profile", "c-0000001"});
  EXPECT_EQ(profile.exit_code, 0) << profile.err;
  EXPECT_NE(profile.out.find("\"customer_id\": \"c-0000001\""), std::string::npos) << profile.out;
  auto lookup = Rapport(a, {"query", "lookup", "email", "c-0000001@mail.example"});
  EXPECT_EQ(lookup.exit_code, 0) << lookup.err;
  EXPECT_EQ(lookup.out, profile.out);
  // The kinds are the API's (external_id); "external", the old name, still works.
  for (const char* kind : {"external_id", "external"}) {
    auto unknown = Rapport(a, {"query", "lookup", kind, "crm-404"});
    EXPECT_EQ(unknown.exit_code, 1) << kind << ": " << unknown.err;
    EXPECT_NE(unknown.err.find("crm-404"), std::string::npos) << unknown.err;
  }

  // The churn, segment and review queries answer as documented.
  std::string buyer;
  for (int n = 1; n <= 400 && buyer.empty(); ++n) {
    std::string id = absl::StrFormat("c-%07d", n);
    auto churn = Rapport(a, {"query", "churn", id, "--as-of", "2025-05-01"});
    if (churn.exit_code == 0 && churn.out.find("\"rfm\"") != std::string::npos) buyer = id;
  }
  ASSERT_FALSE(buyer.empty()) << "some customer bought something";
  auto churn = Rapport(a, {"query", "churn", buyer, "--as-of", "2025-05-01"});
  for (const char* field : {"\"segment\"", "\"risk\"", "\"reasons\"", "\"recency_days\"", "\"monetary\""}) {
    EXPECT_NE(churn.out.find(field), std::string::npos) << field << " in " << churn.out;
  }
  auto segments = Rapport(a, {"query", "segments", "--as-of", "2025-05-01"});
  EXPECT_EQ(segments.exit_code, 0) << segments.err;
  EXPECT_NE(segments.out.find("\"top_20_percent_revenue_share\""), std::string::npos) << segments.out;
  EXPECT_NE(segments.out.find("\"segments\""), std::string::npos) << segments.out;
  auto written = Rapport(a, {"query", "reviews", "--customer", buyer});
  EXPECT_EQ(written.exit_code, 0) << written.err;
  EXPECT_NE(written.out.find("\"reviews\""), std::string::npos) << written.out;
  auto items = Rapport(a, {"query", "reviews", "store/store-001", "--items", "--limit", "2"});
  EXPECT_EQ(items.exit_code, 0) << items.err;
  auto unknown = Rapport(a, {"query", "reviews", "store/no-such-store"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, "query: no reviews of store no-such-store\n");
  auto malformed = Rapport(a, {"query", "reviews", "castle/c-1"});
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_NE(malformed.err.find("\"castle/c-1\" is not a subject such as hotel/hotel-001"), std::string::npos)
      << malformed.err;
  auto bad_time = Rapport(a, {"query", "churn", buyer, "--as-of", "tomorrow"});
  EXPECT_EQ(bad_time.exit_code, 2);
  EXPECT_NE(bad_time.err.find("--as-of: \"tomorrow\""), std::string::npos) << bad_time.err;
  auto nobody = Rapport(a, {"query", "profile", "c-9999999"});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_EQ(nobody.err, "query: no customer c-9999999\n");
}

TEST_F(RunCommand, EachPoisonRecordLandsInTheDeadLetterTopicWithItsReason) {
  const std::string topic = prefix_ + ".events";
  v1::Envelope valid;
  ASSERT_FALSE(
      events::ParseEventJson(
          R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01","customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z",)"
          R"("recorded_at":"2026-04-21T10:00:01Z","source":"web","channel":"CHANNEL_WEB",)"
          R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
          valid)
          .has_value());
  v1::Envelope bad_rating = valid;
  bad_rating.set_event_id("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d02");
  auto* review = bad_rating.mutable_review_submitted();
  review->set_subject_type(v1::SUBJECT_TYPE_HOTEL);
  review->set_subject_id("h-1");
  review->set_rating(9);
  v1::Envelope no_payload = valid;
  no_payload.set_event_id("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d03");
  no_payload.clear_payload();
  // A payload from a newer catalog: field 99, unknown here.
  std::string unknown_payload = events::EncodeEvent(no_payload) + std::string("\x9a\x06\x02\x08\x01", 5);

  const std::string garbage = std::string(11, '\xff') + " garbage";
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", garbage));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", events::EncodeEvent(bad_rating)));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", unknown_payload));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "", events::EncodeEvent(valid)));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-2", events::EncodeEvent(valid)));
  v1::Envelope unrecorded = valid;  // from a client that left recorded_at out
  unrecorded.set_event_id("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d04");
  unrecorded.clear_recorded_at();
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", events::EncodeEvent(unrecorded), {}, 1776765600000));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", events::EncodeEvent(valid)));

  const std::string config = Config("poison");
  auto run = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto [applied, duplicates, dead] = RunCounts(run.out);
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(dead, 6);

  auto letters = testing::ReadTopic(broker_, prefix_ + ".dlq", 7, std::chrono::seconds(5));
  ASSERT_OK(letters);
  std::multiset<std::string> reasons;
  for (const auto& r : *letters) {
    std::string reason, stage;
    for (const auto& h : r.headers) {
      if (h.name == "rapport-dlq-reason") reason = h.value;
      if (h.name == "rapport-dlq-stage") stage = h.value;
    }
    reasons.insert(stage + ": " + reason);
  }
  std::multiset<std::string> expected = {
      "decode: not a rapport.v1.Envelope in protobuf binary (" + std::to_string(garbage.size()) +
          " bytes that do not parse)",
      "validate: review_submitted.rating: must be from 1 to 5, got 9",
      "validate: no event type; set exactly one of customer_registered, profile_updated, identity_linked, "
      "purchase_completed, refund_issued, review_submitted, service_rated, survey_answered, complaint_opened, "
      "complaint_resolved, interaction, loyalty_activity, campaign_touched, consent_changed",
      "key: the record has no key; the key must be the customer_id",
      "key: the record key \"c-2\" differs from customer_id \"c-1\"",
      "validate: recorded_at: required (set at ingest)",
  };
  EXPECT_EQ(reasons, expected);
}

// rapport prefetches more than librdkafka's default (queued.min.messages
// 300,000): a default, not a requirement, so the config may lower it (to save
// memory) and the result is the same; a value librdkafka refuses is named.
TEST_F(RunCommand, TheConfigMayChangeThePrefetchDefault) {
  const std::string examples = testing::SourceDir() + "/examples/events.jsonl";
  const std::string plain = Config("prefetch-default");
  ASSERT_EQ(Rapport(plain, {"publish", examples}).exit_code, 1);  // 16 sent, 5 rejected
  ASSERT_EQ(Rapport(plain, {"run", "--until-caught-up"}).exit_code, 0);

  const std::string lowered = Config("prefetch-lowered");
  std::ofstream(lowered, std::ios::app) << "[kafka.properties]\n\"queued.min.messages\" = \"1000\"\n";
  auto run = Rapport(lowered, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(RunCounts(run.out), (std::array<int64_t, 3>{16, 0, 0}));
  EXPECT_EQ(Digest(lowered), Digest(plain));

  const std::string wrong = Config("prefetch-wrong");
  std::ofstream(wrong, std::ios::app) << "[kafka.properties]\n\"queued.min.messages\" = \"lots\"\n";
  auto refused = Rapport(wrong, {"run", "--until-caught-up"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("queued.min.messages"), std::string::npos) << refused.err;
}

// A batch's partitions are applied on several threads: the state, the
// counts, the alerts and the dead letters are those of one thread.
TEST_F(RunCommand, ApplyingOnSeveralThreadsGivesWhatOneThreadGives) {
  const std::string one = Config("threads-1", "apply_threads = 1\n");
  auto simulated = Rapport(
      one, {"simulate", "--customers", "600", "--days", "120", "--seed", "32", "--invalid-rate", "0.02", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  auto serial = Rapport(one, {"--log-level", "debug", "run", "--until-caught-up"});
  ASSERT_EQ(serial.exit_code, 0) << serial.err;
  EXPECT_EQ(serial.err.find("on 2 threads"), std::string::npos) << "apply_threads = 1 keeps to one thread";
  auto alerts = testing::ReadTopicToEnd(broker_, prefix_ + ".alerts");
  ASSERT_OK(alerts);
  ASSERT_GT(alerts->size(), 0u) << "the simulation raises alerts";

  const std::string four = Config("threads-4", "apply_threads = 4\n");
  auto parallel = Rapport(four, {"--log-level", "debug", "run", "--until-caught-up"});
  ASSERT_EQ(parallel.exit_code, 0) << parallel.err;
  EXPECT_TRUE(std::regex_search(parallel.err, std::regex(R"(records of \d+ partitions on [234] threads)")))
      << "some batch was applied on several threads";
  EXPECT_EQ(RunCounts(parallel.out), RunCounts(serial.out));
  EXPECT_EQ(Digest(four), Digest(one));

  // Both runs sent to the same topics: every alert and dead letter twice.
  auto twice = [&](const std::string& topic, size_t once) {
    auto records = testing::ReadTopicToEnd(broker_, topic);
    ASSERT_OK(records);
    std::map<std::string, int> copies;
    for (const auto& r : *records) ++copies[r.key + "\n" + r.value];
    EXPECT_EQ(records->size(), 2 * once) << topic;
    for (const auto& [record, n] : copies) EXPECT_EQ(n, 2) << topic << ": " << record;
  };
  twice(prefix_ + ".alerts", alerts->size());
  twice(prefix_ + ".dlq", static_cast<size_t>(RunCounts(serial.out)[2]));
}

TEST_F(RunCommand, DuplicateEventIdsAreAppliedOnceAndRestartsResume) {
  const std::string config = Config("dedup");
  const std::string examples = testing::SourceDir() + "/examples/events.jsonl";
  ASSERT_EQ(Rapport(config, {"publish", examples}).exit_code, 1);  // 16 sent, 5 rejected
  auto first = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(RunCounts(first.out), (std::array<int64_t, 3>{16, 0, 0}));

  // The same file again: every event id was seen, and the store resumes
  // after what it applied, so nothing is applied twice.
  ASSERT_EQ(Rapport(config, {"publish", examples}).exit_code, 1);
  auto second = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(RunCounts(second.out), (std::array<int64_t, 3>{0, 16, 0}));
  // Nothing new: it stops at once without joining the group (closing a
  // consumer mid-join trips an assertion in librdkafka 2.0.2).
  auto third = Rapport(config, {"--log-level", "info", "run", "--until-caught-up"});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_EQ(RunCounts(third.out), (std::array<int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(third.err.find("as group"), std::string::npos) << third.err;

  auto profile = Rapport(config, {"query", "profile", "c-1001"});
  EXPECT_NE(profile.out.find("\"events\": 7"), std::string::npos) << profile.out;

  // A store folding both copies in one go ends in the same state.
  const std::string fresh = Config("dedup-fresh");
  auto once = Rapport(fresh, {"run", "--until-caught-up"});
  EXPECT_EQ(RunCounts(once.out), (std::array<int64_t, 3>{16, 16, 0}));
  EXPECT_EQ(Digest(fresh), Digest(config));
}

TEST_F(RunCommand, TheDeduplicationWindowForgetsTheOldestIdsAndSurvivesARestart) {
  const std::string topic = prefix_ + ".events";
  auto event = [](int n) {
    v1::Envelope e;
    EXPECT_FALSE(
        events::ParseEventJson(
            R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d0)" + std::to_string(n) +
                R"(","customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","recorded_at":"2026-04-21T10:00:01Z",)"
                R"("source":"web","channel":"CHANNEL_WEB","interaction":{"kind":"INTERACTION_KIND_CALL",)"
                R"("direction":"DIRECTION_INBOUND"}})",
            e)
            .has_value());
    return events::EncodeEvent(e);
  };
  for (int n = 1; n <= 4; ++n) ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", event(n)));
  // A window of two ids per partition; a batch per record, so that each id
  // is stored in an entry of its own and the older ones must be deleted.
  std::string config = Config("window", "dedup_window = 2\nmax_batch = 1\n");
  const std::string dir = dirs_.back();
  // The ids the store keeps for the window, in its runner family.
  auto stored_ids = [&] {
    auto store =
        projections::ProjectionStore::Open({.path = dir, .read_only = true}, {consumers::ProjectionRunner::kFamily});
    EXPECT_OK(store);
    if (!store.ok()) return size_t{0};
    std::unique_ptr<rocksdb::Iterator> it(
        (*store)->db()->NewIterator(rocksdb::ReadOptions(), (*store)->family(consumers::ProjectionRunner::kFamily)));
    size_t ids = 0;
    for (it->Seek("d"); it->Valid() && it->key().starts_with("d"); it->Next()) ids += it->value().size() / 16;
    return ids;
  };
  auto first = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(RunCounts(first.out), (std::array<int64_t, 3>{4, 0, 0}));
  EXPECT_EQ(stored_ids(), 2u) << "ids that left the window are deleted from the store";

  // After a restart: event 1 left the window long ago, event 4 is still in it.
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", event(1)));
  ASSERT_OK(testing::ProduceRaw(broker_, topic, "c-1", event(4)));
  auto second = Rapport(config, {"run", "--until-caught-up"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(RunCounts(second.out), (std::array<int64_t, 3>{1, 1, 0}));
  EXPECT_EQ(stored_ids(), 2u);
}

// Under a low open-file limit (a shell's 1,024 soft limit is raised to the
// hard one; here the hard one is 600 too), `run` says at start that the
// config may need more descriptors than it can have, and still runs.
TEST_F(RunCommand, SaysAtStartWhenTheOpenFileLimitIsBelowWhatTheConfigMayUse) {
  const std::string config = Config("fd");
  auto run = testing::RunProgram(
      {"sh", "-c", "ulimit -n 600 && exec \"$0\" --config \"$1\" run --until-caught-up --http 127.0.0.1:0",
       testing::RapportBinary(), config});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("the open-file limit is 600, and this config may use 2304 ([store] max_open_files 1024, "
                         "[api] max_connections 1024 and 256 more)"),
            std::string::npos)
      << run.err;
  auto roomy = Rapport(config, {"run", "--until-caught-up"});
  EXPECT_EQ(roomy.err.find("open-file limit"), std::string::npos) << roomy.err;
}

}  // namespace
}  // namespace rapport
