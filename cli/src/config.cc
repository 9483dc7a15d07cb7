#include "rapport/cli/config.h"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "fmt/format.h"
#include "toml++/toml.h"

extern char** environ;

namespace rapport::cli {
namespace {

// Reads typed values out of a parsed TOML table, naming the file, line and key
// in every error, and remembers which keys were understood.
class TableReader {
 public:
  TableReader(const toml::table& root, std::string_view origin) : root_(root), origin_(origin) {}

  template <typename T>
  Status Read(std::string_view key, T& out) {
    const toml::node* node = root_.at_path(key).node();
    known_.insert(std::string(key));
    if (node == nullptr) return absl::OkStatus();
    if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node->value<bool>(); v && node->is_boolean()) {
        out = *v;
        return absl::OkStatus();
      }
      return Error(*node, key, "expected true or false");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = node->value<std::string>()) {
        out = *v;
        return absl::OkStatus();
      }
      return Error(*node, key, "expected a string");
    } else if constexpr (std::is_same_v<T, double>) {
      if (auto v = node->value<double>(); v && (node->is_floating_point() || node->is_integer())) {
        out = *v;
        return absl::OkStatus();
      }
      return Error(*node, key, "expected a number");
    } else {
      auto v = node->value<int64_t>();
      if (!node->is_integer() || !v) return Error(*node, key, "expected an integer");
      if (*v < std::numeric_limits<T>::min() || *v > std::numeric_limits<T>::max()) {
        return Error(*node, key, fmt::format("{} is out of range", *v));
      }
      out = static_cast<T>(*v);
      return absl::OkStatus();
    }
  }

  Status ReadPositive(std::string_view key, int64_t& out, int64_t at_most = INT64_MAX) {
    RETURN_IF_ERROR(Read(key, out));
    const toml::node* node = root_.at_path(key).node();
    if (node != nullptr && out <= 0) return Error(*node, key, "must be greater than zero");
    if (node != nullptr && out > at_most) return Error(*node, key, fmt::format("must be at most {}", at_most));
    return absl::OkStatus();
  }

  Status ReadNonNegative(std::string_view key, int64_t& out) {
    RETURN_IF_ERROR(Read(key, out));
    const toml::node* node = root_.at_path(key).node();
    if (node != nullptr && out < 0) return Error(*node, key, "must not be negative");
    return absl::OkStatus();
  }

  // Flattens a table of librdkafka properties: nested tables join with '.',
  // so `security.protocol = "SSL"` and `"security.protocol" = "SSL"` both work.
  Status ReadProperties(std::string_view key, std::map<std::string, std::string>& out) {
    known_.insert(std::string(key));
    const toml::node* node = root_.at_path(key).node();
    if (node == nullptr) return absl::OkStatus();
    if (!node->is_table()) return Error(*node, key, "expected a table of librdkafka properties");
    return Flatten(*node->as_table(), "", key, out);
  }

  // [api.keys.NAME] tables: each a key (its SHA-256, or the key itself) and scopes.
  Status ReadApiKeys(std::string_view key, std::vector<api::ApiKey>& out) {
    known_.insert(std::string(key));
    const toml::node* node = root_.at_path(key).node();
    if (node == nullptr) return absl::OkStatus();
    if (!node->is_table()) return Error(*node, key, "expected a table of keys, one [api.keys.NAME] per key");
    for (const auto& [name, value] : *node->as_table()) {
      const std::string path = fmt::format("{}.{}", key, name.str());
      const toml::table* table = value.as_table();
      if (table == nullptr) return Error(value, path, "expected a table with key_sha256 (or key) and scopes");
      api::ApiKey parsed;
      parsed.name = std::string(name.str());
      bool have_key = false;
      for (const auto& [field, v] : *table) {
        const std::string field_path = fmt::format("{}.{}", path, field.str());
        if (field == "key_sha256") {
          auto hex = v.value<std::string>();
          if (!hex || !api::ParseSha256Hex(*hex, parsed.sha256)) {
            return Error(v, field_path, "expected 64 hex digits (the SHA-256 of the key: `rapport api-key`)");
          }
          have_key = true;
        } else if (field == "key") {
          auto text = v.value<std::string>();
          if (!text || text->size() < 16) return Error(v, field_path, "expected a string of at least 16 characters");
          api::ParseSha256Hex(api::Sha256Hex(*text), parsed.sha256);
          have_key = true;
        } else if (field == "scopes") {
          const toml::array* scopes = v.as_array();
          if (scopes == nullptr || scopes->empty()) {
            return Error(v, field_path, "expected a list such as [\"read\", \"ingest\"]");
          }
          for (const auto& scope : *scopes) {
            auto text = scope.value<std::string>();
            if (text && *text == "read") {
              parsed.scopes.push_back(api::Scope::kRead);
            } else if (text && *text == "ingest") {
              parsed.scopes.push_back(api::Scope::kIngest);
            } else if (text && *text == "admin") {
              parsed.scopes.push_back(api::Scope::kAdmin);
            } else {
              return Error(scope, field_path, "a scope is \"read\", \"ingest\" or \"admin\"");
            }
          }
        } else {
          return Error(v, field_path, "unknown key (a key has key_sha256 or key, and scopes)");
        }
      }
      if (!have_key) return Error(value, path, "needs key_sha256 (or key)");
      if (parsed.scopes.empty()) return Error(value, path, "needs scopes, e.g. [\"read\"]");
      out.push_back(std::move(parsed));
    }
    return absl::OkStatus();
  }

  // "origin:line" of a key present in the file.
  std::string Where(std::string_view key) const {
    const toml::node* node = root_.at_path(key).node();
    return node == nullptr ? origin_ : fmt::format("{}:{}", origin_, node->source().begin.line);
  }

  // Every key in the file that no Read asked for: a typo, most likely.
  Status CheckNoUnknownKeys() const { return CheckTable(root_, ""); }

 private:
  Status Error(const toml::node& node, std::string_view key, std::string_view reason) const {
    return absl::InvalidArgumentError(fmt::format("{}:{}: {}: {}", origin_, node.source().begin.line, key, reason));
  }

  Status Flatten(const toml::table& table, const std::string& prefix, std::string_view key,
                 std::map<std::string, std::string>& out) {
    for (const auto& [name, value] : table) {
      std::string property = prefix.empty() ? std::string(name.str()) : fmt::format("{}.{}", prefix, name.str());
      if (const auto* nested = value.as_table()) {
        RETURN_IF_ERROR(Flatten(*nested, property, key, out));
      } else if (auto s = value.value<std::string>(); s && value.is_string()) {
        out[property] = *s;
      } else if (value.is_integer() || value.is_boolean()) {
        std::ostringstream text;
        if (value.is_boolean()) {
          text << (*value.value<bool>() ? "true" : "false");
        } else {
          text << *value.value<int64_t>();
        }
        out[property] = text.str();
      } else {
        return Error(value, fmt::format("{}.{}", key, property), "expected a string, integer or boolean");
      }
    }
    return absl::OkStatus();
  }

  Status CheckTable(const toml::table& table, const std::string& prefix) const {
    for (const auto& [name, value] : table) {
      std::string path = prefix.empty() ? std::string(name.str()) : fmt::format("{}.{}", prefix, name.str());
      if (known_.contains(path)) continue;
      if (const auto* nested = value.as_table()) {
        bool is_section = false;
        for (const auto& k : known_) is_section |= k.rfind(path + ".", 0) == 0;
        if (is_section) {
          RETURN_IF_ERROR(CheckTable(*nested, path));
          continue;
        }
      }
      return Error(value, path, "unknown key (see examples/rapport.toml for the keys there are)");
    }
    return absl::OkStatus();
  }

  const toml::table& root_;
  std::string origin_;
  std::set<std::string> known_;
};

void ApplyEnvironment(const Environment& env, Config& config) {
  if (auto it = env.find("RAPPORT_BROKERS"); it != env.end() && !it->second.empty()) {
    config.kafka.brokers = it->second;
  }
  if (auto it = env.find("RAPPORT_DATA_DIR"); it != env.end() && !it->second.empty()) {
    config.store.data_dir = it->second;
  }
  if (auto it = env.find("RAPPORT_LOG_LEVEL"); it != env.end() && !it->second.empty()) {
    config.log_level = it->second;
  }
}

}  // namespace

Environment ProcessEnvironment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (text.rfind("RAPPORT_", 0) != 0) continue;
    size_t eq = text.find('=');
    if (eq != std::string_view::npos) env[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  }
  return env;
}

Result<Config> ParseConfig(std::string_view text, std::string_view origin) {
  toml::table root;
  try {  // toml++ reports syntax errors by exception; they stop here
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(
        fmt::format("{}:{}: invalid TOML: {}", origin, error.source().begin.line, error.description()));
  }
  TableReader r(root, origin);
  Config c;
  int64_t kafka_timeout_ms = c.kafka.timeout.count();
  RETURN_IF_ERROR(r.Read("kafka.brokers", c.kafka.brokers));
  RETURN_IF_ERROR(r.ReadPositive("kafka.timeout_ms", kafka_timeout_ms));
  RETURN_IF_ERROR(r.ReadProperties("kafka.properties", c.kafka.properties));
  c.kafka.timeout = std::chrono::milliseconds(kafka_timeout_ms);

  RETURN_IF_ERROR(r.Read("topics.events", c.topics.events));
  RETURN_IF_ERROR(r.Read("topics.events_partitions", c.topics.events_partitions));
  RETURN_IF_ERROR(r.Read("topics.dead_letter", c.topics.dead_letter));
  RETURN_IF_ERROR(r.Read("topics.dead_letter_partitions", c.topics.dead_letter_partitions));
  RETURN_IF_ERROR(r.Read("topics.alerts", c.topics.alerts));
  RETURN_IF_ERROR(r.Read("topics.alerts_partitions", c.topics.alerts_partitions));
  RETURN_IF_ERROR(r.Read("topics.members", c.topics.members));
  RETURN_IF_ERROR(r.Read("topics.replication_factor", c.topics.replication_factor));

  int64_t delivery_timeout_ms = c.publish.delivery_timeout.count();
  int64_t max_event_bytes = static_cast<int64_t>(c.publish.limits.max_event_bytes);
  int64_t max_line_bytes = static_cast<int64_t>(c.publish.limits.max_json_bytes);
  int64_t max_future_skew_s = absl::ToInt64Seconds(c.publish.limits.max_future_skew);
  RETURN_IF_ERROR(r.ReadPositive("publish.delivery_timeout_ms", delivery_timeout_ms));
  RETURN_IF_ERROR(r.ReadPositive("publish.max_event_bytes", max_event_bytes));
  RETURN_IF_ERROR(r.ReadPositive("publish.max_line_bytes", max_line_bytes));
  RETURN_IF_ERROR(r.ReadPositive("publish.max_future_skew_s", max_future_skew_s));
  c.publish.delivery_timeout = std::chrono::milliseconds(delivery_timeout_ms);
  c.publish.limits.max_event_bytes = static_cast<size_t>(max_event_bytes);
  c.publish.limits.max_json_bytes = static_cast<size_t>(max_line_bytes);
  c.publish.limits.max_future_skew = absl::Seconds(max_future_skew_s);

  RETURN_IF_ERROR(r.Read("store.data_dir", c.store.data_dir));
  RETURN_IF_ERROR(r.ReadPositive("store.block_cache_bytes", c.store.block_cache_bytes));
  RETURN_IF_ERROR(r.ReadPositive("store.write_buffer_bytes", c.store.write_buffer_bytes));
  RETURN_IF_ERROR(r.ReadPositive("store.max_open_files", c.store.max_open_files));
  RETURN_IF_ERROR(r.Read("run.group_id", c.run.group_id));
  RETURN_IF_ERROR(r.Read("run.instance_id", c.run.instance_id));
  RETURN_IF_ERROR(r.ReadPositive("run.max_batch", c.run.max_batch));
  RETURN_IF_ERROR(r.ReadPositive("run.batch_wait_ms", c.run.batch_wait_ms));
  RETURN_IF_ERROR(r.ReadPositive("run.dedup_window", c.run.dedup_window));
  RETURN_IF_ERROR(r.ReadPositive("run.apply_threads", c.run.apply_threads, /*at_most=*/256));
  RETURN_IF_ERROR(r.ReadNonNegative("run.state_cache_bytes", c.run.state_cache_bytes));
  RETURN_IF_ERROR(r.ReadNonNegative("run.standby_replicas", c.run.standby_replicas));
  if (c.run.standby_replicas > 16) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: run.standby_replicas: must be at most 16 (copies of each partition)", r.Where("run.standby_replicas")));
  }
  RETURN_IF_ERROR(r.Read("log.level", c.log_level));

  RETURN_IF_ERROR(r.Read("churn.period", c.churn.period));
  if (c.churn.period != "day" && c.churn.period != "week") {
    return absl::InvalidArgumentError(fmt::format("{}: churn.period: \"{}\" is neither \"day\" nor \"week\"",
                                                  r.Where("churn.period"), c.churn.period));
  }
  RETURN_IF_ERROR(r.ReadPositive("churn.clv_months", c.churn.clv_months));
  RETURN_IF_ERROR(r.Read("churn.monthly_discount_rate", c.churn.monthly_discount_rate));
  if (!(c.churn.monthly_discount_rate >= 0 && c.churn.monthly_discount_rate < 1)) {
    return absl::InvalidArgumentError(fmt::format("{}: churn.monthly_discount_rate: {} is not in [0, 1)",
                                                  r.Where("churn.monthly_discount_rate"),
                                                  c.churn.monthly_discount_rate));
  }
  RETURN_IF_ERROR(r.Read("churn.refit_interval_s", c.churn.refit_interval_s));
  if (c.churn.refit_interval_s < 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: churn.refit_interval_s: must be 0 (never) or more", r.Where("churn.refit_interval_s")));
  }
  RETURN_IF_ERROR(r.ReadPositive("churn.min_spend_customers", c.churn.min_spend_customers));

  RETURN_IF_ERROR(r.Read("api.listen", c.api.listen));
  RETURN_IF_ERROR(r.Read("api.advertised_url", c.api.advertised_url));
  if (!c.api.advertised_url.empty() && !c.api.advertised_url.starts_with("http://") &&
      !c.api.advertised_url.starts_with("https://")) {
    return absl::InvalidArgumentError(fmt::format("{}: api.advertised_url: \"{}\" is not an http:// or https:// URL",
                                                  r.Where("api.advertised_url"), c.api.advertised_url));
  }
  RETURN_IF_ERROR(r.ReadPositive("api.io_threads", c.api.io_threads));
  RETURN_IF_ERROR(r.ReadPositive("api.workers", c.api.workers));
  RETURN_IF_ERROR(r.ReadPositive("api.max_body_bytes", c.api.max_body_bytes));
  RETURN_IF_ERROR(r.ReadPositive("api.max_header_bytes", c.api.max_header_bytes));
  RETURN_IF_ERROR(r.ReadPositive("api.request_timeout_ms", c.api.request_timeout_ms));
  RETURN_IF_ERROR(r.ReadPositive("api.max_in_flight", c.api.max_in_flight));
  RETURN_IF_ERROR(r.ReadPositive("api.max_connections", c.api.max_connections));
  RETURN_IF_ERROR(r.ReadPositive("api.consistency_wait_ms", c.api.consistency_wait_ms));
  RETURN_IF_ERROR(r.Read("api.ready_max_lag", c.api.ready_max_lag));
  if (c.api.ready_max_lag < 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: api.ready_max_lag: must be 0 (fully caught up) or more", r.Where("api.ready_max_lag")));
  }
  RETURN_IF_ERROR(r.ReadPositive("api.max_batch_events", c.api.max_batch_events));
  RETURN_IF_ERROR(r.Read("api.open_reads_on_loopback", c.api.open_reads_on_loopback));
  RETURN_IF_ERROR(r.Read("api.tls_cert_file", c.api.tls_cert_file));
  RETURN_IF_ERROR(r.Read("api.tls_key_file", c.api.tls_key_file));
  RETURN_IF_ERROR(r.ReadApiKeys("api.keys", c.api.keys));
  if (!c.api.listen.empty()) {
    std::string host;
    uint16_t port = 0;
    RETURN_IF_ERROR(ParseListenAddress(c.api.listen, host, port, fmt::format("{}: api.listen", r.Where("api.listen"))));
  }
  RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  for (int32_t partitions : {c.topics.events_partitions, c.topics.dead_letter_partitions, c.topics.alerts_partitions}) {
    if (partitions < 1)
      return absl::InvalidArgumentError(fmt::format("{}: topic partition counts must be at least 1", origin));
  }
  return c;
}

Result<Config> LoadConfig(const std::optional<std::filesystem::path>& file, const Environment& env) {
  std::optional<std::filesystem::path> path = file;
  if (!path) {
    if (auto it = env.find("RAPPORT_CONFIG"); it != env.end() && !it->second.empty()) {
      path = it->second;
    } else if (std::filesystem::exists("rapport.toml")) {
      path = "rapport.toml";
    }
  }
  Config config;
  if (path) {
    std::ifstream in(*path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path->string()));
    std::stringstream text;
    text << in.rdbuf();
    ASSIGN_OR_RETURN(config, ParseConfig(text.str(), path->string()));
    config.file = path;
  }
  ApplyEnvironment(env, config);
  return config;
}

Status ParseListenAddress(const std::string& text, std::string& host, uint16_t& port, std::string_view what) {
  size_t colon = text.rfind(':');
  auto bad = [&] {
    return absl::InvalidArgumentError(
        fmt::format("{}: \"{}\" is not HOST:PORT such as 127.0.0.1:8080 or [::1]:8080", what, text));
  };
  if (colon == std::string::npos || colon == 0) return bad();
  host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string digits = text.substr(colon + 1);
  int value = -1;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size() || value < 0 || value > 65535 || host.empty()) {
    return bad();
  }
  port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

std::vector<kafka::TopicSpec> TopicSpecs(const TopicsConfig& t) {
  // Kept forever: cx.events is the source of truth, and dead letters and
  // alerts must not be lost.
  const std::map<std::string, std::string> forever = {
      {"retention.ms", "-1"}, {"retention.bytes", "-1"}, {"cleanup.policy", "delete"}};
  // The members topic keeps each instance's last record (compacted), and
  // its records are worth nothing after a few seconds.
  const std::map<std::string, std::string> latest = {{"cleanup.policy", "compact"},
                                                     {"min.compaction.lag.ms", "0"},
                                                     {"segment.ms", "3600000"},
                                                     {"delete.retention.ms", "3600000"}};
  return {
      {t.events, t.events_partitions, t.replication_factor, forever},
      {t.dead_letter, t.dead_letter_partitions, t.replication_factor, forever},
      {t.alerts, t.alerts_partitions, t.replication_factor, forever},
      {t.members, 1, t.replication_factor, latest},
  };
}

}  // namespace rapport::cli
