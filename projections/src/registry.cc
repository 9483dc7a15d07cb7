#include "rapport/projections/registry.h"

#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/reviews.h"

namespace rapport::projections {

std::vector<Projection*> ProjectionRegistry::all() const {
  std::vector<Projection*> result;
  for (const auto& p : owned_) result.push_back(p.get());
  return result;
}

std::vector<std::string> ProjectionRegistry::families() const {
  std::vector<std::string> result;
  for (const auto& p : owned_) result.push_back(p->Family());
  return result;
}

void RegisterProjections(ProjectionRegistry& registry) {
  registry.Add(std::make_unique<CustomerProfileProjection>());
  registry.Add(std::make_unique<ReviewsProjection>());
  registry.Add(std::make_unique<ChurnProjection>());
}

}  // namespace rapport::projections
