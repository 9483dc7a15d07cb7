#include "rapport/events/cloudevents.h"

#include <gtest/gtest.h>

#include "rapport/events/codec.h"

namespace rapport::events {
namespace {

TEST(CloudEvents, BinaryModeHeadersDescribeTheEvent) {
  v1::Envelope event;
  ASSERT_FALSE(ParseEventJson(R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01","customer_id":"c-1003",)"
                              R"("occurred_at":"2026-04-02T07:31:45.250Z","source":"web/reviews",)"
                              R"("channel":"CHANNEL_WEB","review_submitted":{"rating":2}})",
                              event)
                   .has_value());
  std::vector<Header> expected = {
      {"ce_specversion", "1.0"},
      {"ce_id", "019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01"},
      {"ce_type", "rapport.v1.ReviewSubmitted"},
      {"ce_source", "web/reviews"},
      {"ce_time", "2026-04-02T07:31:45.250Z"},
      {"ce_subject", "c-1003"},
      {"content-type", "application/protobuf; proto=rapport.v1.Envelope"},
  };
  EXPECT_EQ(CloudEventHeaders(event), expected);
}

}  // namespace
}  // namespace rapport::events
