// The rules identity resolution decides merges by: hand-worked claims for
// each rule and each survivor choice, and the same verdict whatever order
// the claims arrive in.
#include "rapport/projections/identity_rules.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace rapport::projections {
namespace {

using Ids = std::vector<std::string>;

IdentityClaim Claim(const std::string& id, bool known, int64_t first_seen_ms) {
  return {.customer_id = id, .known = known, .first_seen_ms = first_seen_ms, .event_id = "ev-" + id};
}

TEST(IdentityRules, OfOnePersonAKnownCustomerSurvivesThenTheOneSeenFirstThenTheSmallerId) {
  const IdentityRules rules;
  // An anonymous web visitor seen first, then the customer who signed up.
  auto verdict = Decide(v1::IDENTITY_KIND_EMAIL, {Claim("anon-7f3", false, 100), Claim("c-1001", true, 500)}, rules);
  EXPECT_EQ(verdict.survivor, "c-1001") << "known over anonymous, though seen later";
  EXPECT_EQ(verdict.merged, Ids{"anon-7f3"});
  EXPECT_EQ(verdict.linked, (Ids{"c-1001", "anon-7f3"}));
  EXPECT_TRUE(verdict.refused.empty());

  verdict = Decide(v1::IDENTITY_KIND_PHONE, {Claim("c-2", true, 500), Claim("c-9", true, 100)}, rules);
  EXPECT_EQ(verdict.survivor, "c-9") << "both known: the one seen first";
  verdict = Decide(v1::IDENTITY_KIND_LOYALTY_CARD, {Claim("c-b", false, 7), Claim("c-a", false, 7)}, rules);
  EXPECT_EQ(verdict.survivor, "c-a") << "seen at the same moment: the smaller id";
  EXPECT_EQ(verdict.merged, Ids{"c-b"});

  verdict = Decide(v1::IDENTITY_KIND_EXTERNAL_ID, {Claim("c-1", true, 1)}, rules);
  EXPECT_FALSE(verdict.survivor) << "one claimant: nobody to merge";
  EXPECT_EQ(verdict.linked, Ids{"c-1"});
}

TEST(IdentityRules, ASharedKindLinksUpToItsLimitMergesNoOneAndRefusesTheRest) {
  IdentityRules rules;
  rules.shared[v1::IDENTITY_KIND_DEVICE] = 2;
  auto verdict = Decide(v1::IDENTITY_KIND_DEVICE,
                        {Claim("kid", false, 300), Claim("mum", true, 200), Claim("dad", true, 100)}, rules);
  EXPECT_FALSE(verdict.survivor) << "a family's tablet makes no one the same person";
  EXPECT_TRUE(verdict.merged.empty());
  EXPECT_EQ(verdict.linked, (Ids{"dad", "mum"}));
  EXPECT_EQ(verdict.refused, Ids{"kid"});
  EXPECT_EQ(verdict.reason,
            "IDENTITY_KIND_DEVICE may be shared by at most 2 customers ([identity] shared); 3 claim this one");

  verdict = Decide(v1::IDENTITY_KIND_UNSPECIFIED, {Claim("c-2", true, 1), Claim("c-1", true, 1)}, rules);
  EXPECT_FALSE(verdict.survivor);
  EXPECT_EQ(verdict.refused, (Ids{"c-1", "c-2"}));
  EXPECT_NE(verdict.reason.find("neither a unique nor a shared kind"), std::string::npos) << verdict.reason;
}

TEST(IdentityRules, ACustomersRepeatedClaimsCountOnceWithTheEarliestSeen) {
  IdentityRules rules;
  rules.shared[v1::IDENTITY_KIND_DEVICE] = 2;
  auto verdict =
      Decide(v1::IDENTITY_KIND_DEVICE,
             {Claim("a", false, 900), Claim("b", false, 500), Claim("a", false, 100), Claim("c", false, 700)}, rules);
  EXPECT_EQ(verdict.linked, (Ids{"a", "b"})) << "a was first seen at 100, not 900";
  EXPECT_EQ(verdict.refused, Ids{"c"});
}

TEST(IdentityRules, TheVerdictIsTheSameWhateverOrderTheClaimsArriveIn) {
  IdentityRules rules;
  rules.shared[v1::IDENTITY_KIND_DEVICE] = 3;
  std::vector<IdentityClaim> claims = {Claim("anon-1", false, 10), Claim("c-7", true, 50), Claim("anon-2", false, 10),
                                       Claim("c-3", true, 50), Claim("c-7", true, 20)};
  for (v1::IdentityKind kind : {v1::IDENTITY_KIND_EMAIL, v1::IDENTITY_KIND_DEVICE}) {
    std::sort(claims.begin(), claims.end(),
              [](const auto& a, const auto& b) { return a.customer_id + a.event_id < b.customer_id + b.event_id; });
    const IdentifierVerdict first = Decide(kind, claims, rules);
    int orders = 0;
    do {
      const IdentifierVerdict verdict = Decide(kind, claims, rules);
      EXPECT_EQ(verdict.survivor, first.survivor);
      EXPECT_EQ(verdict.merged, first.merged);
      EXPECT_EQ(verdict.linked, first.linked);
      EXPECT_EQ(verdict.refused, first.refused);
      ++orders;
    } while (std::next_permutation(claims.begin(), claims.end(), [](const auto& a, const auto& b) {
      return a.customer_id + a.event_id < b.customer_id + b.event_id;
    }));
    EXPECT_GE(orders, 60);  // 5 claims, two of them alike
    if (kind == v1::IDENTITY_KIND_EMAIL) {
      EXPECT_EQ(first.survivor, "c-7") << "known, and seen first at 20";
      EXPECT_EQ(first.merged, (Ids{"anon-1", "anon-2", "c-3"}));
    } else {
      EXPECT_EQ(first.linked, (Ids{"c-7", "c-3", "anon-1"}));
      EXPECT_EQ(first.refused, Ids{"anon-2"});
    }
  }
}

}  // namespace
}  // namespace rapport::projections
