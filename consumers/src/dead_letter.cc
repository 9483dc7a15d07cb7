#include "dead_letter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rapport::consumers {

RejectedRecord RejectedRecordOf(const rd_kafka_message_t* m, std::string_view topic) {
  RejectedRecord record{.topic = topic,
                        .partition = m->partition,
                        .offset = m->offset,
                        .timestamp_ms = rd_kafka_message_timestamp(m, nullptr),
                        .key = std::string_view(static_cast<const char*>(m->key), m->key_len),
                        .value = std::string_view(static_cast<const char*>(m->payload), m->len),
                        .headers = {}};
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == 0) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == 0; ++i) {
      record.headers.emplace_back(name, std::string_view(static_cast<const char*>(value), size));
    }
  }
  return record;
}

std::string BoundedReason(std::string reason) {
  if (reason.size() > kDeadLetterMaxReasonBytes) {
    const size_t full = reason.size();
    reason.resize(kDeadLetterMaxReasonBytes);
    absl::StrAppend(&reason, "... (", full, " bytes in all)");
  }
  return reason;
}

state::v1::OutboxEntry BuildDeadLetter(const RejectedRecord& record, const std::string& dead_letter_topic,
                                       std::string_view stage, std::string_view reason) {
  state::v1::OutboxEntry entry;
  const std::string origin = absl::StrCat(std::string(record.topic), "/", record.partition, "/", record.offset);
  std::string cut;  // what was left out, for the rapport-dlq-truncated header
  auto note_cut = [&cut](const std::string& what) { absl::StrAppend(&cut, cut.empty() ? "" : "; ", what); };
  entry.set_topic(dead_letter_topic);
  if (record.key.empty()) {
    entry.set_key(origin);
  } else {
    entry.set_key(std::string(record.key.substr(0, kDeadLetterMaxKeyBytes)));
    if (record.key.size() > kDeadLetterMaxKeyBytes) {
      note_cut(absl::StrCat("key: ", record.key.size(), " bytes, the first ", kDeadLetterMaxKeyBytes, " kept"));
    }
  }
  entry.set_value(std::string(record.value.substr(0, kDeadLetterMaxValueBytes)));
  if (record.value.size() > kDeadLetterMaxValueBytes) {
    note_cut(absl::StrCat("value: ", record.value.size(), " bytes, the first ", kDeadLetterMaxValueBytes, " kept"));
  }
  entry.set_timestamp_ms(record.timestamp_ms);
  size_t copied = 0, left_out = 0;
  for (const auto& [name, value] : record.headers) {
    // Each header costs its bytes and some framing, so that a record of
    // 100,000 empty headers is bounded too.
    const size_t cost = name.size() + value.size() + kDeadLetterHeaderOverheadBytes;
    if (copied + cost > kDeadLetterMaxHeaderBytes) {
      ++left_out;
      continue;
    }
    copied += cost;
    auto* h = entry.add_headers();
    h->set_name(std::string(name));  // bytes: a header name need not be UTF-8
    h->set_value(std::string(value));
  }
  if (left_out > 0) {
    note_cut(absl::StrCat("headers: ", left_out, " left out past ", kDeadLetterMaxHeaderBytes, " bytes"));
  }
  std::vector<std::pair<std::string, std::string>> ours = {{"rapport-dlq-reason", std::string(reason)},
                                                           {"rapport-dlq-stage", std::string(stage)},
                                                           {"rapport-dlq-origin", origin}};
  if (!cut.empty()) ours.emplace_back("rapport-dlq-truncated", cut + "; the whole record stays at the origin");
  for (const auto& [name, value] : ours) {
    auto* h = entry.add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  return entry;
}

}  // namespace rapport::consumers
