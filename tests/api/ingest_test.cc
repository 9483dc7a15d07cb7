// The ids ingest gives events that arrive without one under an
// Idempotency-Key: a retry of the same request gets the same ids (so the
// projections apply each event once), anything else gets other ids.
#include "rapport/api/ingest.h"

#include <gtest/gtest.h>

#include <set>

#include "rapport/events/uuid.h"

namespace rapport::api {
namespace {

TEST(IdempotentEventId, TheSameRequestGetsTheSameIdsAndAnythingElseOthers) {
  const std::string event = R"({"customer_id":"c-1","occurred_at":"2026-11-01T10:00:00Z"})";
  const std::string id = IdempotentEventId("0b5c8f3e-retry-me", 0, event);
  EXPECT_TRUE(events::IsWellFormedUuid(id)) << id;
  EXPECT_EQ(events::UuidVersion(id), 8);
  EXPECT_EQ(id, IdempotentEventId("0b5c8f3e-retry-me", 0, event)) << "a retry";
  std::set<std::string> others = {id, IdempotentEventId("0b5c8f3e-retry-mf", 0, event),
                                  IdempotentEventId("0b5c8f3e-retry-me", 1, event),
                                  IdempotentEventId("0b5c8f3e-retry-me", 0, event + " "),
                                  // the same bytes split differently between key and text
                                  IdempotentEventId("0b5c8f3e-retry-me0", 0, event.substr(1))};
  EXPECT_EQ(others.size(), 5u);
}

TEST(ParseIdempotencyKey, TakesABareOrQuotedKeyAndSaysWhatIsWrongWithOthers) {
  EXPECT_EQ(*ParseIdempotencyKey("8e03978e-40d5-43e8-bc93-6894a57f9324"), "8e03978e-40d5-43e8-bc93-6894a57f9324");
  EXPECT_EQ(*ParseIdempotencyKey("\"8e03978e-40d5-43e8-bc93-6894a57f9324\""), "8e03978e-40d5-43e8-bc93-6894a57f9324");
  EXPECT_EQ(ParseIdempotencyKey("").status().message(), "Idempotency-Key: empty; send a new UUID for each request");
  EXPECT_EQ(ParseIdempotencyKey("\"\"").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdempotencyKey(std::string(256, 'k')).status().message(),
            "Idempotency-Key: 256 bytes; at most 255 (a UUID is 36)");
  EXPECT_EQ(ParseIdempotencyKey("a key").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdempotencyKey("caf\xc3\xa9").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rapport::api
