// Data-driven: tests/events/cases/invalid_events.txt lists invalid events and
// the exact messages a user sees for them.
#include "rapport/events/validation.h"

#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "rapport/events/admission.h"
#include "rapport/events/codec.h"
#include "rapport/testing/command.h"

namespace rapport::events {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795348800);  // 2026-11-22T12:00:00Z

struct InvalidCase {
  int line = 0;
  std::string json;
  std::vector<std::string> expected;
};

std::vector<InvalidCase> LoadCases() {
  std::vector<InvalidCase> cases;
  auto lines = testing::Lines(testing::ReadFile(testing::SourceDir() + "/tests/events/cases/invalid_events.txt"));
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("=> ", 0) == 0) {
      if (cases.empty())
        ADD_FAILURE() << "line " << i + 1 << ": expectation before any case";
      else
        cases.back().expected.push_back(line.substr(3));
      continue;
    }
    cases.push_back({static_cast<int>(i + 1), line, {}});
  }
  return cases;
}

TEST(Validation, EveryInvalidCaseGetsItsExactMessages) {
  auto cases = LoadCases();
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    EventAdmission admission;
    Admission result = admission.AdmitJson(c.json, kNow);
    std::vector<std::string> actual;
    for (const auto& v : result.violations) actual.push_back(v.ToString());
    EXPECT_FALSE(result.accepted()) << "case at line " << c.line << " was accepted";
    EXPECT_EQ(actual, c.expected) << "case at line " << c.line << ": " << c.json;
  }
}

TEST(Validation, NpsScoreZeroIsAValidAnswer) {
  EventAdmission admission;
  Admission result = admission.AdmitJson(
      R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"email","channel":"CHANNEL_EMAIL",)"
      R"("survey_answered":{"survey_id":"nps-1","nps_score":0}})",
      kNow);
  EXPECT_TRUE(result.accepted()) << result.violations.front().ToString();
}

TEST(Validation, AFreePurchaseIsAPurchase) {
  // A 100% voucher or a free promotional item: it counts for frequency and
  // recency, so a zero total is accepted; a negative one is not.
  EventAdmission admission;
  auto purchase = [&](const std::string& amount) {
    return admission.AdmitJson(
        R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"pos","channel":"CHANNEL_STORE",)"
        R"("purchase_completed":{"order_id":"o-1","total":{"currency":"EUR","amount":")" +
            amount + R"("},"items":[{"category":"promo","quantity":1,"unit_price":{"currency":"EUR","amount":")" +
            amount + R"("}}]}})",
        kNow);
  };
  Admission free = purchase("0.00");
  EXPECT_TRUE(free.accepted()) << free.violations.front().ToString();
  Admission negative = purchase("-0.01");
  ASSERT_FALSE(negative.accepted());
  EXPECT_EQ(negative.violations.front().ToString(),
            "purchase_completed.total.amount: must not be negative, got \"-0.01\"");
}

TEST(Validation, TooManyLineItemsIsOneViolationNotOnePerItem) {
  std::string items;
  for (int i = 0; i < 300'000; ++i) items += i == 0 ? "{}" : ",{}";
  EventAdmission admission({.max_json_bytes = 8 << 20});
  Admission result = admission.AdmitJson(
      R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"pos","channel":"CHANNEL_STORE",)"
      R"("purchase_completed":{"order_id":"o-1","total":{"currency":"EUR","amount":"1.00"},"items":[)" +
          items + "]}}",
      kNow);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_EQ(result.violations.front().ToString(), "purchase_completed.items: has 300000 items; at most 1000");
}

TEST(Validation, JsonNestedDeeperThanTheLimitIsRejectedBeforeParsing) {
  // 200,000 levels would overflow the stack of a recursive parser.
  EventAdmission admission;
  Admission deep = admission.AdmitJson(std::string(200'000, '[') + std::string(200'000, ']'), kNow);
  ASSERT_EQ(deep.violations.size(), 1u);
  EXPECT_EQ(deep.violations.front().ToString(),
            "JSON nested more than 64 levels deep (at byte 64); an event nests a few levels");
  // Brackets inside strings do not count; 64 levels are still parsed.
  EXPECT_FALSE(
      CheckJsonNesting(R"({"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["})", 1));
  EXPECT_FALSE(CheckJsonNesting(std::string(64, '[') + std::string(64, ']')));
  EXPECT_TRUE(CheckJsonNesting(std::string(65, '[') + std::string(65, ']')));
}

TEST(Validation, ValidFormsOfFormattedFieldsAreAccepted) {
  EventAdmission admission;
  auto accepted = [&](const std::string& details, const std::string& language) {
    auto result = admission.AdmitJson(
        R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"web","channel":"CHANNEL_WEB",)"
        R"("customer_registered":{"details":)" +
            details + R"(,"language":")" + language + R"(","country":"TW"}})",
        kNow);
    return result.accepted() ? std::string("ok") : result.violations.front().ToString();
  };
  EXPECT_EQ(
      accepted(R"({"email":"a.b+c@sub.example.co.uk","phone":"+12025550123","birth_date":"2000-02-29"})", "zh-Hant-TW"),
      "ok");
  EXPECT_EQ(accepted(R"({"email":"x@y.z","phone":"+4915112"})", "en"), "ok");
  EXPECT_EQ(accepted(R"({"birth_date":"2001-02-29"})", "en"),
            "customer_registered.details.birth_date: \"2001-02-29\" is not a date such as \"1984-03-21\"");
  EXPECT_EQ(accepted(R"({"email":"a@.com"})", "en"),
            "customer_registered.details.email: is not an e-mail address such as \"name@example.com\"");
  EXPECT_EQ(accepted(R"({"email":"a@b@c.com"})", "en"),
            "customer_registered.details.email: is not an e-mail address such as \"name@example.com\"");
  EXPECT_EQ(accepted(R"({"phone":"+0123456789"})", "en"),
            "customer_registered.details.phone: is not a phone number in E.164 form such as \"+4915112345678\"");
  EXPECT_EQ(accepted(R"({})", "e1"),
            "customer_registered.language: \"e1\" is not a BCP 47 language tag such as \"en\" or \"de-DE\"");
  EXPECT_EQ(accepted(R"({})", "en--US"),
            "customer_registered.language: \"en--US\" is not a BCP 47 language tag such as \"en\" or \"de-DE\"");
}

TEST(Validation, OccurredAtWithinTheAllowedSkewIsAccepted) {
  EventAdmission admission;
  Admission result = admission.AdmitJson(
      R"({"customer_id":"c-1","occurred_at":"2026-11-22T12:59:00Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
      kNow);
  EXPECT_TRUE(result.accepted());
}

TEST(Validation, ReplayJudgesAgainstRecordedAtNotTheWallClock) {
  // A stored record is re-validated against its own recorded_at, so the
  // verdict does not change when it is replayed years later.
  v1::Envelope event;
  event.set_event_id("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01");
  event.set_customer_id("c-1");
  event.set_source("web");
  event.set_channel(v1::CHANNEL_WEB);
  *event.mutable_occurred_at() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1795348800 + 1800);
  *event.mutable_recorded_at() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1795348800);
  event.mutable_consent_changed()->set_purpose(v1::CONSENT_PURPOSE_ANALYTICS);
  event.mutable_consent_changed()->set_status(v1::CONSENT_STATUS_GRANTED);
  ValidationContext at_record_time{.reference_time = kNow};
  EXPECT_TRUE(Validate(event, at_record_time).empty());
  ValidationContext too_early{.reference_time = kNow - absl::Hours(2)};
  EXPECT_EQ(Validate(event, too_early).size(), 2u);  // occurred_at and recorded_at lie in its future
}

TEST(Validation, OversizedEventIsRejectedWithItsSize) {
  EventAdmission admission({.max_json_bytes = 1 << 20, .max_event_bytes = 256});
  const std::string json =
      R"({"event_id":"019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01","customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z",)"
      R"("recorded_at":"2026-04-21T10:00:01Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("review_submitted":{"subject_type":"SUBJECT_TYPE_HOTEL","subject_id":"h-1","rating":4,"text":{"body":")" +
      std::string(300, 'x') + R"("}}})";
  v1::Envelope parsed;
  ASSERT_FALSE(ParseEventJson(json, parsed).has_value());
  const size_t encoded_size = EncodeEvent(parsed).size();
  ASSERT_GT(encoded_size, 300u);
  Admission result = admission.AdmitJson(json, kNow);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_EQ(result.violations[0].ToString(),
            "event is " + std::to_string(encoded_size) + " bytes encoded; the limit is 256");
}

TEST(Validation, OverlongJsonIsRejectedUnparsed) {
  EventAdmission admission({.max_json_bytes = 64});
  Admission result = admission.AdmitJson(std::string(65, ' '), kNow);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_EQ(result.violations[0].ToString(), "event is 65 bytes of JSON; the limit is 64");
}

TEST(Admission, AssignsAUuidV7AndRecordedAtWhenAbsent) {
  EventAdmission admission;
  Admission result = admission.AdmitJson(
      R"({"customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
      kNow);
  ASSERT_TRUE(result.accepted());
  const auto& e = result.event.envelope;
  EXPECT_EQ(e.event_id().size(), 36u);
  EXPECT_EQ(e.event_id()[14], '7');
  EXPECT_EQ(e.recorded_at().seconds(), 1795348800);
  EXPECT_FALSE(result.event.encoded.empty());
}

TEST(Admission, KeepsTheProducersEventIdInCanonicalFormAndItsRecordedAt) {
  EventAdmission admission;
  Admission result = admission.AdmitJson(
      R"({"event_id":"6F9619FF-8B86-4011-B42D-00C04FC964FF","customer_id":"c-1","occurred_at":"2026-04-21T10:00:00Z",)"
      R"("recorded_at":"2026-04-21T10:00:01Z","source":"web","channel":"CHANNEL_WEB",)"
      R"("consent_changed":{"purpose":"CONSENT_PURPOSE_ANALYTICS","status":"CONSENT_STATUS_GRANTED"}})",
      kNow);
  ASSERT_TRUE(result.accepted());
  EXPECT_EQ(result.event.envelope.event_id(), "6f9619ff-8b86-4011-b42d-00c04fc964ff");
  EXPECT_EQ(result.event.envelope.recorded_at().seconds(), 1776765601);
}

}  // namespace
}  // namespace rapport::events
