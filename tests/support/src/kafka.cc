#include "rapport/testing/kafka.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "rapport/kafka/topics.h"

namespace rapport::testing {

kafka::KafkaSettings TestBroker() {
  kafka::KafkaSettings settings;
  if (const char* brokers = std::getenv("RAPPORT_TEST_BROKERS"); brokers != nullptr && *brokers != '\0') {
    settings.brokers = brokers;
  }
  settings.timeout = std::chrono::milliseconds(15000);
  return settings;
}

Status CheckBrokerAnswers(const kafka::KafkaSettings& broker) {
  kafka::KafkaSettings quick = broker;
  quick.timeout = std::chrono::milliseconds(5000);
  auto conf = kafka::BuildKafkaConf(quick, {});
  if (!conf.ok()) return conf.status();
  auto handle = kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf).value());
  if (!handle.ok()) return handle.status();
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(handle->get(), 0, nullptr, &metadata, 5000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::FailedPreconditionError(
        absl::StrCat("no Kafka broker answers at ", broker.brokers,
                     " — the integration tests need the real broker: run `ops/kafka start` (ops/test does it)"));
  }
  rd_kafka_metadata_destroy(metadata);
  return absl::OkStatus();
}

std::string UniqueTopicName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  static const uint32_t random = std::random_device{}();
  return absl::StrCat(prefix, ".", getpid(), ".", counter++, ".", random % 100000);
}

std::string WriteTestConfig(const kafka::KafkaSettings& broker, const std::string& name,
                            const std::string& extra_toml) {
  std::string path = ::testing::TempDir() + name + ".toml";
  std::ofstream(path) << "[kafka]\nbrokers = \"" << broker.brokers << "\"\n" << extra_toml;
  return path;
}

Status CreateTopic(const kafka::KafkaSettings& broker, const std::string& topic, int32_t partitions) {
  auto reports = kafka::EnsureTopics(broker, {{topic, partitions, -1, {{"retention.ms", "-1"}}}});
  return reports.status();
}

namespace {

Result<kafka::KafkaHandle> AdminClient(const kafka::KafkaSettings& broker) {
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(broker, {}));
  return kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf));
}

// Runs one admin request: `send` issues it on `queue`, and `check` reads the
// result event.
Status AdminRequest(rd_kafka_t* client, const std::string& what,
                    const std::function<void(rd_kafka_t*, rd_kafka_queue_t*)>& send,
                    const std::function<Status(rd_kafka_event_t*)>& check) {
  rd_kafka_queue_t* queue = rd_kafka_queue_new(client);
  send(client, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  Status status = event == nullptr ? absl::DeadlineExceededError(absl::StrCat(what, ": no answer within 30 s"))
                  : rd_kafka_event_error(event)
                      ? absl::InternalError(absl::StrCat(what, ": ", rd_kafka_event_error_string(event)))
                      : check(event);
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  return status;
}

}  // namespace

namespace {

// The error of a topic-level admin result, if any.
Status TopicResultStatus(const rd_kafka_topic_result_t** results, size_t count, const std::string& what) {
  if (count == 1 && rd_kafka_topic_result_error(results[0]) != 0) {
    return absl::InternalError(absl::StrCat(what, ": ", rd_kafka_topic_result_error_string(results[0])));
  }
  return absl::OkStatus();
}

// Admin changes reach the metadata clients see a little later: waits (at
// most 30 s) until `seen` says the topic's partition count shows the change.
Status WaitForMetadata(rd_kafka_t* client, const kafka::KafkaSettings& broker, const std::string& topic,
                       const std::function<bool(const Result<int32_t>&)>& seen, const std::string& what) {
  for (int attempt = 0; attempt < 300; ++attempt) {
    if (seen(kafka::TopicPartitionCount(client, broker, topic))) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat(what, ": not visible 30 s later"));
}

}  // namespace

Status DeleteTopic(const kafka::KafkaSettings& broker, const std::string& topic) {
  ASSIGN_OR_RETURN(kafka::KafkaHandle client, AdminClient(broker));
  const std::string what = "deleting " + topic;
  RETURN_IF_ERROR(AdminRequest(
      client.get(), what,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) {
        rd_kafka_DeleteTopic_t* doomed = rd_kafka_DeleteTopic_new(topic.c_str());
        rd_kafka_DeleteTopics(rk, &doomed, 1, nullptr, queue);
        rd_kafka_DeleteTopic_destroy(doomed);
      },
      [&](rd_kafka_event_t* event) {
        size_t count = 0;
        auto results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count);
        return TopicResultStatus(results, count, what);
      }));
  return WaitForMetadata(
      client.get(), broker, topic,
      [](const Result<int32_t>& count) { return count.status().code() == absl::StatusCode::kNotFound; }, what);
}

Status AddPartitions(const kafka::KafkaSettings& broker, const std::string& topic, int32_t total) {
  ASSIGN_OR_RETURN(kafka::KafkaHandle client, AdminClient(broker));
  const std::string what = absl::StrCat("raising ", topic, " to ", total, " partitions");
  char error[256] = "";
  rd_kafka_NewPartitions_t* more =
      rd_kafka_NewPartitions_new(topic.c_str(), static_cast<size_t>(total), error, sizeof(error));
  if (more == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, ": ", error));
  Status requested = AdminRequest(
      client.get(), what,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) { rd_kafka_CreatePartitions(rk, &more, 1, nullptr, queue); },
      [&](rd_kafka_event_t* event) {
        size_t count = 0;
        auto results = rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(event), &count);
        return TopicResultStatus(results, count, what);
      });
  rd_kafka_NewPartitions_destroy(more);
  RETURN_IF_ERROR(requested);
  return WaitForMetadata(
      client.get(), broker, topic, [total](const Result<int32_t>& count) { return count.ok() && *count == total; },
      what);
}

Status DeleteRecordsBefore(const kafka::KafkaSettings& broker, const std::string& topic, int32_t partition,
                           int64_t offset) {
  ASSIGN_OR_RETURN(kafka::KafkaHandle client, AdminClient(broker));
  return AdminRequest(
      client.get(), absl::StrCat("deleting records of ", topic, "[", partition, "]"),
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) {
        rd_kafka_topic_partition_list_t* before = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(before, topic.c_str(), partition)->offset = offset;
        rd_kafka_DeleteRecords_t* request = rd_kafka_DeleteRecords_new(before);
        rd_kafka_topic_partition_list_destroy(before);
        rd_kafka_DeleteRecords(rk, &request, 1, nullptr, queue);
        rd_kafka_DeleteRecords_destroy(request);
      },
      [&](rd_kafka_event_t* event) {
        const rd_kafka_topic_partition_list_t* results =
            rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(event));
        for (int i = 0; results && i < results->cnt; ++i) {
          if (results->elems[i].err) return kafka::KafkaStatus(results->elems[i].err, "deleting records");
        }
        return absl::OkStatus();
      });
}

Status ProduceRaw(const kafka::KafkaSettings& broker, const std::string& topic, const std::string& key,
                  const std::string& value, const std::vector<events::Header>& headers, int64_t timestamp_ms,
                  int32_t partition) {
  // Kafka's default partitioner (Java's, and librdkafka's murmur2_random),
  // and a request size that lets a test send records near the broker's
  // 1 MiB limit.
  ASSIGN_OR_RETURN(kafka::KafkaConf conf,
                   kafka::BuildKafkaConf(broker, {{"partitioner", "murmur2_random", "as Kafka's Java client"},
                                                  {"message.max.bytes", "1040000", "records near 1 MiB"}}));
  rd_kafka_resp_err_t delivery = RD_KAFKA_RESP_ERR_NO_ERROR;  // the report's, read after the flush
  rd_kafka_conf_set_opaque(conf.get(), &delivery);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    if (m->err) *static_cast<rd_kafka_resp_err_t*>(opaque) = m->err;
  });
  ASSIGN_OR_RETURN(kafka::KafkaHandle producer, kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
  for (const auto& h : headers) rd_kafka_header_add(hdrs, h.name.data(), -1, h.value.data(), h.value.size());
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
  rd_kafka_resp_err_t err = rd_kafka_producev(
      producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
#pragma GCC diagnostic pop
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_headers_destroy(hdrs);
    return kafka::KafkaStatus(err, "producing a raw record");
  }
  if (rd_kafka_flush(producer.get(), 15000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::DeadlineExceededError("raw record not acknowledged within 15 s");
  }
  if (delivery != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka::KafkaStatus(delivery, "delivering a raw record");
  return absl::OkStatus();
}

namespace {

ConsumedRecord ToRecord(const rd_kafka_message_t* message) {
  ConsumedRecord r;
  r.partition = message->partition;
  r.offset = message->offset;
  r.timestamp_ms = rd_kafka_message_timestamp(message, nullptr);
  r.key.assign(static_cast<const char*>(message->key), message->key_len);
  r.value.assign(static_cast<const char*>(message->payload), message->len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      r.headers.push_back({name, std::string(static_cast<const char*>(value), size)});
    }
  }
  return r;
}

// Reads `topic` from the beginning of every partition (isolation.level
// read_committed, librdkafka's default: no aborted record, no transaction
// marker) until `done` says so or `timeout` passed. `done` sees the records
// and the partitions that reported their end, with the offset they ended at.
Result<std::vector<ConsumedRecord>> ReadUntil(
    const kafka::KafkaSettings& broker, const std::string& topic, std::chrono::milliseconds timeout,
    const std::function<bool(const std::vector<ConsumedRecord>&, const std::map<int32_t, int64_t>&)>& done) {
  kafka::KafkaSettings settings = broker;
  settings.properties["enable.auto.commit"] = "false";
  settings.properties["enable.partition.eof"] = "true";
  settings.properties["group.id"] = UniqueTopicName("test-reader");  // required by librdkafka, never joined
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(settings, {}));
  ASSIGN_OR_RETURN(kafka::KafkaHandle consumer, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  ASSIGN_OR_RETURN(int32_t partitions, kafka::TopicPartitionCount(consumer.get(), settings, topic));

  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return kafka::KafkaStatus(err, "assigning partitions");

  std::vector<ConsumedRecord> records;
  std::map<int32_t, int64_t> ended;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(records, ended) && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer.get(), 100);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      records.push_back(ToRecord(message));
    } else if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ended[message->partition] = message->offset;
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_consumer_close(consumer.get());
  std::sort(records.begin(), records.end(), [](const ConsumedRecord& a, const ConsumedRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  return records;
}

}  // namespace

Result<std::vector<ConsumedRecord>> ReadTopic(const kafka::KafkaSettings& broker, const std::string& topic,
                                              size_t count, std::chrono::milliseconds timeout) {
  return ReadUntil(broker, topic, timeout, [count](const std::vector<ConsumedRecord>& records, const auto&) {
    return records.size() >= count;
  });
}

}  // namespace rapport::testing

namespace rapport::testing {

Result<std::vector<ConsumedRecord>> ReadTopicToEnd(const kafka::KafkaSettings& broker, const std::string& topic,
                                                   std::chrono::milliseconds timeout) {
  // Up to each partition's end as it is now. Not a count of records: a
  // topic written in transactions has markers and aborted records between
  // them, which take offsets and are never read.
  ASSIGN_OR_RETURN(auto ends, EndOffsets(broker, topic));
  bool reached = false;
  ASSIGN_OR_RETURN(auto records,
                   ReadUntil(broker, topic, timeout, [&](const auto&, const std::map<int32_t, int64_t>& ended) {
                     for (const auto& [p, end] : ends) {
                       auto at = ended.find(p);
                       if (end > 0 && (at == ended.end() || at->second < end)) return false;
                     }
                     return reached = true;
                   }));
  if (!reached) {
    return absl::DeadlineExceededError(absl::StrCat("read ", records.size(), " records of ", topic,
                                                    " without reaching its end within ", timeout.count(), " ms"));
  }
  return records;
}

}  // namespace rapport::testing

namespace rapport::testing {

Result<std::map<int32_t, int64_t>> EndOffsets(const kafka::KafkaSettings& broker, const std::string& topic) {
  // The high watermark, not the last stable offset: a transaction committed
  // a moment ago has its markers written to the partitions a little later,
  // and a reader that stops at the end waits for them (ReadTopicToEnd).
  kafka::KafkaSettings settings = broker;
  settings.properties["isolation.level"] = "read_uncommitted";
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(settings, {}));
  ASSIGN_OR_RETURN(kafka::KafkaHandle client, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  ASSIGN_OR_RETURN(int32_t partitions, kafka::TopicPartitionCount(client.get(), broker, topic));
  std::map<int32_t, int64_t> ends;
  for (int32_t p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(client.get(), topic.c_str(), p, &low, &high, 10000);
    if (err) return kafka::KafkaStatus(err, "reading watermarks");
    ends[p] = high;
  }
  return ends;
}

Result<std::map<int32_t, int64_t>> CommittedOffsets(const kafka::KafkaSettings& broker, const std::string& group,
                                                    const std::string& topic) {
  ASSIGN_OR_RETURN(auto ends, EndOffsets(broker, topic));
  kafka::KafkaSettings settings = broker;
  settings.properties["group.id"] = group;  // only asks; never joins
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(settings, {}));
  ASSIGN_OR_RETURN(kafka::KafkaHandle consumer, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(ends.size()));
  for (const auto& [p, end] : ends) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(consumer.get(), list, 10000);
  std::map<int32_t, int64_t> committed;
  for (int i = 0; i < list->cnt; ++i) committed[list->elems[i].partition] = list->elems[i].offset;
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(consumer.get());
  if (err) return kafka::KafkaStatus(err, "reading committed offsets");
  return committed;
}

}  // namespace rapport::testing
