// customer_profile on hand-worked event sequences, in a store of its own.
#include "rapport/projections/customer_profile.h"

#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "projection_harness.h"
#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

class CustomerProfileTest : public ::testing::Test {
 protected:
  void Apply(const std::vector<std::string>& lines, size_t per_batch = 0) {
    EXPECT_TRUE(harness_.Apply(lines, 0, per_batch).empty());
  }
  state::v1::CustomerProfile Profile(const std::string& id) {
    auto profile = CustomerProfileView(harness_.store(), 1).Profile(id);
    EXPECT_OK(profile);
    return profile.ok() ? *profile : state::v1::CustomerProfile();
  }

  CustomerProfileProjection projection_;
  ProjectionHarness harness_{projection_};
};

std::string Event(const std::string& time, const std::string& channel, const std::string& payload,
                  const std::string& customer = "c-1") {
  return R"({"customer_id":")" + customer + R"(","occurred_at":")" + time + R"(","source":"test","channel":")" +
         channel + R"(",)" + payload + "}";
}

const std::vector<std::string> kJourney = {
    Event(
        "2026-03-01T10:00:00Z", "CHANNEL_WEB",
        R"("customer_registered":{"kind":"CUSTOMER_KIND_CONSUMER","details":{"given_name":"Ada","email":"ada@example.com"},"country":"GB"})"),
    Event("2026-03-01T10:00:05Z", "CHANNEL_WEB",
          R"("identity_linked":{"kind":"IDENTITY_KIND_EMAIL","identifier":{"value":"ada@example.com"}})"),
    Event("2026-03-02T12:00:00Z", "CHANNEL_STORE",
          R"("purchase_completed":{"order_id":"o-1","total":{"currency":"GBP","amount":"30.00"},"items":[)"
          R"({"category":"groceries","quantity":2,"unit_price":{"currency":"GBP","amount":"5.00"}},)"
          R"({"category":"restaurants","quantity":1,"unit_price":{"currency":"GBP","amount":"20.00"}}]})"),
    Event("2026-03-05T18:30:00Z", "CHANNEL_APP",
          R"("purchase_completed":{"order_id":"o-2","total":{"currency":"GBP","amount":"12.50"},"items":[)"
          R"({"category":"restaurants","quantity":1,"unit_price":{"currency":"GBP","amount":"12.50"}}]})"),
    Event("2026-03-06T09:00:00Z", "CHANNEL_WEB",
          R"("refund_issued":{"order_id":"o-1","amount":{"currency":"GBP","amount":"5.00"}})"),
    Event("2026-03-07T09:00:00Z", "CHANNEL_CALL_CENTRE",
          R"("complaint_opened":{"case_id":"k-1","category":"COMPLAINT_CATEGORY_BILLING","severity":"SEVERITY_HIGH"})"),
    Event("2026-03-07T09:30:00Z", "CHANNEL_CALL_CENTRE",
          R"("complaint_opened":{"case_id":"k-2","category":"COMPLAINT_CATEGORY_STAFF","severity":"SEVERITY_LOW"})"),
    Event("2026-03-09T09:00:00Z", "CHANNEL_CALL_CENTRE",
          R"("complaint_resolved":{"case_id":"k-1","resolution":"RESOLUTION_RESOLVED"})"),
    Event(
        "2026-03-10T08:00:00Z", "CHANNEL_KIOSK",
        R"("service_rated":{"satisfaction":"SATISFACTION_DISSATISFIED","point":"SERVICE_POINT_COUNTER","point_id":"c1"})"),
    Event("2026-03-11T08:00:00Z", "CHANNEL_EMAIL", R"("survey_answered":{"nps_score":0})"),
    Event("2026-03-12T08:00:00Z", "CHANNEL_WEB",
          R"("review_submitted":{"subject_type":"SUBJECT_TYPE_STORE","subject_id":"s-1","rating":2})"),
    Event("2026-03-13T08:00:00Z", "CHANNEL_WEB",
          R"("review_submitted":{"subject_type":"SUBJECT_TYPE_PRODUCT","subject_id":"p-1","rating":5})"),
    Event("2026-03-14T08:00:00Z", "CHANNEL_OTHER",
          R"("loyalty_activity":{"program_id":"club","action":"LOYALTY_ACTION_POINTS_EARNED","points":300})"),
    Event("2026-03-15T08:00:00Z", "CHANNEL_OTHER",
          R"("loyalty_activity":{"program_id":"club","action":"LOYALTY_ACTION_POINTS_REDEEMED","points":100})"),
    Event("2026-03-15T08:00:01Z", "CHANNEL_OTHER",
          R"("loyalty_activity":{"program_id":"club","action":"LOYALTY_ACTION_TIER_CHANGED","tier":"silver"})"),
    Event("2026-03-16T08:00:00Z", "CHANNEL_WEB",
          R"("profile_updated":{"traits":{"segment":"core","vip":"no"},"preferences":{"seat":"aisle"}})"),
    Event("2026-03-17T08:00:00Z", "CHANNEL_WEB",
          R"("profile_updated":{"traits":{"vip":""},"preferences":{"meal":"vegan"}})"),
    Event("2026-03-18T08:00:00Z", "CHANNEL_WEB",
          R"("consent_changed":{"purpose":"CONSENT_PURPOSE_MARKETING_EMAIL","status":"CONSENT_STATUS_GRANTED"})"),
    Event("2026-03-19T08:00:00Z", "CHANNEL_WEB",
          R"("consent_changed":{"purpose":"CONSENT_PURPOSE_MARKETING_EMAIL","status":"CONSENT_STATUS_WITHDRAWN"})"),
};

TEST_F(CustomerProfileTest, AJourneyGivesTheHandWorkedProfile) {
  Apply(kJourney);
  auto p = Profile("c-1");
  EXPECT_EQ(p.events(), 19);
  EXPECT_EQ(p.details().given_name(), "Ada");
  EXPECT_EQ(p.country(), "GB");
  ASSERT_EQ(p.identities_size(), 1);
  EXPECT_EQ(p.identities(0).identifier().value(), "ada@example.com");
  EXPECT_EQ(p.orders(), 2);
  ASSERT_EQ(p.revenue_size(), 1);
  EXPECT_EQ(p.revenue(0).currency(), "GBP");
  EXPECT_EQ(p.revenue(0).minor_units(), 4250);
  EXPECT_EQ(p.refunds(), 1);
  EXPECT_EQ(p.refunded(0).minor_units(), 500);
  ASSERT_EQ(p.category_spend_size(), 2);
  EXPECT_EQ(p.category_spend(0).category(), "groceries");
  EXPECT_EQ(p.category_spend(0).minor_units(), 1000);
  EXPECT_EQ(p.category_spend(1).category(), "restaurants");
  EXPECT_EQ(p.category_spend(1).minor_units(), 3250);
  ASSERT_EQ(p.open_complaints_size(), 1);
  EXPECT_EQ(p.open_complaints(0).case_id(), "k-2");
  EXPECT_EQ(p.complaints_opened(), 2);
  EXPECT_EQ(p.complaints_resolved(), 1);
  EXPECT_EQ(p.last_service_rating(), v1::SATISFACTION_DISSATISFIED);
  EXPECT_TRUE(p.has_nps());
  EXPECT_EQ(p.last_nps(), 0);
  EXPECT_EQ(p.reviews(), 2);
  EXPECT_EQ(p.review_rating_sum(), 7);
  EXPECT_EQ(p.loyalty_points(), 200);
  EXPECT_EQ(p.loyalty_tier(), "silver");
  EXPECT_EQ(p.traits().size(), 1u) << "a trait set to \"\" is removed";
  EXPECT_EQ(p.traits().at("segment"), "core");
  EXPECT_EQ(p.preferences().seat(), "aisle");
  EXPECT_EQ(p.preferences().meal(), "vegan");
  ASSERT_EQ(p.consents_size(), 1);
  EXPECT_EQ(p.consents(0).status(), v1::CONSENT_STATUS_WITHDRAWN);
  EXPECT_EQ(p.first_order_ms(), 1772452800000);  // 2026-03-02T12:00:00Z
  ASSERT_EQ(p.channels_size(), 7);
  EXPECT_EQ(p.channels(0).channel(), v1::CHANNEL_STORE);
  EXPECT_EQ(p.channels(0).events(), 1);
}

TEST_F(CustomerProfileTest, TheJsonViewShowsMoneyAsDecimalsAndAverages) {
  Apply(kJourney);
  std::string json = CustomerProfileView::ToJson(Profile("c-1"));
  EXPECT_NE(json.find("\"GBP\": \"42.50\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"average_order_value\": \"21.25\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"mean_rating\": 3.5"), std::string::npos) << json;
  EXPECT_EQ(json, CustomerProfileView::ToJson(Profile("c-1"))) << "the same state prints the same text";
}

TEST_F(CustomerProfileTest, IdentityLookupFindsTheCustomer) {
  Apply(kJourney);
  CustomerProfileView view(harness_.store(), 1);
  auto found = view.Lookup(v1::IDENTITY_KIND_EMAIL, "ada@example.com");
  ASSERT_OK(found);
  EXPECT_EQ(*found, "c-1");
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_PHONE, "ada@example.com").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CustomerProfileTest, ContactDetailsAreFoundByLookupAndFollowChanges) {
  Apply({Event("2026-03-01T10:00:00Z", "CHANNEL_WEB",
               R"("customer_registered":{"details":{"email":"bo@example.com","phone":"+441234567890"}})", "c-2"),
         Event("2026-03-01T11:00:00Z", "CHANNEL_WEB", R"("customer_registered":{"details":{"email":"cy@example.com"}})",
               "c-3")});
  CustomerProfileView view(harness_.store(), 1);
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_EMAIL, "bo@example.com").value_or(""), "c-2");
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_PHONE, "+441234567890").value_or(""), "c-2");
  // A changed e-mail: the new one is found, the old one no longer.
  Apply({Event("2026-03-02T10:00:00Z", "CHANNEL_APP", R"("profile_updated":{"details":{"email":"bo@new.example"}})",
               "c-2")});
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_EMAIL, "bo@new.example").value_or(""), "c-2");
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_EMAIL, "bo@example.com").status().code(), absl::StatusCode::kNotFound);
  // Taking over an address another customer used: it now points to the newcomer,
  // and the other customer's later change does not remove it.
  Apply({Event("2026-03-03T10:00:00Z", "CHANNEL_APP", R"("profile_updated":{"details":{"email":"cy@example.com"}})",
               "c-2"),
         Event("2026-03-04T10:00:00Z", "CHANNEL_APP", R"("profile_updated":{"details":{"email":"cy@other.example"}})",
               "c-3")});
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_EMAIL, "cy@example.com").value_or(""), "c-2");
  EXPECT_EQ(view.Lookup(v1::IDENTITY_KIND_EMAIL, "cy@other.example").value_or(""), "c-3");
}

// Sets every string field (and map) of `message` to a value naming it.
void FillStrings(google::protobuf::Message& message) {
  const auto* reflection = message.GetReflection();
  const auto* descriptor = message.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->is_map()) {
      auto* entry = reflection->AddMessage(&message, field);
      FillStrings(*entry);
    } else if (field->type() == google::protobuf::FieldDescriptor::TYPE_STRING && !field->is_repeated()) {
      reflection->SetString(&message, field, field->name() + "-value");
    } else {
      ADD_FAILURE() << field->full_name() << ": a field the profile's JSON does not render yet";
    }
  }
}

TEST_F(CustomerProfileTest, DetailsAndPreferencesRenderAsTheirProtoJson) {
  state::v1::CustomerProfile profile;
  FillStrings(*profile.mutable_details());
  FillStrings(*profile.mutable_preferences());
  auto rendered = nlohmann::json::parse(CustomerProfileView::ToJson(profile));
  EXPECT_EQ(rendered["details"], nlohmann::json::parse(events::ToJsonDeterministic(profile.details())));
  EXPECT_EQ(rendered["preferences"], nlohmann::json::parse(events::ToJsonDeterministic(profile.preferences())));
}

TEST_F(CustomerProfileTest, BatchBoundariesDoNotChangeTheState) {
  Apply(kJourney);  // one batch
  const std::string one_batch = harness_.Digest();
  harness_.Reset();
  Apply(kJourney, 1);  // a batch per event
  EXPECT_EQ(harness_.Digest(), one_batch);
  harness_.Reset();
  Apply(kJourney, 4);
  EXPECT_EQ(harness_.Digest(), one_batch);
}

TEST_F(CustomerProfileTest, DifferentStateGivesADifferentDigest) {
  Apply({kJourney[0]});
  const std::string before = harness_.Digest();
  Apply({kJourney[2]});
  EXPECT_NE(harness_.Digest(), before);
}

}  // namespace
}  // namespace rapport::projections
