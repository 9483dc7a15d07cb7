// A running `rapport run --http` against the real broker, on topics of its
// own, loaded with examples/events.jsonl, and an HTTP client for it.
#pragma once

#include <httplib.h>

#include <string>

#include "nlohmann/json.hpp"
#include "rapport/kafka/client.h"
#include "rapport/testing/command.h"

namespace rapport::testing {

struct ApiKeys {
  static constexpr const char* kRead = "read-key-000000000000000001";
  static constexpr const char* kIngest = "ingest-key-0000000000000001";
  static constexpr const char* kAdmin = "admin-key-00000000000000001";
};

class ApiInstance {
 public:
  // `extra_api_toml` is appended inside [api] (e.g. "max_in_flight = 4\n");
  // reads with ?after= wait at most `consistency_wait_ms`; a poll of the
  // events topic waits at most `batch_wait_ms` for a first record.
  explicit ApiInstance(const std::string& name, const std::string& extra_api_toml = "", int consistency_wait_ms = 1500,
                       int batch_wait_ms = 10);
  ~ApiInstance();

  // Creates the topics and publishes the examples; false (with a test
  // failure) if either fails.
  bool Prepare();
  // Prepare, then start the server and wait until it has applied everything.
  bool Start();
  // Stops the server with SIGTERM; returns its wait status.
  int Stop();

  int port() const { return port_; }
  const std::string& config() const { return config_; }
  const std::string& log_path() const { return log_; }
  std::string events_topic() const { return prefix_ + ".events"; }

  // A new client (keep-alive on) for this instance.
  httplib::Client Client() const;
  httplib::Result Get(const std::string& path, const char* key = ApiKeys::kRead) const;
  httplib::Result Post(const std::string& path, const std::string& body, const char* key = ApiKeys::kIngest,
                       const std::string& content_type = "application/json") const;

 private:
  kafka::KafkaSettings broker_;
  std::string prefix_;
  std::string dir_;
  std::string config_;
  std::string log_;
  int port_ = 0;
  int pid_ = -1;
};

// The body as JSON (a test failure and null if it is not JSON).
nlohmann::json JsonOf(const httplib::Result& result);

}  // namespace rapport::testing
