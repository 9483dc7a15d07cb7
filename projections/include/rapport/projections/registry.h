#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rapport/projections/projection.h"

namespace rapport::projections {

// The projections a process runs, in the order they are applied.
class ProjectionRegistry {
 public:
  void Add(std::unique_ptr<Projection> projection) { owned_.push_back(std::move(projection)); }
  std::vector<Projection*> all() const;
  // The column families of all of them.
  std::vector<std::string> families() const;

 private:
  std::vector<std::unique_ptr<Projection>> owned_;
};

// Adds rapport's built-in projections.
void RegisterProjections(ProjectionRegistry& registry);

}  // namespace rapport::projections
