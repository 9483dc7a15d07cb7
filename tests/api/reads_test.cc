// The names the API and `rapport query` share for subject types and lookup
// kinds: what a client may send, and what is refused.
#include "rapport/api/reads.h"

#include <gtest/gtest.h>

#include <string>

namespace rapport::api {
namespace {

TEST(SubjectTypeNamed, TakesEachTypeInAnyCaseAndNothingElse) {
  EXPECT_EQ(SubjectTypeNamed("hotel"), v1::SUBJECT_TYPE_HOTEL);
  EXPECT_EQ(SubjectTypeNamed("HoTeL"), v1::SUBJECT_TYPE_HOTEL);
  EXPECT_EQ(SubjectTypeNamed("restaurant"), v1::SUBJECT_TYPE_RESTAURANT);
  EXPECT_EQ(SubjectTypeNamed("unspecified"), std::nullopt) << "the proto's zero value is not a type";
  EXPECT_EQ(SubjectTypeNamed(""), std::nullopt);
  EXPECT_EQ(SubjectTypeNamed("SUBJECT_TYPE_HOTEL"), std::nullopt) << "the short name only";
  EXPECT_EQ(SubjectTypeNamed(std::string("hotel\0x", 7)), std::nullopt);
  EXPECT_EQ(SubjectTypeNamed(std::string(100000, 'h')), std::nullopt);
}

TEST(LookupKindNamed, TakesTheApisNames) {
  EXPECT_EQ(LookupKindNamed("email"), v1::IDENTITY_KIND_EMAIL);
  EXPECT_EQ(LookupKindNamed("phone"), v1::IDENTITY_KIND_PHONE);
  EXPECT_EQ(LookupKindNamed("card"), v1::IDENTITY_KIND_LOYALTY_CARD);
  EXPECT_EQ(LookupKindNamed("device"), v1::IDENTITY_KIND_DEVICE);
  EXPECT_EQ(LookupKindNamed("external_id"), v1::IDENTITY_KIND_EXTERNAL_ID);
  EXPECT_EQ(LookupKindNamed("external"), std::nullopt) << "the command maps its old name itself";
  EXPECT_EQ(LookupKindNamed("EMAIL"), std::nullopt);
  EXPECT_EQ(LookupKindNamed(""), std::nullopt);
}

}  // namespace
}  // namespace rapport::api
