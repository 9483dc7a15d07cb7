// Dead letters, built without a broker: whatever a record holds, its dead
// letter stays small enough for Kafka to take, says what was cut, and
// names the reason, the stage and the origin.
#include "dead_letter.h"

#include <gtest/gtest.h>

#include <map>

namespace rapport::consumers {
namespace {

std::map<std::string, std::string> Headers(const state::v1::OutboxEntry& entry) {
  std::map<std::string, std::string> headers;
  for (const auto& h : entry.headers()) headers[h.name()] = h.value();
  return headers;
}

RejectedRecord Record(std::string_view key, std::string_view value) {
  return {.topic = "cx.events",
          .partition = 3,
          .offset = 41,
          .timestamp_ms = 1776765600000,
          .key = key,
          .value = value,
          .headers = {}};
}

TEST(DeadLetter, CopiesASmallRecordWholeWithWhyAndWhereFrom) {
  RejectedRecord record = Record("c-1", "not an envelope");
  record.headers = {{"traceparent", "00-abc-01"}, {std::string_view("\xff\xfe", 2), "bytes"}};
  auto letter = BuildDeadLetter(record, "cx.events.dlq", "decode", "not a rapport.v1.Envelope");
  EXPECT_EQ(letter.topic(), "cx.events.dlq");
  EXPECT_EQ(letter.key(), "c-1");
  EXPECT_EQ(letter.value(), "not an envelope");
  EXPECT_EQ(letter.timestamp_ms(), 1776765600000);
  auto headers = Headers(letter);
  EXPECT_EQ(headers["traceparent"], "00-abc-01");
  EXPECT_EQ(headers[std::string("\xff\xfe", 2)], "bytes") << "a header name that is not UTF-8 is copied as bytes";
  EXPECT_EQ(headers["rapport-dlq-reason"], "not a rapport.v1.Envelope");
  EXPECT_EQ(headers["rapport-dlq-stage"], "decode");
  EXPECT_EQ(headers["rapport-dlq-origin"], "cx.events/3/41");
  EXPECT_EQ(headers.count("rapport-dlq-truncated"), 0u);
}

TEST(DeadLetter, ARecordWithoutAKeyIsKeyedByItsOrigin) {
  auto letter = BuildDeadLetter(Record("", "x"), "dlq", "key", "the record has no key");
  EXPECT_EQ(letter.key(), "cx.events/3/41");
}

TEST(DeadLetter, AHugeKeyValueAndHeadersAreCutAndTheCutIsNamed) {
  const std::string key(5000, 'k'), value(999'900, '\xfe');
  RejectedRecord record = Record(key, value);
  const std::string padding(100, 'h');
  for (int i = 0; i < 1000; ++i) record.headers.emplace_back("h", padding);  // 117 bytes each, counted
  auto letter = BuildDeadLetter(record, "dlq", "decode", "too big");
  EXPECT_EQ(letter.key(), key.substr(0, kDeadLetterMaxKeyBytes));
  EXPECT_EQ(letter.value(), value.substr(0, kDeadLetterMaxValueBytes));
  const size_t kept = kDeadLetterMaxHeaderBytes / (1 + padding.size() + kDeadLetterHeaderOverheadBytes);
  EXPECT_EQ(static_cast<size_t>(letter.headers_size()), kept + 4) << "the copied headers, then rapport's four";
  EXPECT_EQ(Headers(letter)["rapport-dlq-truncated"],
            "key: 5000 bytes, the first 1024 kept; value: 999900 bytes, the first 65536 kept; headers: " +
                std::to_string(1000 - kept) + " left out past 16384 bytes; the whole record stays at the origin");
  EXPECT_LT(letter.ByteSizeLong(), 100'000u) << "always far below Kafka's 1 MiB";
}

TEST(DeadLetter, AHundredThousandEmptyHeadersAreBoundedToo) {
  RejectedRecord record = Record("c-2", "v");
  for (int i = 0; i < 100'000; ++i) record.headers.emplace_back("", "");
  auto letter = BuildDeadLetter(record, "dlq", "decode", "empty headers");
  EXPECT_EQ(static_cast<size_t>(letter.headers_size()), kDeadLetterMaxHeaderBytes / kDeadLetterHeaderOverheadBytes + 4);
  EXPECT_LT(letter.ByteSizeLong(), 100'000u);
}

TEST(DeadLetter, AReasonIsBoundedAndSaysHowLongItWas) {
  EXPECT_EQ(BoundedReason("short"), "short");
  const std::string bounded = BoundedReason(std::string(100'000, 'r'));
  EXPECT_EQ(bounded, std::string(kDeadLetterMaxReasonBytes, 'r') + "... (100000 bytes in all)");
}

}  // namespace
}  // namespace rapport::consumers
