#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rapport/base/status.h"
#include "rapport/events/cloudevents.h"
#include "rapport/kafka/client.h"

namespace rapport::kafka {

// One record as it is stored in Kafka. The views are valid only during the
// callback that receives it.
struct LogRecord {
  int32_t partition = -1;
  int64_t offset = -1;
  int64_t timestamp_ms = -1;
  std::string_view key;
  std::string_view value;
  std::vector<events::Header> headers;
};

enum class StartAt { kBeginning, kEnd };
enum class AtEnd { kStop, kFollow };

struct LogReaderOptions {
  kafka::KafkaSettings kafka;
  std::string topic;
  StartAt start = StartAt::kBeginning;
  AtEnd at_end = AtEnd::kStop;
  // Only these partitions; empty: every partition.
  std::vector<int32_t> partitions;
  // A start found with Kafka's offsets-for-times rather than by scanning:
  // each partition's first record stamped at or after
  // events::EarliestStampOf(from_ms), instead of `start`. Every valid event before it
  // occurred before from_ms; the records from there on are delivered as they
  // are, in log order, which is not time order: callers filter on
  // occurred_at. (There is no such end: a record that occurred earlier may
  // follow one that occurred later anywhere in a partition.)
  std::optional<int64_t> from_ms;
};

// Where a read starts and stops, per partition (RD_KAFKA_OFFSET_END as a
// stop: no fixed stop).
struct PartitionRange {
  int64_t start = 0;
  int64_t stop = 0;
};

// Reads every partition of one topic directly (no consumer group, nothing
// committed): for tools that look at the log, such as `rapport tail`.
// Threading: Run is called from one thread; the callback runs on it.
class LogReader {
 public:
  // Checks within kafka.timeout that the cluster answers and the topic exists.
  static Result<std::unique_ptr<LogReader>> Open(LogReaderOptions options);

  // Delivers records in partition order within each partition, until every
  // partition has reached its end (AtEnd::kStop), `on_record` returns false,
  // or `stop` becomes true.
  Status Run(const std::function<bool(const LogRecord&)>& on_record, const std::atomic<bool>& stop);

  int32_t partition_count() const { return partition_count_; }
  // The offsets Run will read between, per partition (known after Open); for
  // progress reports. Without a stop, `stop` is the end when Open looked.
  const std::map<int32_t, PartitionRange>& ranges() const { return ranges_; }

 private:
  LogReader(LogReaderOptions options) : options_(std::move(options)) {}

  LogReaderOptions options_;
  Status ResolveRanges();

  kafka::KafkaHandle consumer_;
  int32_t partition_count_ = 0;
  std::map<int32_t, PartitionRange> ranges_;
  bool fixed_stop_ = false;
};

}  // namespace rapport::kafka
