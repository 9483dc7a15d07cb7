#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rapport/base/status.h"

namespace rapport::kafka {

// How to reach the Kafka cluster, from the config file's [kafka] table.
struct KafkaSettings {
  std::string brokers = "127.0.0.1:9092";
  // librdkafka properties passed through as they are: security.protocol,
  // sasl.*, ssl.*, client.id, ... (see librdkafka's CONFIGURATION.md).
  std::map<std::string, std::string> properties;
  // How long to wait for the cluster on metadata and admin requests.
  std::chrono::milliseconds timeout{10000};
};

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* handle) const { rd_kafka_destroy(handle); }
};
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using KafkaHandle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

// A librdkafka property rapport sets itself, because a guarantee depends on it.
struct RequiredProperty {
  std::string name;
  std::string value;
  std::string why;  // shown when the config file tries to change it
};

// Builds a librdkafka configuration: bootstrap servers, the pass-through
// properties, then `required`. A pass-through property that contradicts a
// required one, or that librdkafka does not accept, is a FailedPrecondition
// naming the property and the reason.
Result<KafkaConf> BuildKafkaConf(const KafkaSettings& settings, const std::vector<RequiredProperty>& required);

// Creates a client handle from `conf` (which it takes over).
Result<KafkaHandle> NewKafkaHandle(rd_kafka_type_t type, KafkaConf conf);

// A Status for a librdkafka error code, with `context` saying what was being
// done: broker transport problems and time-outs are kUnavailable or
// kDeadlineExceeded (retry), unknown topics kNotFound, the rest kInternal.
Status KafkaStatus(rd_kafka_resp_err_t err, std::string_view context);

// Asks the cluster for `topic`'s partition count, waiting at most
// settings.timeout. Unavailable with the bootstrap address when no broker
// answers; NotFound when the topic does not exist.
Result<int32_t> TopicPartitionCount(rd_kafka_t* handle, const KafkaSettings& settings, const std::string& topic);

// A partition's first and next offsets (its "watermarks"). A partition that
// has just been created, or whose leader is moving, answers "not leader" for
// a moment: such errors are retried until settings.timeout, then reported.
struct LogBounds {
  int64_t low = 0;   // the first offset still in the log
  int64_t high = 0;  // the offset the next record will get
};
Result<LogBounds> QueryLogBounds(rd_kafka_t* handle, const KafkaSettings& settings, const std::string& topic,
                                 int32_t partition);

// Kafka's offsets-for-times: per partition, the offset of the first record
// stamped at or after `ms`, or -1 when no record is that late.
Result<std::map<int32_t, int64_t>> OffsetsForTime(rd_kafka_t* handle, const KafkaSettings& settings,
                                                  const std::string& topic, const std::vector<int32_t>& partitions,
                                                  int64_t ms);

// One record to queue on a producer (copied when queued).
struct OutgoingRecord {
  std::string topic;
  int32_t partition = RD_KAFKA_PARTITION_UA;  // UA: the producer's partitioner
  std::string_view key;                       // a default (null) view: a record without a key
  std::string_view value;
  int64_t timestamp_ms = 0;  // 0: now
  rd_kafka_headers_t* headers = nullptr;
  void* opaque = nullptr;  // handed to the delivery report
};

// Queues `record` on `producer`; while librdkafka's queue is full it serves
// delivery reports and tries again, however long that takes. librdkafka
// takes the headers over when the record is queued; on an error they are
// destroyed here. Returns librdkafka's answer.
rd_kafka_resp_err_t ProduceWaitingForRoom(rd_kafka_t* producer, const OutgoingRecord& record);

}  // namespace rapport::kafka
