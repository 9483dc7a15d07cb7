#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rapport/api/auth.h"
#include "rapport/base/status.h"
#include "rapport/events/admission.h"
#include "rapport/kafka/client.h"
#include "rapport/kafka/topics.h"

namespace rapport::cli {

struct TopicsConfig {
  std::string events = "cx.events";
  int32_t events_partitions = 12;
  std::string dead_letter = "cx.events.dlq";
  int32_t dead_letter_partitions = 3;
  std::string alerts = "cx.alerts";
  int32_t alerts_partitions = 12;
  // Compacted: each running instance's record (cluster/membership.h).
  std::string members = "cx.members";
  int16_t replication_factor = -1;  // the cluster's default
};

struct PublishConfig {
  std::chrono::milliseconds delivery_timeout{30000};
  events::AdmissionLimits limits;
};

struct StoreConfig {
  std::string data_dir = ".run/data";        // RocksDB directory of the projections
  int64_t block_cache_bytes = 256ll << 20;   // shared by every projection
  int64_t write_buffer_bytes = 128ll << 20;  // charged to the block cache
  int64_t max_open_files = 1024;             // RocksDB table files kept open
};

struct RunConfig {
  std::string group_id = "rapport";
  // Static group membership id; empty: "rapport-<host>-<hash of data_dir>",
  // so a restarted process takes its partitions back at once.
  std::string instance_id;
  int64_t max_batch = 5000;
  int64_t batch_wait_ms = 50;
  int64_t dedup_window = 100000;            // event ids remembered per partition
  int64_t apply_threads = 0;                // threads applying a batch, by partition; 0 (unset): one per core
  int64_t state_cache_bytes = 256ll << 20;  // projection state kept in memory across batches
  // Warm copies of each partition kept by this many other instances (needs
  // the members topic): reads of a dead instance's customers are answered
  // by a standby at once, and a standby the group gives the partition to
  // resumes where it stands. 0: none.
  int64_t standby_replicas = 0;
};

// The lifetime-value models (`rapport churn fit`, and `rapport run`'s refits).
struct ChurnConfig {
  std::string period = "day";  // "day" or "week": the unit of frequency, recency and age
  int64_t clv_months = 12;     // the CLV horizon
  double monthly_discount_rate = 0.01;
  int64_t refit_interval_s = 3600;   // `rapport run` refits this often once caught up; 0: never
  int64_t min_spend_customers = 20;  // repeat customers a currency needs for its own spend model
};

// The HTTP API that `rapport run` serves (see api/openapi.json).
struct ApiConfig {
  std::string listen;  // "HOST:PORT"; empty: no API (unless `run --http`)
  // Where other instances reach this one's API, e.g. "http://10.0.0.5:8080";
  // empty: http://LISTEN, with the host's name for a wildcard address.
  std::string advertised_url;
  int64_t io_threads = 2;
  int64_t workers = 8;  // handler threads: reads waiting on ?after= and ingest occupy one each
  int64_t max_body_bytes = 1 << 20;
  int64_t max_header_bytes = 16 << 10;
  int64_t request_timeout_ms = 30000;
  int64_t max_in_flight = 256;
  int64_t max_connections = 1024;
  int64_t consistency_wait_ms = 5000;
  int64_t ready_max_lag = 1000;
  int64_t max_batch_events = 1000;
  bool open_reads_on_loopback = false;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::vector<api::ApiKey> keys;  // [api.keys.NAME] key_sha256 (or key) and scopes
};

// "HOST:PORT" or "[IPv6]:PORT" into its parts; InvalidArgument naming `what`.
Status ParseListenAddress(const std::string& text, std::string& host, uint16_t& port, std::string_view what);

// Everything the rapport binary is configured with. Sources, later ones
// winning: built-in defaults, the TOML file, RAPPORT_* environment variables,
// command-line flags (applied by the caller).
struct Config {
  kafka::KafkaSettings kafka;
  TopicsConfig topics;
  PublishConfig publish;
  StoreConfig store;
  RunConfig run;
  ApiConfig api;
  ChurnConfig churn;
  std::string log_level = "info";
  std::optional<std::filesystem::path> file;  // where it was read from, if anywhere
};

// The environment variables that override the file (name -> value).
using Environment = std::map<std::string, std::string>;

// The process environment's RAPPORT_* variables.
Environment ProcessEnvironment();

// Loads the config: `file` when given, else $RAPPORT_CONFIG, else
// ./rapport.toml when it exists, else the defaults; then the environment
// (RAPPORT_BROKERS, RAPPORT_LOG_LEVEL). Errors name the file, line and key:
// "rapport.toml:7: topics.events_partitions: expected an integer".
// Unknown keys are errors too, so a typo never silently falls back to a default.
Result<Config> LoadConfig(const std::optional<std::filesystem::path>& file, const Environment& env);

// Parses TOML text (for tests and for LoadConfig); `origin` names it in errors.
Result<Config> ParseConfig(std::string_view toml, std::string_view origin);

// The topics `rapport topics ensure` creates: events, dead letters and alerts,
// all kept forever (the log is the source of truth).
std::vector<kafka::TopicSpec> TopicSpecs(const TopicsConfig& topics);

}  // namespace rapport::cli
