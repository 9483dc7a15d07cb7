#include "api_instance.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "rapport/api/auth.h"
#include "rapport/kafka/topics.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"

namespace rapport::testing {

ApiInstance::ApiInstance(const std::string& name, const std::string& extra_api_toml, int consistency_wait_ms,
                         int batch_wait_ms)
    : broker_(TestBroker()) {
  prefix_ = UniqueTopicName("it.api." + name);
  dir_ = ::testing::TempDir() + prefix_;
  log_ = dir_ + ".log";
  port_ = FreePort();
  // Keys are stored as their SHA-256 (the recommended form) except the
  // admin key, stored as itself, so both forms are exercised.
  config_ = WriteTestConfig(
      broker_, prefix_,
      "[topics]\nevents = \"" + prefix_ + ".events\"\ndead_letter = \"" + prefix_ + ".dlq\"\nalerts = \"" + prefix_ +
          ".alerts\"\nevents_partitions = 4\n[run]\ngroup_id = \"" + prefix_ +
          "\"\nbatch_wait_ms = " + std::to_string(batch_wait_ms) + "\n" + "[store]\ndata_dir = \"" + dir_ +
          "\"\n[log]\nlevel = \"info\"\n[api]\nconsistency_wait_ms = " + std::to_string(consistency_wait_ms) + "\n" +
          "max_body_bytes = 65536\nmax_header_bytes = 4096\n" + extra_api_toml + "[api.keys.reader]\nkey_sha256 = \"" +
          api::Sha256Hex(ApiKeys::kRead) + "\"\nscopes = [\"read\"]\n" + "[api.keys.ingester]\nkey_sha256 = \"" +
          api::Sha256Hex(ApiKeys::kIngest) + "\"\nscopes = [\"read\", \"ingest\"]\n" + "[api.keys.operator]\nkey = \"" +
          ApiKeys::kAdmin + "\"\nscopes = [\"admin\"]\n");
}

ApiInstance::~ApiInstance() {
  if (pid_ > 0) Stop();
  std::filesystem::remove_all(dir_);
}

bool ApiInstance::Prepare() {
  auto ensured = kafka::EnsureTopics(
      broker_, {{prefix_ + ".events", 4, -1, {}}, {prefix_ + ".dlq", 1, -1, {}}, {prefix_ + ".alerts", 1, -1, {}}});
  EXPECT_TRUE(ensured.ok()) << ensured.status();
  if (!ensured.ok()) return false;
  auto published = RunRapport({"--config", config_, "publish", SourceDir() + "/examples/events.jsonl"});
  EXPECT_EQ(published.exit_code, 1) << published.err;  // the examples hold 5 invalid lines on purpose
  return published.exit_code == 1;
}

bool ApiInstance::Start() {
  if (!Prepare()) return false;
  pid_ = StartRapport({"--config", config_, "run", "--http", "127.0.0.1:" + std::to_string(port_)}, log_);
  // Ready: serving, and every published event applied.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto ready = Client().Get("/readyz");
    if (ready && ready->status == 200) {
      auto segments = Get("/v1/segments");
      if (segments && segments->status == 200 && JsonOf(segments)["freshness"]["lag_records"] == 0 &&
          JsonOf(segments)["data"]["customers"].get<int>() >= 3) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "the API did not become ready; log:\n" << ReadFile(log_);
  return false;
}

int ApiInstance::Stop() {
  int status = KillAndWait(pid_, SIGTERM);
  pid_ = -1;
  return status;
}

httplib::Client ApiInstance::Client() const {
  httplib::Client client("127.0.0.1", port_);
  client.set_keep_alive(true);
  client.set_read_timeout(std::chrono::seconds(20));
  return client;
}

httplib::Result ApiInstance::Get(const std::string& path, const char* key) const {
  httplib::Headers headers;
  if (key != nullptr) headers.emplace("Authorization", std::string("Bearer ") + key);
  return Client().Get(path, headers);
}

httplib::Result ApiInstance::Post(const std::string& path, const std::string& body, const char* key,
                                  const std::string& content_type) const {
  httplib::Headers headers;
  if (key != nullptr) headers.emplace("X-API-Key", key);
  return Client().Post(path, headers, body, content_type);
}

nlohmann::json JsonOf(const httplib::Result& result) {
  if (!result) {
    ADD_FAILURE() << "no response: " << httplib::to_string(result.error());
    return nullptr;
  }
  auto parsed = nlohmann::json::parse(result->body, nullptr, false);
  if (parsed.is_discarded()) ADD_FAILURE() << "not JSON: " << result->body;
  return parsed.is_discarded() ? nlohmann::json() : parsed;
}

}  // namespace rapport::testing
