// Several `rapport run` processes in one group against the real broker, each
// with its own store and API: every instance answers for every customer
// exactly as a single instance over the same log does (forwarding what
// another instance applies), gathers segment counts from every instance,
// says which partitions a read of every customer it does not gather yet
// lacks rather than answer it in part, and after kill -9 of one instance the
// other answers its customers again once the group has moved its partitions,
// with a 503 meanwhile, never a wrong 404.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

struct Reply {
  int status = 0;
  Json data;  // the answer without its freshness (which differs between stores)
  std::string error, message;
  std::string served_by;  // Rapport-Served-By: the instance that answered, when another did
  bool operator==(const Reply& other) const { return status == other.status && data == other.data; }
};
void PrintTo(const Reply& reply, std::ostream* out) {
  *out << reply.status << " " << (reply.error.empty() ? reply.data.dump().substr(0, 120) : reply.error);
}

class Cluster : public ::testing::Test {
 protected:
  static constexpr char kKey[] = "rk_cluster-test-key-0123456789abcdefghijklmnop";
  void SetUp() override {
    ASSERT_OK(testing::CheckBrokerAnswers(broker_));
    prefix_ = testing::UniqueTopicName("it.cluster");
    ASSERT_OK(kafka::EnsureTopics(broker_, {{prefix_ + ".events", 4, -1, {}},
                                            {prefix_ + ".dlq", 1, -1, {}},
                                            {prefix_ + ".alerts", 2, -1, {}},
                                            {prefix_ + ".members", 1, -1, {{"cleanup.policy", "compact"}}}}));
  }
  void TearDown() override {
    for (const auto& [name, instance] : instances_) {
      if (instance.pid > 0) testing::KillAndWait(instance.pid, SIGTERM);
      std::filesystem::remove_all(instance.dir);
    }
  }

  struct Instance {
    int pid = -1;
    int port = 0;
    std::string config, dir, log;
    std::string key;  // its API key, when it has one (reads are then open to no one else)
  };
  // `group` shared by the instances that form one platform.
  // `members`: the members topic's name after the prefix.
  // `refit_s`: [churn] refit_interval_s (0: no models). `keyed`: reads need
  // an API key, from this host too.
  // `run`: more [run] settings.
  Instance& Start(const std::string& name, const std::string& group, const std::string& members = ".members",
                  int refit_s = 0, bool keyed = false, const std::string& run = "") {
    Instance& instance = instances_[name];
    instance.port = testing::FreePort();
    instance.dir = ::testing::TempDir() + prefix_ + "." + name;
    instance.log = instance.dir + ".log";
    std::filesystem::remove_all(instance.dir);
    instance.config = testing::WriteTestConfig(
        broker_, prefix_ + "." + name,
        "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" + prefix_ + ".dlq\"\nalerts = \"" + prefix_ +
            ".alerts\"\nmembers = \"" + prefix_ + members + "\"\nevents_partitions = 4\n[run]\ngroup_id = \"" +
            prefix_ + "." + group + "\"\ninstance_id = \"" + name + "\"\n" + run + "[store]\ndata_dir = \"" +
            instance.dir + "\"\n[api]\nlisten = \"127.0.0.1:" + std::to_string(instance.port) +
            "\"\nopen_reads_on_loopback = " + (keyed ? "false" : "true") + "\n" +
            (keyed ? "[api.keys.test]\nkey = \"" + std::string(kKey) + "\"\nscopes = [\"read\"]\n" : "") +
            "[churn]\nrefit_interval_s = " + std::to_string(refit_s) + "\n[log]\nlevel = \"info\"\n");
    if (keyed) instance.key = kKey;
    instance.pid = testing::StartRapport({"--config", instance.config, "run"}, instance.log);
    return instance;
  }

  // `forwarded_by`: as if another instance of the group asked. `freshness`:
  // where to put the answer's freshness.
  static Reply Get(const Instance& instance, const std::string& target, const std::string& forwarded_by = "",
                   Json* freshness = nullptr) {
    httplib::Client client("127.0.0.1", instance.port);
    client.set_read_timeout(10, 0);
    Reply reply;
    httplib::Headers headers;
    if (!forwarded_by.empty()) headers.emplace("Rapport-Forwarded-By", forwarded_by);
    if (!instance.key.empty()) headers.emplace("Authorization", "Bearer " + instance.key);
    auto result = client.Get(target, headers);
    if (!result) return reply;
    reply.status = result->status;
    reply.served_by = result->get_header_value("Rapport-Served-By");
    Json body = Json::parse(result->body, nullptr, /*allow_exceptions=*/false);
    if (body.is_object() && body.contains("data")) reply.data = body["data"];
    if (freshness != nullptr && body.is_object() && body.contains("freshness")) *freshness = body["freshness"];
    if (body.is_object() && body.contains("error")) {
      reply.error = body["error"]["code"];
      reply.message = body["error"]["message"];
    }
    return reply;
  }
  // Waits (up to 60 s) until `done` holds.
  static bool WaitFor(const std::function<bool()>& done) {
    for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until;) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return done();
  }
  // Every partition applied to the log's end by `instances` together, as
  // each instance's /v1/cluster says.
  bool Settled(const Instance& asked, size_t instances) {
    Reply cluster = Get(asked, "/v1/cluster");
    if (cluster.status != 200) return false;
    size_t live = 0;
    for (const auto& instance : cluster.data["instances"]) live += instance["live"].get<bool>() ? 1 : 0;
    if (live != instances) return false;
    for (const auto& partition : cluster.data["partitions"]) {
      if (partition["owner"].is_null() || partition.value("by_standby", false) || partition["lag_records"] != 0) {
        return false;
      }
    }
    return cluster.data["partitions"].size() == 4;
  }
  // What `asked` answers for each customer, into `answers`; false if any
  // was not a 200 or a 404.
  bool AnswersOf(const Instance& asked, std::map<std::string, Reply>& answers) const {
    for (const std::string& id : Customers()) {
      answers[id] = Get(asked, "/v1/customers/" + id);
      if (answers[id].status != 200 && answers[id].status != 404) return false;
    }
    return true;
  }
  std::vector<std::string> Customers() const {
    std::vector<std::string> ids;
    for (int n = 0; n < 60; ++n) ids.push_back(fmt::format("c-{:07d}", n));  // a few beyond the simulation: 404s
    return ids;
  }

  // a, then (once the simulated log is published) b and c, with `replicas`
  // standbys each; waits until every partition b owns has a caught-up
  // standby on each of `standbys`, then stores what a answers for each
  // customer in `before`.
  void StartThreeWithStandbys(int replicas, const std::set<std::string>& standbys,
                              std::map<std::string, Reply>& before) {
    const std::string run = fmt::format("standby_replicas = {}\n", replicas);
    Instance& a = Start("a", "platform", ".members", 0, false, run);
    auto simulated = testing::RunRapport(
        {"--config", a.config, "simulate", "--customers", "50", "--days", "120", "--seed", "8", "--publish"});
    ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
    Instance& b = Start("b", "platform", ".members", 0, false, run);
    Instance& c = Start("c", "platform", ".members", 0, false, run);
    auto warm = [&] {
      if (!Settled(a, 3) || !Settled(b, 3) || !Settled(c, 3)) return false;
      Reply cluster = Get(a, "/v1/cluster");
      std::map<std::string, std::set<int>> standby;
      std::set<int> owned_by_b;
      for (const auto& instance : cluster.data["instances"]) {
        for (const auto& p : instance["standby"]) standby[instance["instance_id"]].insert(p["partition"].get<int>());
        if (instance["instance_id"] == "b") {
          for (const auto& p : instance["owned"]) owned_by_b.insert(p["partition"].get<int>());
        }
      }
      if (owned_by_b.empty()) return false;
      for (int p : owned_by_b) {
        for (const std::string& name : standbys) {
          if (!standby[name].contains(p)) return false;
        }
      }
      return true;
    };
    ASSERT_TRUE(WaitFor(warm)) << Get(a, "/v1/cluster").data.dump() << testing::ReadFile(a.log);
    ASSERT_TRUE(WaitFor([&] { return AnswersOf(a, before); })) << testing::ReadFile(a.log);
  }
  // After b's kill -9: every customer asked of each of `askers` until all
  // are answered (and, `until_moved`, until a and c have taken b's
  // partitions over), each answer the same as `before`, never a wrong 404.
  struct ReadsAfterKill {
    std::optional<double> all_answered_after;  // s from the kill
    std::map<std::string, int> by_standby;     // answers a standby gave, by who served them ("" here)
    // Whether the instance asked still heard b as live just after the first
    // answer a standby gave: the read went to the standby because b did not
    // answer, not because the directory had given b up.
    std::optional<bool> b_live_at_first_standby_answer;
  };
  ReadsAfterKill KillBAndRead(const std::vector<const Instance*>& askers, const std::map<std::string, Reply>& before,
                              bool until_moved) {
    Instance& b = instances_.at("b");
    testing::KillAndWait(b.pid, SIGKILL);
    b.pid = -1;
    const auto killed = Clock::now();
    ReadsAfterKill reads;
    while (Clock::now() - killed < std::chrono::seconds(60)) {
      bool all = true;
      for (const std::string& id : Customers()) {
        for (const Instance* asked : askers) {
          Json freshness = Json::object();
          const Reply now = Get(*asked, "/v1/customers/" + id, "", &freshness);
          if (now.status == 503) {
            all = false;
            EXPECT_TRUE(now.error == "partition_unavailable" || now.error == "partition_moved" ||
                        now.error == "partition_catching_up")
                << id << " " << now.error;
            continue;
          }
          EXPECT_EQ(now, before.at(id)) << id << " from a standby: " << freshness.value("standby", false);
          if (!freshness.value("standby", false)) continue;
          ++reads.by_standby[now.served_by];
          if (!reads.b_live_at_first_standby_answer) {
            const Reply cluster = Get(*asked, "/v1/cluster");
            for (const auto& instance : cluster.data["instances"]) {
              if (instance["instance_id"] == "b") reads.b_live_at_first_standby_answer = instance["live"].get<bool>();
            }
          }
        }
      }
      if (all && !reads.all_answered_after) {
        reads.all_answered_after = std::chrono::duration<double>(Clock::now() - killed).count();
      }
      if (all && (!until_moved || (Settled(instances_.at("a"), 2) && Settled(instances_.at("c"), 2)))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return reads;
  }

  kafka::KafkaSettings broker_ = testing::TestBroker();
  std::string prefix_;
  std::map<std::string, Instance> instances_;
};

TEST_F(Cluster, TwoInstancesAnswerForEveryCustomerAsOneInstanceDoes) {
  auto simulated = testing::RunRapport({"--config", Start("single", "single").config, "simulate", "--customers", "50",
                                        "--days", "120", "--seed", "7", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  Instance& single = instances_["single"];
  Instance& a = Start("a", "platform");
  Instance& b = Start("b", "platform");
  ASSERT_TRUE(WaitFor([&] { return Settled(single, 1); })) << testing::ReadFile(single.log);
  ASSERT_TRUE(WaitFor([&] { return Settled(a, 2) && Settled(b, 2); })) << testing::ReadFile(a.log);
  // Their records on the members topic trail the group by a moment.
  ASSERT_TRUE(WaitFor([&] {
    for (const std::string& id : Customers()) {
      if (Get(a, "/v1/customers/" + id).status == 503 || Get(b, "/v1/customers/" + id).status == 503) return false;
    }
    return true;
  }));

  // Each instance applies some partitions, and answers for all customers.
  Reply cluster = Get(a, "/v1/cluster");
  for (const auto& instance : cluster.data["instances"]) {
    EXPECT_FALSE(instance["owned"].empty()) << cluster.data.dump();
  }
  size_t found = 0;
  for (const std::string& id : Customers()) {
    // (The churn models are not fitted here, refit_interval_s = 0: the
    // churn view is its RFM figures, scored on every partition's histograms.)
    for (const std::string view : {"", "/reviews", "/churn?as_of=2026-06-01"}) {
      const std::string target = "/v1/customers/" + id + view;
      const Reply expected = Get(single, target);
      ASSERT_TRUE(expected.status == 200 || expected.status == 404) << target;
      found += expected.status == 200;
      EXPECT_EQ(Get(a, target), expected) << target << " on a";
      EXPECT_EQ(Get(b, target), expected) << target << " on b";
    }
    const std::string lookup = "/v1/customers/lookup?email=" + id + "@mail.example";
    const Reply expected = Get(single, lookup);
    EXPECT_EQ(Get(a, lookup), expected) << lookup << " on a";
    EXPECT_EQ(Get(b, lookup), expected) << lookup << " on b";
  }
  EXPECT_GE(found, 135u) << "most of the customers asked exist";

  // Reads of every customer are gathered from every instance (counts
  // summed, pages merged, R, F and M on every partition's histograms): each
  // answers as the single instance does, page by page. ("now" differs by
  // the ms: every read names a time.)
  std::string category, subject;
  for (const std::string& id : Customers()) {
    const Reply profile = Get(single, "/v1/customers/" + id);
    if (category.empty() && profile.status == 200 && !profile.data["spend_by_category"].empty()) {
      category = profile.data["spend_by_category"].begin().key();
    }
    const Reply reviews = Get(single, "/v1/customers/" + id + "/reviews");
    if (subject.empty() && reviews.status == 200 && !reviews.data["reviews"].empty()) {
      const auto& review = reviews.data["reviews"][0];
      std::string type = review["subject_type"].get<std::string>().substr(std::string("SUBJECT_TYPE_").size());
      std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
      subject = "/v1/subjects/" + type + "/" + review["subject_id"].get<std::string>() + "/reviews";
    }
  }
  ASSERT_FALSE(category.empty());
  ASSERT_FALSE(subject.empty());
  std::set<std::string> segments;
  for (const std::string as_of : {"2025-12-31", "2026-06-01"}) {
    const Reply expected = Get(single, "/v1/segments?as_of=" + as_of);
    ASSERT_EQ(expected.status, 200);
    for (const auto& [name, count] : expected.data["segments"].items()) segments.insert(name);
    for (const std::string& target :
         std::vector<std::string>{"/v1/segments", "/v1/insights/pareto", "/v1/churn/at-risk", subject}) {
      for (const std::string extra : {"", "&limit=3", "&currency=EUR&limit=2"}) {
        const std::string asked = target + "?as_of=" + as_of + extra;
        const Reply one = Get(single, asked);
        ASSERT_EQ(one.status, 200) << asked << " " << one.message;
        EXPECT_EQ(Get(a, asked), one) << asked << " on a";
        EXPECT_EQ(Get(b, asked), one) << asked << " on b";
      }
    }
  }
  // Paged reads: every page, by the cursors each instance gives.
  size_t pages = 0;
  auto same_pages = [&](const std::string& first) {
    std::string target = first;
    for (int page = 0; page < 100; ++page) {
      ++pages;
      const Reply expected = Get(single, target);
      ASSERT_EQ(expected.status, 200) << target << " " << expected.message;
      EXPECT_EQ(Get(a, target), expected) << target << " on a";
      EXPECT_EQ(Get(b, target), expected) << target << " on b";
      if (!expected.data.contains("next_cursor") || expected.data["next_cursor"].is_null()) return;
      target = first + "&cursor=" + expected.data["next_cursor"].get<std::string>();
    }
    ADD_FAILURE() << first << " has more than 100 pages";
  };
  same_pages("/v1/customers?category=" + category + "&limit=2");
  same_pages(subject + "/items?limit=2");
  for (const std::string& name : segments) {
    std::string path = name;
    std::replace(path.begin(), path.end(), ' ', '-');
    same_pages("/v1/segments/" + path + "/customers?as_of=2026-06-01&limit=3");
  }
  EXPECT_GE(pages, 20u) << "the reads span pages, so cursors cross instances";
  EXPECT_EQ(Get(a, "/readyz").status, 200);
  EXPECT_EQ(Get(b, "/readyz").status, 200);

  // `rapport cluster status` says the same, joining nothing.
  auto status = testing::RunRapport({"--config", a.config, "cluster", "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  Json listed = Json::parse(status.out);
  std::set<int> owned;
  for (const auto& instance : listed["instances"]) {
    EXPECT_TRUE(instance["live"].get<bool>()) << status.out;
    for (const auto& p : instance["owned"]) EXPECT_TRUE(owned.insert(p["partition"].get<int>()).second) << status.out;
  }
  EXPECT_EQ(listed["instances"].size(), 2u) << "the single instance's group is another platform";
  EXPECT_EQ(owned, (std::set<int>{0, 1, 2, 3})) << "each partition applied by exactly one instance";

  // The route between instances, asked wrongly.
  int32_t mine = -1, theirs = -1;
  const Reply now = Get(a, "/v1/cluster");  // (kept: a range-for over a temporary's member would dangle)
  for (const auto& partition : now.data["partitions"]) {
    (partition["owner"] == "a" ? mine : theirs) = partition["partition"].get<int32_t>();
  }
  ASSERT_TRUE(mine >= 0 && theirs >= 0) << now.data.dump();
  const std::string histograms = "/v1/internal/churn/histograms?partitions=";
  EXPECT_EQ(Get(a, histograms + std::to_string(mine)).status, 404) << "only another instance asks it";
  EXPECT_EQ(Get(a, histograms + std::to_string(mine), "b").status, 200);
  EXPECT_EQ(Get(a, histograms + std::to_string(mine) + "," + std::to_string(mine), "b").status, 200);
  for (const std::string bad : {"abc", "", "1,,2", "-1", "99999999999", "4", "2147483647"}) {
    const Reply answer = Get(a, histograms + bad, "b");
    EXPECT_EQ(answer.status, 400) << bad << ": " << answer.message;
  }
  EXPECT_NE(Get(a, histograms + "4", "b").message.find("partition 4 does not exist"), std::string::npos);
  // The fit inputs' route, asked wrongly by another instance: what is wrong, named.
  const std::string inputs = "/v1/internal/churn/fit-inputs?partitions=" + std::to_string(mine);
  EXPECT_EQ(Get(a, inputs + "&as_of_ms=1&period=day", "b").status, 200);
  for (const std::string bad : {"&as_of_ms=abc&period=day", "&as_of_ms=99999999999999999999&period=day", "&period=day",
                                "&as_of_ms=1&period=month", "&as_of_ms=1"}) {
    const Reply answer = Get(a, inputs + bad, "b");
    EXPECT_EQ(answer.status, 400) << bad << ": " << answer.message;
  }
  EXPECT_EQ(Get(a, inputs + "&as_of_ms=1&period=day").status, 404) << "only another instance asks it";
  EXPECT_EQ(Get(a, "/v1/internal/churn/fit-inputs?partitions=" + std::to_string(theirs) + "&as_of_ms=1&period=day", "b")
                .error,
            "partition_moved");
  const Reply moved = Get(a, histograms + std::to_string(theirs), "b");
  EXPECT_EQ(moved.status, 503);
  EXPECT_EQ(moved.error, "partition_moved");
  EXPECT_EQ(Get(a, "/v1/segments?as_of=2026-06-01&partitions=" + std::to_string(theirs), "b").error, "partition_moved");
  // A read forwarded to the wrong instance is never forwarded again.
  for (const std::string& id : Customers()) {
    const Reply answer = Get(a, "/v1/customers/" + id, "b");
    EXPECT_TRUE(answer.status == 200 || answer.status == 404 || answer.error == "partition_moved")
        << id << " " << answer.status << " " << answer.error;
  }

  // Read-your-writes for a read of every customer: an event for a new
  // customer, then segments with ?after= its position on either instance
  // count it, whichever applies its partition (each waits for its own).
  const Reply counted = Get(a, "/v1/segments?as_of=2026-06-01");
  auto published = testing::RunRapport(
      {"--config", a.config, "publish", "-v"},
      R"({"customer_id":"c-written-now","occurred_at":"2026-03-14T18:42:07Z","source":"pos/store-042",)"
      R"("channel":"CHANNEL_STORE","purchase_completed":{"order_id":"o-1","total":{"currency":"EUR",)"
      R"("amount":"57.30"}}})"
      "\n");
  ASSERT_EQ(published.exit_code, 0) << published.err;
  std::smatch position;
  ASSERT_TRUE(std::regex_search(published.out, position, std::regex(R"(partition (\d+) offset (\d+))")))
      << published.out;
  for (const Instance* asked : {&a, &b}) {
    const Reply after =
        Get(*asked, "/v1/segments?as_of=2026-06-01&after=" + position[1].str() + ":" + position[2].str());
    ASSERT_EQ(after.status, 200) << after.message;
    EXPECT_EQ(after.data["customers"], counted.data["customers"].get<int64_t>() + 1);
  }

  // A group with no instance running: every partition unowned, exit 1.
  const std::string nobody = testing::WriteTestConfig(broker_, prefix_ + ".nobody",
                                                      "[topics]\nmembers = \"" + prefix_ +
                                                          ".members\"\nevents_partitions = 4\n[run]\n"
                                                          "group_id = \"" +
                                                          prefix_ + ".nobody\"\n");
  auto empty = testing::RunRapport({"--config", nobody, "cluster", "status"});
  EXPECT_EQ(empty.exit_code, 1) << empty.out << empty.err;
  EXPECT_NE(empty.out.find("no live instance applies partitions 0, 1, 2, 3"), std::string::npos) << empty.out;
}

// Without a members topic an instance runs alone and says why; /v1/cluster
// lists it with what it applies.
TEST_F(Cluster, WithoutAMembersTopicAnInstanceAnswersAloneAndSaysWhy) {
  Instance& alone = Start("alone", "alone", ".no-such-members");
  ASSERT_TRUE(WaitFor([&] { return Get(alone, "/readyz").status == 200; })) << testing::ReadFile(alone.log);
  const Reply cluster = Get(alone, "/v1/cluster");
  ASSERT_EQ(cluster.status, 200);
  ASSERT_EQ(cluster.data["instances"].size(), 1u) << cluster.data.dump();
  EXPECT_EQ(cluster.data["instances"][0]["owned"].size(), 4u) << cluster.data.dump();
  EXPECT_TRUE(cluster.data["unowned_partitions"].empty());
  EXPECT_NE(testing::ReadFile(alone.log).find(prefix_ + ".no-such-members does not exist"), std::string::npos)
      << testing::ReadFile(alone.log);
}

// The churn models are fitted once, over every partition, by the instance
// applying partition 0, and stored by the others: p_alive, lifetime value
// and value at risk are a single instance's.
TEST_F(Cluster, TheChurnModelsAreFittedOverEveryPartitionAndSharedAsOneInstanceFitsThem) {
  auto simulated = testing::RunRapport({"--config", Start("single", "single", ".members", 1).config, "simulate",
                                        "--customers", "200", "--days", "120", "--seed", "9", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  Instance& single = instances_["single"];
  // With API keys: the fit's requests between instances carry no caller's
  // key, only the token each instance publishes.
  Instance& a = Start("a", "platform", ".members", 1, /*keyed=*/true);
  Instance& b = Start("b", "platform", ".members", 1, /*keyed=*/true);
  ASSERT_TRUE(WaitFor([&] { return Settled(single, 1) && Settled(a, 2) && Settled(b, 2); }))
      << testing::ReadFile(a.log);
  // One of a and b fits; the other stores what it publishes.
  auto has_models = [&](const Instance& instance) {
    const std::string log = testing::ReadFile(instance.log);
    return log.find("churn models refitted") != std::string::npos ||
           log.find("(which fits them over every partition) stored") != std::string::npos;
  };
  ASSERT_TRUE(WaitFor([&] { return has_models(single) && has_models(a) && has_models(b); }))
      << testing::ReadFile(a.log) << testing::ReadFile(b.log);
  // (The first to start applied every partition, and so fitted, alone for a moment.)
  EXPECT_TRUE(WaitFor([&] {
    return (testing::ReadFile(a.log) + testing::ReadFile(b.log))
               .find("(which fits them over every partition) stored") != std::string::npos;
  })) << "the instance without partition 0 stores the other's models";
  size_t with_model = 0;
  for (const std::string& id : Customers()) {
    const std::string target = "/v1/customers/" + id + "/churn?as_of=2026-06-01";
    const Reply expected = Get(single, target);
    with_model += expected.status == 200 && expected.data.contains("p_alive");
    EXPECT_EQ(Get(a, target), expected) << target << " on a";
    EXPECT_EQ(Get(b, target), expected) << target << " on b";
  }
  EXPECT_GE(with_model, 20u) << "the customers' figures come from the models";
  for (const std::string target :
       {"/v1/churn/at-risk?as_of=2026-06-01&limit=20", "/v1/segments/champions/customers?as_of=2026-06-01&limit=20"}) {
    const Reply expected = Get(single, target);
    ASSERT_EQ(expected.status, 200) << target;
    EXPECT_EQ(Get(a, target), expected) << target << " on a";
    EXPECT_EQ(Get(b, target), expected) << target << " on b";
  }
  // Only another instance, with the token it publishes, asks for fit inputs.
  const std::string fit_inputs = "/v1/internal/churn/fit-inputs?as_of_ms=1&period=day&partitions=";
  EXPECT_EQ(Get(a, fit_inputs + "0").status, 404);
  Instance stranger = a;
  stranger.key.clear();
  EXPECT_EQ(Get(stranger, fit_inputs + "0", "b").status, 401) << "no key, no token";
  httplib::Client client("127.0.0.1", a.port);
  auto forged = client.Get(fit_inputs + "0", {{"Rapport-Forwarded-By", "b"}, {"Rapport-Instance-Token", "guess"}});
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 401) << "a token b did not publish";
}

TEST_F(Cluster, AKilledInstancesCustomersAreAnsweredAgainOnceTheGroupMovesThem) {
  Instance& a = Start("a", "platform");
  auto simulated = testing::RunRapport(
      {"--config", a.config, "simulate", "--customers", "50", "--days", "120", "--seed", "8", "--publish"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  Instance& b = Start("b", "platform");
  ASSERT_TRUE(WaitFor([&] { return Settled(a, 2) && Settled(b, 2); })) << testing::ReadFile(a.log);
  // What a answers for each customer once both instances have settled
  // (their records on the members topic trail the group by a moment).
  std::map<std::string, Reply> before;
  ASSERT_TRUE(WaitFor([&] { return AnswersOf(a, before); })) << testing::ReadFile(a.log);

  testing::KillAndWait(b.pid, SIGKILL);
  b.pid = -1;
  const auto killed = Clock::now();
  // Until the group gives b's partitions to a (the session timeout), and
  // while a catches up on them (it applied them before b came), a read of
  // their customers is a 503 that says so, never a wrong 404.
  bool all_answered = false;
  while (!all_answered && Clock::now() - killed < std::chrono::seconds(60)) {
    all_answered = true;
    for (const std::string& id : Customers()) {
      const Reply now = Get(a, "/v1/customers/" + id);
      if (now.status == 503) {
        all_answered = false;
        EXPECT_TRUE(now.error == "partition_unavailable" || now.error == "partition_moved" ||
                    now.error == "partition_catching_up")
            << id << " " << now.error;
        continue;
      }
      EXPECT_EQ(now, before[id]) << id;
    }
    if (!all_answered) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(all_answered) << testing::ReadFile(a.log);
  const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  std::cout << "every customer answered again " << seconds << " s after kill -9\n";
  // (a's own record, saying it applies them all, reaches its directory a
  // moment after its runner took them.)
  EXPECT_TRUE(WaitFor([&] { return Settled(a, 1); })) << Get(a, "/v1/cluster").data.dump();
}

// With standbys of every partition on both other instances
// ([run] standby_replicas = 2), the customers of a killed instance are
// answered by a standby at once, the same as before, while the group has not
// yet moved its partitions; then the instances the group gives them to go
// on from their standby copies.
TEST_F(Cluster, WithStandbysAKilledInstancesCustomersAreAnsweredByAStandbyUntilTheGroupMovesThem) {
  std::map<std::string, Reply> before;
  ASSERT_NO_FATAL_FAILURE(StartThreeWithStandbys(2, {"a", "c"}, before));
  Instance& a = instances_.at("a");
  Instance& c = instances_.at("c");
  const ReadsAfterKill reads = KillBAndRead({&a, &c}, before, /*until_moved=*/true);
  ASSERT_TRUE(reads.all_answered_after) << testing::ReadFile(a.log);
  int by_standby = 0;
  for (const auto& [who, count] : reads.by_standby) by_standby += count;
  std::cout << "every customer answered again " << *reads.all_answered_after << " s after kill -9 (" << by_standby
            << " answers by a standby)\n";
  EXPECT_GT(by_standby, 0) << "b's customers were answered by a standby before the group moved its partitions";
  EXPECT_TRUE(WaitFor([&] { return Settled(a, 2) && Settled(c, 2); })) << Get(a, "/v1/cluster").data.dump();
  // b's partitions went on where a standby copy stood, on whichever
  // instance the group gave them to.
  const std::string logs = testing::ReadFile(a.log) + testing::ReadFile(c.log);
  EXPECT_NE(logs.find("where this store's state for it stands as its standby"), std::string::npos) << logs;
}

// With one standby of each partition, b's is c (the next instance after b):
// a, asked for b's customers right after the kill, finds b not answering and
// forwards each read to c's standby copy.
TEST_F(Cluster, WithOneStandbyAReadTheDeadOwnerDoesNotAnswerIsForwardedToTheStandbyOnAnotherInstance) {
  std::map<std::string, Reply> before;
  ASSERT_NO_FATAL_FAILURE(StartThreeWithStandbys(1, {"c"}, before));
  Instance& a = instances_.at("a");
  const ReadsAfterKill reads = KillBAndRead({&a}, before, /*until_moved=*/false);
  ASSERT_TRUE(reads.all_answered_after) << testing::ReadFile(a.log);
  std::cout << "every customer answered again " << *reads.all_answered_after << " s after kill -9\n";
  EXPECT_GT(reads.by_standby.count("c") ? reads.by_standby.at("c") : 0, 0)
      << "a stands by none of b's partitions: c's standby answered them";
  EXPECT_FALSE(reads.by_standby.contains("")) << "a has no standby copy of b's partitions to answer from";
  EXPECT_EQ(reads.b_live_at_first_standby_answer, true)
      << "the first reads went to c because b did not answer, before a's directory gave b up";
}

}  // namespace
}  // namespace rapport
