#include "rapport/consumers/log_reader.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace rapport::consumers {

Result<std::unique_ptr<LogReader>> LogReader::Open(LogReaderOptions options) {
  std::unique_ptr<LogReader> reader(new LogReader(std::move(options)));
  const std::vector<producers::RequiredProperty> required = {
      // librdkafka needs a group id for a consumer handle; it is never joined
      // because partitions are assigned directly.
      {"group.id", "rapport-log-reader", "the log reader joins no group"},
      {"enable.auto.commit", "false", "the log reader commits nothing"},
      {"enable.partition.eof", "true", "the log reader must see where each partition ends"},
  };
  ASSIGN_OR_RETURN(producers::KafkaConf conf, producers::BuildKafkaConf(reader->options_.kafka, required));
  ASSIGN_OR_RETURN(reader->consumer_, producers::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  ASSIGN_OR_RETURN(
      reader->partition_count_,
      producers::TopicPartitionCount(reader->consumer_.get(), reader->options_.kafka, reader->options_.topic));
  return reader;
}

Status LogReader::Run(const std::function<bool(const LogRecord&)>& on_record, const std::atomic<bool>& stop) {
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partition_count_);
  for (int32_t p = 0; p < partition_count_; ++p) {
    rd_kafka_topic_partition_list_add(assignment, options_.topic.c_str(), p)->offset =
        options_.start == StartAt::kBeginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer_.get(), assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return producers::KafkaStatus(err, absl::StrCat("reading ", options_.topic));
  }

  std::set<int32_t> at_end;
  Status result = absl::OkStatus();
  LogRecord record;
  while (!stop.load()) {
    if (options_.at_end == AtEnd::kStop && static_cast<int32_t>(at_end.size()) == partition_count_) break;
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer_.get(), 200);
    if (message == nullptr) continue;
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> owned(message, rd_kafka_message_destroy);
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(message->partition);
      continue;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Status status = producers::KafkaStatus(message->err, absl::StrCat("reading ", options_.topic));
      if (status.code() == absl::StatusCode::kUnavailable) continue;  // librdkafka reconnects by itself
      result = status;
      break;
    }
    at_end.erase(message->partition);
    record.partition = message->partition;
    record.offset = message->offset;
    record.timestamp_ms = rd_kafka_message_timestamp(message, nullptr);
    record.key = std::string_view(static_cast<const char*>(message->key), message->key_len);
    record.value = std::string_view(static_cast<const char*>(message->payload), message->len);
    record.headers.clear();
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
        record.headers.push_back({name, std::string(static_cast<const char*>(value), size)});
      }
    }
    if (!on_record(record)) break;
  }
  rd_kafka_consumer_close(consumer_.get());
  return result;
}

}  // namespace rapport::consumers
