#include "rapport/kafka/client.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "spdlog/spdlog.h"

namespace rapport::kafka {
namespace {

// librdkafka's own log lines, through the "kafka" logger so they look like
// every other log line. Called from librdkafka's threads; must not throw.
void LogFromKafka(const rd_kafka_t* /*handle*/, int level, const char* facility, const char* message) noexcept {
  static const std::shared_ptr<spdlog::logger> logger = ModuleLogger("kafka");
  // syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug
  spdlog::level::level_enum mapped = level <= 3   ? spdlog::level::err
                                     : level == 4 ? spdlog::level::warn
                                     : level <= 6 ? spdlog::level::info
                                                  : spdlog::level::debug;
  try {
    logger->log(mapped, "{}: {}", facility, message);
  } catch (...) {  // a failing log sink must not unwind into librdkafka
  }
}

}  // namespace

Result<KafkaConf> BuildKafkaConf(const KafkaSettings& settings, const std::vector<RequiredProperty>& required) {
  KafkaConf conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), &LogFromKafka);
  std::array<char, 512> error{};
  auto set = [&](const std::string& name, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), error.data(), error.size()) != RD_KAFKA_CONF_OK) {
      return absl::FailedPreconditionError(
          absl::StrCat("kafka property \"", name, "\" = \"", value, "\": ", error.data()));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(set("bootstrap.servers", settings.brokers));
  for (const auto& [name, value] : settings.properties) {
    for (const auto& r : required) {
      if (r.name == name && r.value != value) {
        return absl::FailedPreconditionError(absl::StrCat("kafka property \"", name, "\" = \"", value,
                                                          "\" is not allowed: rapport needs \"", r.value, "\" (", r.why,
                                                          ")"));
      }
    }
    RETURN_IF_ERROR(set(name, value));
  }
  for (const auto& r : required) RETURN_IF_ERROR(set(r.name, r.value));
  return conf;
}

Result<KafkaHandle> NewKafkaHandle(rd_kafka_type_t type, KafkaConf conf) {
  std::array<char, 512> error{};
  rd_kafka_t* handle = rd_kafka_new(type, conf.get(), error.data(), error.size());
  if (handle == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("cannot create a Kafka client: ", error.data()));
  }
  conf.release();  // rd_kafka_new owns it now
  return KafkaHandle(handle);
}

Status KafkaStatus(rd_kafka_resp_err_t err, std::string_view context) {
  std::string message = absl::StrCat(std::string(context), ": ", rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return absl::OkStatus();
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
      return absl::UnavailableError(message);
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return absl::DeadlineExceededError(message);
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return absl::NotFoundError(message);
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

Result<std::map<int32_t, int64_t>> OffsetsForTime(rd_kafka_t* handle, const KafkaSettings& settings,
                                                  const std::string& topic, const std::vector<int32_t>& partitions,
                                                  int64_t ms) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (int32_t p : partitions) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = ms;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(handle, list, static_cast<int>(settings.timeout.count()));
  std::map<int32_t, int64_t> out;
  for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < list->cnt; ++i) {
    if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[i].err;
    out[list->elems[i].partition] = list->elems[i].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, absl::StrCat("finding times in ", topic));
  return out;
}

Result<LogBounds> QueryLogBounds(rd_kafka_t* handle, const KafkaSettings& settings, const std::string& topic,
                                 int32_t partition) {
  const auto deadline = std::chrono::steady_clock::now() + settings.timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    LogBounds bounds;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(handle, topic.c_str(), partition, &bounds.low, &bounds.high,
                                         static_cast<int>(std::max<int64_t>(left.count(), 1)));
    if (!err) return bounds;
    const bool transient = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                           err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                           err == RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS || err == RD_KAFKA_RESP_ERR__TRANSPORT;
    if (!transient || std::chrono::steady_clock::now() + std::chrono::milliseconds(100) >= deadline) {
      return KafkaStatus(err, absl::StrCat("reading the bounds of ", topic, " partition ", partition));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<int32_t> TopicPartitionCount(rd_kafka_t* handle, const KafkaSettings& settings, const std::string& topic) {
  rd_kafka_topic_t* topic_handle = rd_kafka_topic_new(handle, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(handle, 0, topic_handle, &metadata, static_cast<int>(settings.timeout.count()));
  rd_kafka_topic_destroy(topic_handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("no answer from Kafka at ", settings.brokers, " within ",
                                               settings.timeout.count(), " ms (", rd_kafka_err2str(err),
                                               "); is the broker running?"));
  }
  std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> owned(metadata,
                                                                                         rd_kafka_metadata_destroy);
  if (metadata->topic_cnt != 1) return absl::InternalError("metadata answer without the topic");
  const auto& t = metadata->topics[0];
  if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || t.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
    return absl::NotFoundError(absl::StrCat("topic ", topic, " does not exist on ", settings.brokers,
                                            "; create it with `rapport topics ensure`"));
  }
  if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(t.err, absl::StrCat("topic ", topic));
  return t.partition_cnt;
}

rd_kafka_resp_err_t ProduceWaitingForRoom(rd_kafka_t* producer, const OutgoingRecord& record) {
  for (;;) {
    // librdkafka's RD_KAFKA_V_* macros are C and cast C-style.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(record.topic.c_str()), RD_KAFKA_V_PARTITION(record.partition),
                          RD_KAFKA_V_KEY(const_cast<char*>(record.key.data()), record.key.size()),
                          RD_KAFKA_V_VALUE(const_cast<char*>(record.value.data()), record.value.size()),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(record.timestamp_ms),
                          RD_KAFKA_V_HEADERS(record.headers), RD_KAFKA_V_OPAQUE(record.opaque), RD_KAFKA_V_END);
#pragma GCC diagnostic pop
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && record.headers != nullptr) rd_kafka_headers_destroy(record.headers);
      return err;
    }
    rd_kafka_poll(producer, 100);  // make room by serving deliveries
  }
}

}  // namespace rapport::kafka
