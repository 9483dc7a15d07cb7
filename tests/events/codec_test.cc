#include "rapport/events/codec.h"

#include <gtest/gtest.h>

#include "google/protobuf/util/message_differencer.h"

namespace rapport::events {
namespace {

using google::protobuf::util::MessageDifferencer;

constexpr char kPurchase[] =
    R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01","customer_id":"c-1001",)"
    R"("occurred_at":"2026-03-14T18:42:07Z","source":"pos/store-042","channel":"CHANNEL_STORE",)"
    R"("purchase_completed":{"order_id":"o-1","total":{"currency":"EUR","amount":"57.30"},)"
    R"("items":[{"sku":"s-1","category":"groceries","quantity":2,"unit_price":{"currency":"EUR","amount":"19.90"}}]}})";

TEST(Codec, JsonRoundTripKeepsEveryField) {
  v1::Envelope event;
  ASSERT_FALSE(ParseEventJson(kPurchase, event).has_value());
  EXPECT_EQ(event.purchase_completed().items(0).unit_price().amount(), "19.90");
  v1::Envelope again;
  ASSERT_FALSE(ParseEventJson(EventToJson(event), again).has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(event, again));
}

TEST(Codec, PrintsSnakeCaseFieldNamesOnOneLine) {
  v1::Envelope event;
  ASSERT_FALSE(ParseEventJson(kPurchase, event).has_value());
  std::string json = EventToJson(event);
  EXPECT_NE(json.find("\"purchase_completed\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"unit_price\":"), std::string::npos) << json;
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(Codec, AcceptsLowerCamelCaseFieldNames) {
  v1::Envelope snake, camel;
  ASSERT_FALSE(ParseEventJson(kPurchase, snake).has_value());
  ASSERT_FALSE(
      ParseEventJson(
          R"({"eventId":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01","customerId":"c-1001",)"
          R"("occurredAt":"2026-03-14T18:42:07Z","source":"pos/store-042","channel":"CHANNEL_STORE",)"
          R"("purchaseCompleted":{"orderId":"o-1","total":{"currency":"EUR","amount":"57.30"},)"
          R"("items":[{"sku":"s-1","category":"groceries","quantity":2,"unitPrice":{"currency":"EUR","amount":"19.90"}}]}})",
          camel)
          .has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(snake, camel));
}

TEST(Codec, BinaryRoundTripIsExact) {
  v1::Envelope event;
  ASSERT_FALSE(ParseEventJson(kPurchase, event).has_value());
  std::string bytes = EncodeEvent(event);
  v1::Envelope decoded;
  ASSERT_FALSE(DecodeEvent(bytes, decoded).has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(event, decoded));
  EXPECT_EQ(EncodeEvent(decoded), bytes);
}

TEST(Codec, EncodingIsDeterministicForMaps) {
  // Map entries inserted in different orders must give the same bytes, or the
  // same event could hash and compare differently in two runs.
  v1::Envelope a, b;
  for (const char* key : {"zeta", "alpha", "mid", "beta"}) (*a.mutable_profile_updated()->mutable_traits())[key] = key;
  for (const char* key : {"beta", "mid", "alpha", "zeta"}) (*b.mutable_profile_updated()->mutable_traits())[key] = key;
  EXPECT_EQ(EncodeEvent(a), EncodeEvent(b));
}

TEST(Codec, JsonIsTheSameForTheSameEventWhateverTheMapOrder) {
  v1::Envelope a, b;
  for (const char* key : {"zeta", "alpha", "mid", "beta", "gamma", "delta"}) {
    (*a.mutable_profile_updated()->mutable_traits())[key] = key;
  }
  for (const char* key : {"delta", "gamma", "beta", "mid", "alpha", "zeta"}) {
    (*b.mutable_profile_updated()->mutable_traits())[key] = key;
  }
  std::string json = EventToJson(a);
  EXPECT_EQ(json, EventToJson(b));
  EXPECT_EQ(json, R"({"profile_updated":{"traits":{"alpha":"alpha","beta":"beta","delta":"delta","gamma":"gamma",)"
                  R"("mid":"mid","zeta":"zeta"}}})");
}

TEST(Codec, GarbageBytesAreNotAnEnvelope) {
  v1::Envelope event;
  auto violation = DecodeEvent(std::string("\xff\xff\xff\xff\x0f garbage", 13), event);
  ASSERT_TRUE(violation.has_value());
  EXPECT_EQ(violation->ToString(), "not a rapport.v1.Envelope in protobuf binary (13 bytes that do not parse)");
}

}  // namespace
}  // namespace rapport::events
