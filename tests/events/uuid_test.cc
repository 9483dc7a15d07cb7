#include "rapport/events/uuid.h"

#include <gtest/gtest.h>

#include <set>

namespace rapport::events {
namespace {

TEST(UuidV7, CarriesTheTimeVersionAndVariant) {
  UuidV7Generator ids(42);
  absl::Time t = absl::FromUnixMillis(0x0190'1234'5678);
  std::string id = ids.Next(t);
  ASSERT_TRUE(IsWellFormedUuid(id)) << id;
  EXPECT_EQ(UuidVersion(id), 7);
  EXPECT_EQ(id.substr(0, 13), "01901234-5678");
  EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
}

TEST(UuidV7, IdsFromOneGeneratorStrictlyIncreaseEvenWithinAMillisecond) {
  UuidV7Generator ids(7);
  absl::Time t = absl::FromUnixMillis(1'795'348'800'000);
  std::string previous = ids.Next(t);
  for (int i = 0; i < 10000; ++i) {
    // 10,000 ids in one millisecond overflow the 12-bit counter twice.
    std::string id = ids.Next(t);
    ASSERT_LT(previous, id);
    previous = id;
  }
  // A clock that steps back does not make ids go back either.
  EXPECT_LT(previous, ids.Next(t - absl::Seconds(5)));
}

TEST(UuidV7, SeedsFromTheSystemGiveDistinctIds) {
  std::set<std::string> seen;
  absl::Time t = absl::FromUnixMillis(1'795'348'800'000);
  for (int i = 0; i < 100; ++i) seen.insert(UuidV7Generator().Next(t));
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Uuid, WellFormedMeansCanonicalTextVariantAndVersion) {
  EXPECT_TRUE(IsWellFormedUuid("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01"));
  EXPECT_TRUE(IsWellFormedUuid("6F9619FF-8B86-4011-B42D-00C04FC964FF"));  // v4, upper case
  EXPECT_FALSE(IsWellFormedUuid("019a6f3e5b107c3a9d4e1f2a3b4c5d01"));     // no dashes
  EXPECT_FALSE(IsWellFormedUuid("{019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d01}"));
  EXPECT_FALSE(IsWellFormedUuid("019a6f3e-5b10-0c3a-9d4e-1f2a3b4c5d01"));  // version 0
  EXPECT_FALSE(IsWellFormedUuid("019a6f3e-5b10-7c3a-1d4e-1f2a3b4c5d01"));  // NCS variant
  EXPECT_FALSE(IsWellFormedUuid("019a6f3e-5b10-7c3a-9d4e-1f2a3b4c5d0g"));
  EXPECT_FALSE(IsWellFormedUuid(""));
}

}  // namespace
}  // namespace rapport::events
