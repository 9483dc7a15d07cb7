#include "rapport/kafka/log_reader.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "rapport/events/validation.h"

namespace rapport::kafka {
Result<std::unique_ptr<LogReader>> LogReader::Open(LogReaderOptions options) {
  std::unique_ptr<LogReader> reader(new LogReader(std::move(options)));
  const std::vector<kafka::RequiredProperty> required = {
      // librdkafka needs a group id for a consumer handle; it is never joined
      // because partitions are assigned directly.
      {"group.id", "rapport-log-reader", "the log reader joins no group"},
      {"enable.auto.commit", "false", "the log reader commits nothing"},
      {"enable.partition.eof", "true", "the log reader must see where each partition ends"},
  };
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(reader->options_.kafka, required));
  ASSIGN_OR_RETURN(reader->consumer_, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  ASSIGN_OR_RETURN(reader->partition_count_,
                   kafka::TopicPartitionCount(reader->consumer_.get(), reader->options_.kafka, reader->options_.topic));
  RETURN_IF_ERROR(reader->ResolveRanges());
  return reader;
}

Status LogReader::ResolveRanges() {
  std::vector<int32_t> partitions = options_.partitions;
  if (partitions.empty()) {
    for (int32_t p = 0; p < partition_count_; ++p) partitions.push_back(p);
  }
  for (int32_t p : partitions) {
    if (p < 0 || p >= partition_count_) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.topic, " has no partition ", p, " (it has ", partition_count_, ")"));
    }
    ASSIGN_OR_RETURN(kafka::LogBounds bounds,
                     kafka::QueryLogBounds(consumer_.get(), options_.kafka, options_.topic, p));
    ranges_[p] = {options_.start == StartAt::kBeginning ? bounds.low : bounds.high, bounds.high};
  }
  // Reading to the end means to the end as it was now, so that a log that
  // keeps growing still ends the read.
  fixed_stop_ = options_.at_end == AtEnd::kStop;
  if (options_.from_ms) {
    ASSIGN_OR_RETURN(auto starts, kafka::OffsetsForTime(consumer_.get(), options_.kafka, options_.topic, partitions,
                                                        events::EarliestStampOf(*options_.from_ms)));
    for (auto& [p, range] : ranges_) range.start = starts[p] < 0 ? range.stop : starts[p];
  }
  return absl::OkStatus();
}

Status LogReader::Run(const std::function<bool(const LogRecord&)>& on_record, const std::atomic<bool>& stop) {
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partition_count_);
  std::set<int32_t> done;  // partitions read up to their fixed stop
  for (const auto& [p, range] : ranges_) {
    if (fixed_stop_ && range.start >= range.stop) {
      done.insert(p);
      continue;
    }
    rd_kafka_topic_partition_list_add(assignment, options_.topic.c_str(), p)->offset = range.start;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer_.get(), assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return kafka::KafkaStatus(err, absl::StrCat("reading ", options_.topic));
  }
  auto finished = [&](int32_t partition) {
    done.insert(partition);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options_.topic.c_str(), partition);
    rd_kafka_pause_partitions(consumer_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
  };

  std::set<int32_t> at_end;
  Status result = absl::OkStatus();
  LogRecord record;
  const auto read_partitions = static_cast<int32_t>(ranges_.size());
  while (!stop.load()) {
    if (static_cast<int32_t>(done.size()) == read_partitions) break;
    if (!fixed_stop_ && options_.at_end == AtEnd::kStop && static_cast<int32_t>(at_end.size()) == read_partitions) {
      break;
    }
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer_.get(), 200);
    if (message == nullptr) continue;
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> owned(message, rd_kafka_message_destroy);
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(message->partition);
      // A fixed stop beyond the end (records deleted meanwhile): nothing more to wait for.
      if (fixed_stop_ && options_.at_end == AtEnd::kStop) finished(message->partition);
      continue;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Status status = kafka::KafkaStatus(message->err, absl::StrCat("reading ", options_.topic));
      if (status.code() == absl::StatusCode::kUnavailable) continue;  // librdkafka reconnects by itself
      result = status;
      break;
    }
    at_end.erase(message->partition);
    if (done.contains(message->partition)) continue;  // fetched before the pause took hold
    if (fixed_stop_ && message->offset >= ranges_[message->partition].stop) {
      finished(message->partition);
      continue;
    }
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
    if (fixed_stop_ && message->offset + 1 >= ranges_[message->partition].stop) finished(message->partition);
  }
  rd_kafka_consumer_close(consumer_.get());
  return result;
}

}  // namespace rapport::kafka
