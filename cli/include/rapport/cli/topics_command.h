#pragma once

#include <iosfwd>

#include "rapport/cli/config.h"

namespace rapport::cli {

// `rapport topics ensure`: creates the events, dead-letter and alerts topics
// that are missing and reports, for each, "created", "as configured" or every
// difference from the config. Returns 0 when all match, 1 on a mismatch, 2
// when the cluster cannot be reached or refuses.
int RunTopicsEnsure(const Config& config, std::ostream& out, std::ostream& err);

}  // namespace rapport::cli
