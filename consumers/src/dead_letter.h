#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rapport/state/v1/runner.pb.h"

namespace rapport::consumers {

// What a dead letter copies of the record at most: the relay's and the
// broker's size limits (about 1 MB) must never refuse a dead letter.
inline constexpr size_t kDeadLetterMaxValueBytes = 64 << 10;
inline constexpr size_t kDeadLetterMaxKeyBytes = 1024;
inline constexpr size_t kDeadLetterMaxHeaderBytes = 16 << 10;
inline constexpr size_t kDeadLetterHeaderOverheadBytes = 16;  // counted per header copied
inline constexpr size_t kDeadLetterMaxReasonBytes = 2048;

// The parts of a consumed record a dead letter copies (views into it).
struct RejectedRecord {
  std::string_view topic;
  int32_t partition = -1;
  int64_t offset = -1;
  int64_t timestamp_ms = -1;
  std::string_view key;
  std::string_view value;
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // names need not be UTF-8
};
RejectedRecord RejectedRecordOf(const rd_kafka_message_t* m, std::string_view topic);

// A reason that quotes what a record held (a key, an id, which a raw
// producer may make a megabyte long) cut to kDeadLetterMaxReasonBytes, saying
// how long it was: what the log line and the dead letter get.
std::string BoundedReason(std::string reason);

// The dead letter of `record` for `dead_letter_topic`, bounded whatever the
// record holds: value, key and headers are cut to the sizes above (the
// whole record stays at its origin in the log) and a rapport-dlq-truncated
// header says what was cut; rapport-dlq-reason, -stage and -origin say why
// and where from. A record without a key is keyed by its origin.
state::v1::OutboxEntry BuildDeadLetter(const RejectedRecord& record, const std::string& dead_letter_topic,
                                       std::string_view stage, std::string_view reason);

}  // namespace rapport::consumers
