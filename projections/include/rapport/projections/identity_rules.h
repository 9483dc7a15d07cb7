#pragma once

// The rules identity resolution decides merges by (issue 19: one person, one
// customer). Customers that claim one identifier (an identity_linked event
// each) are one person when the identifier's kind names one person (an
// e-mail, a phone, a loyalty card, another system's id); a kind a few people
// may share (a family's device) links up to a limit of customers and merges
// none. The verdict depends on the set of claims only, never on the order
// they arrive in: claims come from every partition, and partitions interleave
// differently from run to run (ARCHITECTURE.md decision 4).
//
// Not wired into the runner yet: the claims topic, the membership records and
// the merged reads come next (see the notes).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rapport/v1/customer.pb.h"

namespace rapport::projections {

struct IdentityRules {
  // Kinds that name one person: every customer claiming one identifier of
  // such a kind is the same person.
  std::set<v1::IdentityKind> unique{v1::IDENTITY_KIND_EMAIL, v1::IDENTITY_KIND_PHONE, v1::IDENTITY_KIND_LOYALTY_CARD,
                                    v1::IDENTITY_KIND_EXTERNAL_ID};
  // Kinds several people may share, with how many customers one identifier
  // may be linked to; such an identifier merges no one.
  std::map<v1::IdentityKind, int> shared{{v1::IDENTITY_KIND_DEVICE, 5}};
};

// A customer's claim to an identifier, as the identifier's home knows it.
struct IdentityClaim {
  std::string customer_id;
  bool known = false;         // registered (customer_registered), not an anonymous id
  int64_t first_seen_ms = 0;  // when the customer was first seen (their earliest occurred_at known)
  std::string event_id;       // the identity_linked event that made the claim: provenance
};

// Whether `a` survives over `b` when both are one person: a known customer
// over an anonymous one, then the one seen first, then the smaller id.
bool SurvivesOver(const IdentityClaim& a, const IdentityClaim& b);

struct IdentifierVerdict {
  // A unique kind: the survivor, and the other claimants merged into it (in
  // id order). Unset with fewer than two claimants.
  std::optional<std::string> survivor;
  std::vector<std::string> merged;
  // The claimants the identifier is linked to (in survival order): every one
  // of a unique kind; up to the limit of a shared kind.
  std::vector<std::string> linked;
  // Claims refused (in id order), and why.
  std::vector<std::string> refused;
  std::string reason;
};

// The verdict on one identifier of `kind` from every claim to it (a
// customer's repeated claims count once, with the earliest seen).
IdentifierVerdict Decide(v1::IdentityKind kind, std::vector<IdentityClaim> claims, const IdentityRules& rules);

}  // namespace rapport::projections
