#include "rapport/cli/config.h"

#include <gtest/gtest.h>

#include "rapport/api/auth.h"
#include "rapport/testing/command.h"
#include "rapport/testing/status.h"

namespace rapport::cli {
namespace {

TEST(Config, DefaultsWithoutAFile) {
  auto config = LoadConfig(std::nullopt, {});
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(config->topics.events, "cx.events");
  EXPECT_EQ(config->topics.events_partitions, 12);
  EXPECT_EQ(config->topics.dead_letter, "cx.events.dlq");
  EXPECT_EQ(config->topics.alerts, "cx.alerts");
}

TEST(Config, TheShippedExampleLoadsAndSaysWhatItSays) {
  auto config = LoadConfig(testing::SourceDir() + "/examples/rapport.toml", {});
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(config->kafka.properties.at("client.id"), "rapport");
  EXPECT_EQ(config->publish.delivery_timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(config->publish.limits.max_event_bytes, 65536u);
  EXPECT_EQ(config->api.listen, "127.0.0.1:8080");
  EXPECT_EQ(config->api.max_in_flight, 256);
  EXPECT_EQ(config->api.max_connections, 1024);
  EXPECT_EQ(config->store.max_open_files, 1024);
  ASSERT_EQ(config->api.keys.size(), 1u);
  EXPECT_EQ(config->api.keys[0].name, "crm");
  EXPECT_EQ(config->api.keys[0].scopes, std::vector<api::Scope>{api::Scope::kRead});
}

TEST(Config, ApiKeysByHashOrByValueWithScopes) {
  auto config = ParseConfig(
      "[api]\nopen_reads_on_loopback = true\n"
      "[api.keys.etl]\nkey = \"a-long-enough-secret-key\"\nscopes = [\"ingest\", \"read\"]\n"
      "[api.keys.ops]\nkey_sha256 = \"" +
          api::Sha256Hex("another-long-secret") + "\"\nscopes = [\"admin\"]\n",
      "rapport.toml");
  ASSERT_OK(config);
  EXPECT_TRUE(config->api.open_reads_on_loopback);
  ASSERT_EQ(config->api.keys.size(), 2u);
  EXPECT_EQ(config->api.keys[0].name, "etl");
  std::array<uint8_t, 32> expected{};
  ASSERT_TRUE(api::ParseSha256Hex(api::Sha256Hex("a-long-enough-secret-key"), expected));
  EXPECT_EQ(config->api.keys[0].sha256, expected);  // only the hash is kept
  EXPECT_EQ(config->api.keys[0].scopes, (std::vector<api::Scope>{api::Scope::kIngest, api::Scope::kRead}));
  ASSERT_TRUE(api::ParseSha256Hex(api::Sha256Hex("another-long-secret"), expected));
  EXPECT_EQ(config->api.keys[1].sha256, expected);
}

TEST(Config, ApiErrorsNameTheLineAndKey) {
  auto error = [](const std::string& toml) { return std::string(ParseConfig(toml, "r.toml").status().message()); };
  EXPECT_EQ(error("[api]\nlisten = \"8080\"\n"),
            "r.toml:2: api.listen: \"8080\" is not HOST:PORT such as 127.0.0.1:8080 or [::1]:8080");
  EXPECT_EQ(error("[api]\nready_max_lag = -1\n"), "r.toml:2: api.ready_max_lag: must be 0 (fully caught up) or more");
  EXPECT_EQ(error("[api]\nopen_reads_on_loopback = \"yes\"\n"),
            "r.toml:2: api.open_reads_on_loopback: expected true or false");
  EXPECT_EQ(error("[api.keys.a]\nkey = \"short\"\nscopes = [\"read\"]\n"),
            "r.toml:2: api.keys.a.key: expected a string of at least 16 characters");
  EXPECT_EQ(error("[api.keys.a]\nkey_sha256 = \"abc\"\nscopes = [\"read\"]\n"),
            "r.toml:2: api.keys.a.key_sha256: expected 64 hex digits (the SHA-256 of the key: `rapport api-key`)");
  EXPECT_EQ(error("[api.keys.a]\nkey = \"0123456789abcdef\"\nscopes = [\"write\"]\n"),
            "r.toml:3: api.keys.a.scopes: a scope is \"read\", \"ingest\" or \"admin\"");
  EXPECT_EQ(error("[api.keys.a]\nscopes = [\"read\"]\n"), "r.toml:1: api.keys.a: needs key_sha256 (or key)");
  EXPECT_EQ(error("[api.keys.a]\nkey = \"0123456789abcdef\"\n"), "r.toml:1: api.keys.a: needs scopes, e.g. [\"read\"]");
  EXPECT_EQ(error("[api.keys.a]\nkey = \"0123456789abcdef\"\nscopes = [\"read\"]\nrole = 1\n"),
            "r.toml:4: api.keys.a.role: unknown key (a key has key_sha256 or key, and scopes)");
  EXPECT_EQ(error("[api]\nlistn = \"x\"\n"),
            "r.toml:2: api.listn: unknown key (see examples/rapport.toml for the keys there are)");
  EXPECT_EQ(error("[churn]\nperiod = \"month\"\n"),
            "r.toml:2: churn.period: \"month\" is neither \"day\" nor \"week\"");
  EXPECT_EQ(error("[churn]\nmonthly_discount_rate = \"1%\"\n"),
            "r.toml:2: churn.monthly_discount_rate: expected a number");
  EXPECT_EQ(error("[churn]\nmonthly_discount_rate = 1.5\n"),
            "r.toml:2: churn.monthly_discount_rate: 1.5 is not in [0, 1)");
  EXPECT_EQ(error("[churn]\nrefit_interval_s = -1\n"), "r.toml:2: churn.refit_interval_s: must be 0 (never) or more");
}

TEST(Config, ChurnModelSettingsAreRead) {
  auto config = ParseConfig(
      "[churn]\nperiod = \"week\"\nclv_months = 24\nmonthly_discount_rate = 0\n"
      "refit_interval_s = 0\nmin_spend_customers = 5\n",
      "r.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->churn.period, "week");
  EXPECT_EQ(config->churn.clv_months, 24);
  EXPECT_EQ(config->churn.monthly_discount_rate, 0.0);  // an integer where a number goes is fine
  EXPECT_EQ(config->churn.refit_interval_s, 0);
  EXPECT_EQ(config->churn.min_spend_customers, 5);
}

TEST(Config, KafkaPropertiesPassThroughWithDottedOrQuotedKeys) {
  auto config = ParseConfig(R"(
[kafka.properties]
"security.protocol" = "SASL_SSL"
sasl.mechanisms = "SCRAM-SHA-512"
"socket.keepalive.enable" = true
"message.max.bytes" = 2000000
)",
                            "test.toml");
  ASSERT_OK(config);
  std::map<std::string, std::string> expected = {{"security.protocol", "SASL_SSL"},
                                                 {"sasl.mechanisms", "SCRAM-SHA-512"},
                                                 {"socket.keepalive.enable", "true"},
                                                 {"message.max.bytes", "2000000"}};
  EXPECT_EQ(config->kafka.properties, expected);
}

TEST(Config, EnvironmentOverridesTheFile) {
  auto config = ParseConfig("[kafka]\nbrokers = \"kafka-1:9092\"\n", "test.toml");
  ASSERT_OK(config);
  EXPECT_EQ(config->kafka.brokers, "kafka-1:9092");
  auto overridden = LoadConfig(testing::SourceDir() + "/examples/rapport.toml",
                               {{"RAPPORT_BROKERS", "kafka-2:9092"}, {"RAPPORT_LOG_LEVEL", "debug"}});
  ASSERT_OK(overridden);
  EXPECT_EQ(overridden->kafka.brokers, "kafka-2:9092");
  EXPECT_EQ(overridden->log_level, "debug");
}

TEST(Config, ErrorsNameTheFileLineAndKey) {
  EXPECT_EQ(ParseConfig("[topics]\nevents_partitions = \"twelve\"\n", "rapport.toml").status().message(),
            "rapport.toml:2: topics.events_partitions: expected an integer");
  EXPECT_EQ(ParseConfig("[topics]\nevnts = \"x\"\n", "rapport.toml").status().message(),
            "rapport.toml:2: topics.evnts: unknown key (see examples/rapport.toml for the keys there are)");
  EXPECT_EQ(ParseConfig("[publish]\ndelivery_timeout_ms = 0\n", "rapport.toml").status().message(),
            "rapport.toml:2: publish.delivery_timeout_ms: must be greater than zero");
  EXPECT_EQ(ParseConfig("[run]\napply_threads = 0\n", "rapport.toml").status().message(),
            "rapport.toml:2: run.apply_threads: must be greater than zero");
  EXPECT_EQ(ParseConfig("[run]\napply_threads = 100000\n", "rapport.toml").status().message(),
            "rapport.toml:2: run.apply_threads: must be at most 256");
  EXPECT_EQ(ParseConfig("[run]\nstate_cache_bytes = -1\n", "rapport.toml").status().message(),
            "rapport.toml:2: run.state_cache_bytes: must not be negative");
  EXPECT_OK(ParseConfig("[run]\nstate_cache_bytes = 0\n", "rapport.toml"));
  EXPECT_EQ(ParseConfig("[run]\nstandby_replicas = -1\n", "rapport.toml").status().message(),
            "rapport.toml:2: run.standby_replicas: must not be negative");
  EXPECT_EQ(ParseConfig("[run]\nstandby_replicas = 17\n", "rapport.toml").status().message(),
            "rapport.toml:2: run.standby_replicas: must be at most 16 (copies of each partition)");
  EXPECT_EQ(ParseConfig("[run]\nstandby_replicas = 2\n", "rapport.toml")->run.standby_replicas, 2);
  EXPECT_EQ(ParseConfig("[kafka]\nbrokers = [\n", "rapport.toml").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(ParseConfig("[kafka\n", "rapport.toml").status().message())
                .rfind("rapport.toml:1: invalid TOML: ", 0),
            0u);
}

TEST(Config, MissingFileIsNotFound) {
  auto config = LoadConfig("/nonexistent/rapport.toml", {});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "cannot read config file /nonexistent/rapport.toml");
}

TEST(Config, TopicsAreKeptForeverButTheMembersTopicIsCompacted) {
  const TopicsConfig topics;
  for (const auto& spec : TopicSpecs(topics)) {
    if (spec.name == topics.members) {
      EXPECT_EQ(spec.configs.at("cleanup.policy"), "compact");
      EXPECT_EQ(spec.partitions, 1);
      continue;
    }
    EXPECT_EQ(spec.configs.at("retention.ms"), "-1") << spec.name;
    EXPECT_EQ(spec.configs.at("retention.bytes"), "-1") << spec.name;
  }
}

TEST(Config, AnAdvertisedUrlMustBeHttp) {
  auto config = ParseConfig("[api]\nadvertised_url = \"10.0.0.5:8080\"\n", "rapport.toml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(config.status().message()).find("api.advertised_url"), std::string::npos) << config.status();
  auto good = ParseConfig("[api]\nadvertised_url = \"http://10.0.0.5:8080\"\n", "rapport.toml");
  ASSERT_OK(good);
  EXPECT_EQ(good->api.advertised_url, "http://10.0.0.5:8080");
}

TEST(ApiKeyCommand, PrintsAKeyOnceAndTheConfigThatAdmitsIt) {
  auto made = testing::RunRapport({"api-key", "--name", "etl", "--scopes", "ingest,read"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // The output is itself valid config: the key in a comment, its hash in a table.
  auto config = ParseConfig(made.out, "api-key output");
  ASSERT_OK(config);
  ASSERT_EQ(config->api.keys.size(), 1u);
  EXPECT_EQ(config->api.keys[0].name, "etl");
  EXPECT_EQ(config->api.keys[0].scopes, (std::vector<api::Scope>{api::Scope::kIngest, api::Scope::kRead}));
  const std::string key = testing::Lines(made.out).at(1).substr(2);
  ASSERT_EQ(key.rfind("rk_", 0), 0u) << made.out;
  EXPECT_GE(key.size(), 40u);
  std::array<uint8_t, 32> hash{};
  ASSERT_TRUE(api::ParseSha256Hex(api::Sha256Hex(key), hash));
  EXPECT_EQ(config->api.keys[0].sha256, hash);
  EXPECT_NE(testing::RunRapport({"api-key"}).out, testing::RunRapport({"api-key"}).out);  // random each time
  EXPECT_EQ(testing::RunRapport({"api-key", "--scopes", "write"}).exit_code, 2);
}

}  // namespace
}  // namespace rapport::cli
