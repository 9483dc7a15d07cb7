// `rapport replay` against the real broker: the whole log gives the same
// digests as live consumption; --until gives the state of exactly the events
// up to that time; an interrupted (or killed) replay resumes to the same
// state; a replay sends no alerts and no dead letters.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "nlohmann/json.hpp"
#include "rapport/events/time_text.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

class Replay : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.replay");
  }
  void TearDown() override {
    for (const auto& dir : dirs_) std::filesystem::remove_all(dir);
  }
  // A config reading `events`, with its own store directory `name`.
  std::string Config(const std::string& events, const std::string& name, const std::string& extra = "") {
    EXPECT_OK(kafka::EnsureTopics(
                  broker_, {{events, 4, -1, {}}, {prefix_ + ".dlq", 1, -1, {}}, {prefix_ + ".alerts", 1, -1, {}}})
                  .status());
    std::string dir = Dir(name);
    return testing::WriteTestConfig(broker_, prefix_ + "." + name,
                                    "[topics]\nevents = \"" + events + "\"\ndead_letter = \"" + prefix_ +
                                        ".dlq\"\nalerts = \"" + prefix_ + ".alerts\"\nevents_partitions = 4\n" +
                                        "[run]\ngroup_id = \"" + prefix_ + "." + name + "\"\n" + extra +
                                        "[store]\ndata_dir = \"" + dir + "\"\n[log]\nlevel = \"warn\"\n");
  }
  std::string Dir(const std::string& name) {
    std::string dir = ::testing::TempDir() + prefix_ + "." + name;
    dirs_.push_back(dir);
    return dir;
  }
  testing::CommandResult Rapport(const std::string& config, std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    return testing::RunRapport(args);
  }
  std::string Digest(const std::string& config, const std::string& dir = "") {
    std::vector<std::string> args = {"digest"};
    if (!dir.empty()) args = {"digest", "--data-dir", dir};
    auto result = Rapport(config, args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  }
  // The records on `topic`, read to its end. (Not its end offsets: the
  // outbox relay sends in transactions, whose commit markers take offsets
  // too and reach the log a moment after the commit returns.)
  int64_t Records(const std::string& topic) {
    auto records = testing::ReadTopicToEnd(broker_, topic, std::chrono::seconds(30));
    EXPECT_OK(records);
    return records.ok() ? static_cast<int64_t>(records->size()) : -1;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::vector<std::string> dirs_;
};

TEST_F(Replay, TheWholeLogGivesTheLiveDigestsAndSendsNothing) {
  const std::string live = Config(prefix_ + ".events", "live");
  auto simulated = Rapport(
      live, {"simulate", "--customers", "300", "--days", "120", "--seed", "11", "--invalid-rate", "0.02", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  auto run = Rapport(live, {"run", "--until-caught-up"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const int64_t alerts = Records(prefix_ + ".alerts"), dead = Records(prefix_ + ".dlq");
  ASSERT_GT(alerts, 0);
  ASSERT_GT(dead, 0);

  const std::string into = Dir("replayed");
  auto replay = Rapport(live, {"replay", "--into", into});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("query it with `rapport query --data-dir " + into + "`"), std::string::npos) << replay.out;
  EXPECT_EQ(Digest(live, into), Digest(live));
  EXPECT_EQ(Records(prefix_ + ".alerts"), alerts) << "a replay re-sent alerts";
  EXPECT_EQ(Records(prefix_ + ".dlq"), dead) << "a replay re-sent dead letters";
  // Queryable like any store.
  auto segments = Rapport(live, {"query", "--data-dir", into, "segments"});
  EXPECT_EQ(segments.exit_code, 0) << segments.err;

  // Servable: `run --read-only` answers from the directory, with no broker
  // involved and nothing to ingest into.
  const std::string port = std::to_string(19000 + getpid() % 1000);
  const std::string log = into + ".serve.log";
  int server = testing::StartRapport({"--config", live, "--brokers", "127.0.0.1:1", "run", "--read-only", "--data-dir",
                                      into, "--http", "127.0.0.1:" + port},
                                     log);
  auto curl = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"curl",
                                     "-s",
                                     "-o",
                                     "/dev/null",
                                     "-w",
                                     "%{http_code}",
                                     "--retry",
                                     "20",
                                     "--retry-connrefused",
                                     "--retry-delay",
                                     "0",
                                     "--retry-max-time",
                                     "10"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunProgram(argv).out;
  };
  EXPECT_EQ(curl({"http://127.0.0.1:" + port + "/readyz"}), "200") << testing::ReadFile(log);
  EXPECT_EQ(curl({"-H", "X-API-Key: none", "http://127.0.0.1:" + port + "/v1/segments"}), "401");
  testing::KillAndWait(server, SIGTERM);

  // One projection: only its state is built.
  const std::string only_churn = Dir("churn-only");
  ASSERT_EQ(Rapport(live, {"replay", "--projection", "churn", "--into", only_churn}).exit_code, 0);
  auto digests = testing::Lines(Digest(live, only_churn));
  auto live_digests = testing::Lines(Digest(live));
  ASSERT_EQ(digests.size(), 3u);
  EXPECT_EQ(digests[2], live_digests[2]);  // churn
  EXPECT_NE(digests[0], live_digests[0]);  // customer_profile: empty
  // The same directory with other arguments is refused rather than mixed.
  auto mixed = Rapport(live, {"replay", "--projection", "reviews", "--into", only_churn});
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_NE(mixed.err.find("holds another replay"), std::string::npos) << mixed.err;
  auto unknown = Rapport(live, {"replay", "--projection", "loyalty", "--into", Dir("unknown")});
  EXPECT_EQ(unknown.exit_code, 2);
}

TEST_F(Replay, UntilAndFromTimeGiveTheStateOfExactlyTheEventsInTheirWindow) {
  // The same simulated stream: all of it on one topic, only what occurred
  // before March on another.
  const std::string file = ::testing::TempDir() + prefix_ + ".jsonl";
  const std::string all = Config(prefix_ + ".all", "all");
  ASSERT_EQ(Rapport(all, {"simulate", "--customers", "300", "--days", "120", "--seed", "12", "--out", file}).exit_code,
            0);
  std::string before, after;
  size_t kept = 0, total = 0;
  for (const auto& line : testing::Lines(testing::ReadFile(file))) {
    ++total;
    size_t at = line.find("\"occurred_at\":\"") + 15;
    if (line.compare(at, 10, "2025-03-01") < 0) {
      before += line + "\n";
      ++kept;
    } else {
      after += line + "\n";
    }
  }
  std::filesystem::remove(file);
  ASSERT_GT(kept, 100u);
  ASSERT_LT(kept, total);

  const std::string early = Config(prefix_ + ".early", "early");
  ASSERT_EQ(testing::RunRapport({"--config", early, "publish", "-"}, before).exit_code, 0);
  ASSERT_EQ(Rapport(early, {"run", "--until-caught-up"}).exit_code, 0);

  auto regenerated = Rapport(all, {"simulate", "--customers", "300", "--days", "120", "--seed", "12", "--publish"});
  ASSERT_EQ(regenerated.exit_code, 0) << regenerated.err;
  const std::string into = Dir("until");
  auto replay = Rapport(all, {"replay", "--into", into, "--until", "2025-03-01"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find(std::to_string(kept) + " events applied"), std::string::npos) << replay.out;
  EXPECT_EQ(Digest(all, into), Digest(early));

  // --from-time: exactly the events from that time on.
  const std::string late = Config(prefix_ + ".late", "late");
  ASSERT_EQ(testing::RunRapport({"--config", late, "publish", "-"}, after).exit_code, 0);
  ASSERT_EQ(Rapport(late, {"run", "--until-caught-up"}).exit_code, 0);
  const std::string from = Dir("from");
  auto replay_from = Rapport(all, {"replay", "--into", from, "--from-time", "2025-03-01"});
  ASSERT_EQ(replay_from.exit_code, 0) << replay_from.err;
  EXPECT_NE(replay_from.out.find(std::to_string(total - kept) + " events applied"), std::string::npos)
      << replay_from.out;
  EXPECT_EQ(Digest(all, from), Digest(late));

  // A window that ends before it starts, and the live store itself, are refused.
  auto backwards =
      Rapport(all, {"replay", "--into", Dir("backwards"), "--from-time", "2025-03-01", "--until", "2025-02-01"});
  EXPECT_EQ(backwards.exit_code, 2);
  EXPECT_NE(backwards.err.find("--until must be later than --from-time"), std::string::npos) << backwards.err;
  auto into_live = Rapport(early, {"replay", "--into", Dir("early")});
  EXPECT_EQ(into_live.exit_code, 2);
  EXPECT_NE(into_live.err.find("is the store of `rapport run`, not a replay"), std::string::npos) << into_live.err;
}

// A partition is not in time order: an order-history import is sorted by
// customer, a producer re-sends a batch, an offline till syncs late. "As of
// T" (--until) is every event that occurred before T and "known at T"
// (--known-at) every event recorded before T, wherever they sit in the log;
// each equals a fold of a log holding only those events, in the same order.
TEST_F(Replay, UntilKnownAtAndFromTimeAreExactOnACustomerOrderedLogSentTwice) {
  const std::string file = ::testing::TempDir() + prefix_ + ".shuffled.jsonl";
  const std::string all = Config(prefix_ + ".all", "all");
  ASSERT_EQ(Rapport(all, {"simulate", "--customers", "300", "--days", "120", "--seed", "13", "--out", file}).exit_code,
            0);
  const absl::Time t = absl::FromUnixSeconds(1740787200);  // 2025-03-01
  struct Line {
    std::string customer, json;
    absl::Time occurred, recorded;
  };
  std::vector<Line> lines;
  for (const auto& text : testing::Lines(testing::ReadFile(file))) {
    nlohmann::json event = nlohmann::json::parse(text);
    Line line{event["customer_id"], "", *events::ParseDateOrTime(event["occurred_at"].get<std::string>()), {}};
    // Every other customer's events reached the log 45 days late (an import).
    line.recorded = line.occurred + absl::Hours(line.customer.back() % 2 == 1 ? 45 * 24 : 0) + absl::Seconds(2);
    event["recorded_at"] = events::FormatTime(line.recorded);
    line.json = event.dump();
    lines.push_back(std::move(line));
  }
  std::filesystem::remove(file);
  std::stable_sort(lines.begin(), lines.end(), [](const Line& a, const Line& b) { return a.customer < b.customer; });
  auto log_of = [&](const std::function<bool(const Line&)>& keep) {
    std::string text;
    for (int copy = 0; copy < 2; ++copy) {  // the whole import, sent twice
      for (const auto& line : lines) {
        if (keep(line)) text += line.json + "\n";
      }
    }
    return text;
  };
  auto count = [&](const std::function<bool(const Line&)>& keep) {
    return static_cast<size_t>(std::count_if(lines.begin(), lines.end(), keep));
  };
  auto occurred_before = [&](const Line& l) { return l.occurred < t; };
  auto recorded_before = [&](const Line& l) { return l.recorded < t; };
  auto occurred_from = [&](const Line& l) { return l.occurred >= t; };
  ASSERT_GT(count(occurred_before), 1000u);
  ASSERT_LT(count(recorded_before), count(occurred_before));
  ASSERT_GT(count(occurred_from), 1000u);

  ASSERT_EQ(testing::RunRapport({"--config", all, "publish", "-"}, log_of([](const Line&) { return true; })).exit_code,
            0);
  // The digest of a replay of only the events `keep` selects.
  auto reference = [&](const std::string& name, const std::function<bool(const Line&)>& keep) {
    const std::string config = Config(prefix_ + "." + name, name);
    EXPECT_EQ(testing::RunRapport({"--config", config, "publish", "-"}, log_of(keep)).exit_code, 0);
    const std::string into = Dir(name + ".replayed");
    auto replayed = Rapport(config, {"replay", "--into", into});
    EXPECT_EQ(replayed.exit_code, 0) << replayed.err;
    return Digest(config, into);
  };
  // `seeks`: the window starts with offsets-for-times, so records before
  // the start are not read at all (fewer outside the window than not applied).
  auto replay = [&](const std::string& name, const std::vector<std::string>& window, size_t applied,
                    bool seeks = false) {
    const std::string into = Dir(name);
    std::vector<std::string> args = {"replay", "--into", into};
    args.insert(args.end(), window.begin(), window.end());
    auto replayed = Rapport(all, args);
    EXPECT_EQ(replayed.exit_code, 0) << replayed.err;
    std::smatch counts;
    EXPECT_TRUE(
        std::regex_search(replayed.out, counts,
                          std::regex(R"((\d+) events applied \((\d+) duplicates skipped, 0 invalid, (\d+) outside)")))
        << replayed.out;
    if (!counts.empty()) {
      EXPECT_EQ(std::stoull(counts[1]), applied) << replayed.out;
      EXPECT_EQ(std::stoull(counts[2]), applied) << replayed.out;
      const size_t not_applied = 2 * (lines.size() - applied);
      if (seeks) {
        EXPECT_LT(std::stoull(counts[3]), not_applied) << "the start was not found by seeking\n" << replayed.out;
      } else {
        EXPECT_EQ(std::stoull(counts[3]), not_applied) << replayed.out;
      }
    }
    return Digest(all, into);
  };
  EXPECT_EQ(replay("until", {"--until", "2025-03-01"}, count(occurred_before)),
            reference("occurred-before", occurred_before));
  EXPECT_EQ(replay("known", {"--known-at", "2025-03-01"}, count(recorded_before)),
            reference("recorded-before", recorded_before));
  EXPECT_EQ(replay("from", {"--from-time", "2025-03-01"}, count(occurred_from), /*seeks=*/true),
            reference("occurred-from", occurred_from));

  // export: the same windows over the same log (it does not de-duplicate).
  auto exported = [&](const std::vector<std::string>& window) {
    std::vector<std::string> args = {"export"};
    args.insert(args.end(), window.begin(), window.end());
    auto result = Rapport(all, args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return testing::Lines(result.out).size();
  };
  EXPECT_EQ(exported({"--until", "2025-03-01"}), 2 * count(occurred_before));
  EXPECT_EQ(exported({"--known-at", "2025-03-01"}), 2 * count(recorded_before));
  EXPECT_EQ(exported({"--since", "2025-03-01"}), 2 * count(occurred_from));
}

TEST_F(Replay, AnInterruptedOrKilledReplayResumesToTheSameState) {
  // About 170k events: a replay of a couple of seconds, stopped after 0.4 s.
  const std::string config = Config(prefix_ + ".events", "source");
  ASSERT_EQ(
      Rapport(config, {"simulate", "--customers", "8000", "--days", "365", "--seed", "13", "--publish"}).exit_code, 0);
  const std::string whole = Dir("whole");
  ASSERT_EQ(Rapport(config, {"replay", "--into", whole}).exit_code, 0);

  const std::string resumed = Dir("resumed");
  const std::string log = resumed + ".log";
  // Ctrl-C: a clean stop, exit 130, then the same command finishes the job.
  int pid = testing::StartRapport({"--config", config, "replay", "--into", resumed}, log);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  int status = testing::KillAndWait(pid, SIGINT);
  ASSERT_TRUE(WIFEXITED(status)) << testing::ReadFile(log);
  EXPECT_EQ(WEXITSTATUS(status), 130) << "finished before the interrupt; make the log larger\n"
                                      << testing::ReadFile(log);
  EXPECT_NE(testing::ReadFile(log).find("run the same command to resume"), std::string::npos);
  // SIGKILL: no chance to clean up at all.
  pid = testing::StartRapport({"--config", config, "replay", "--into", resumed}, log);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  testing::KillAndWait(pid, SIGKILL);
  auto finished = Rapport(config, {"replay", "--into", resumed});
  ASSERT_EQ(finished.exit_code, 0) << finished.err;
  EXPECT_EQ(Digest(config, resumed), Digest(config, whole));
}

}  // namespace
}  // namespace rapport
