#include "rapport/projections/identity_rules.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace rapport::projections {

bool SurvivesOver(const IdentityClaim& a, const IdentityClaim& b) {
  // (!known sorts false first: a known customer comes before an anonymous one.)
  return std::make_tuple(!a.known, a.first_seen_ms, a.customer_id) <
         std::make_tuple(!b.known, b.first_seen_ms, b.customer_id);
}

IdentifierVerdict Decide(v1::IdentityKind kind, std::vector<IdentityClaim> claims, const IdentityRules& rules) {
  // One claim per customer: a customer's facts are the same in each of
  // their claims except when they were seen first, so the earliest stands.
  std::sort(claims.begin(), claims.end(), [](const IdentityClaim& a, const IdentityClaim& b) {
    return std::tie(a.customer_id, a.first_seen_ms, a.known, a.event_id) <
           std::tie(b.customer_id, b.first_seen_ms, b.known, b.event_id);
  });
  std::vector<IdentityClaim> one_each;
  for (auto& claim : claims) {
    if (!one_each.empty() && one_each.back().customer_id == claim.customer_id) {
      one_each.back().known = one_each.back().known || claim.known;
      continue;
    }
    one_each.push_back(std::move(claim));
  }
  std::sort(one_each.begin(), one_each.end(), SurvivesOver);

  IdentifierVerdict verdict;
  auto refuse_all_from = [&](size_t first, std::string reason) {
    for (size_t i = first; i < one_each.size(); ++i) verdict.refused.push_back(one_each[i].customer_id);
    std::sort(verdict.refused.begin(), verdict.refused.end());
    if (!verdict.refused.empty()) verdict.reason = std::move(reason);
  };
  if (rules.unique.contains(kind)) {
    for (const auto& claim : one_each) verdict.linked.push_back(claim.customer_id);
    if (one_each.size() >= 2) {
      verdict.survivor = one_each.front().customer_id;
      for (size_t i = 1; i < one_each.size(); ++i) verdict.merged.push_back(one_each[i].customer_id);
      std::sort(verdict.merged.begin(), verdict.merged.end());
    }
    return verdict;
  }
  if (auto shared = rules.shared.find(kind); shared != rules.shared.end()) {
    const size_t limit = static_cast<size_t>(std::max(shared->second, 0));
    for (size_t i = 0; i < one_each.size() && i < limit; ++i) verdict.linked.push_back(one_each[i].customer_id);
    refuse_all_from(limit, absl::StrCat(v1::IdentityKind_Name(kind), " may be shared by at most ", limit,
                                        " customers ([identity] shared); ", one_each.size(), " claim this one"));
    return verdict;
  }
  refuse_all_from(0, absl::StrCat(v1::IdentityKind_Name(kind),
                                  " is neither a unique nor a shared kind in the [identity] rules: it links no one"));
  return verdict;
}

}  // namespace rapport::projections
