#pragma once

#include <iosfwd>

#include "rapport/cli/config.h"

namespace rapport::cli {

// `rapport cluster status`: the instances of `[run] group_id` as the members
// topic tells them (live or not, their API's URL, the partitions each
// applies with its lag), and the partitions no live instance applies. Joins
// nothing. `json`: one JSON object instead of the table. Returns 0, 1 when
// a partition has no live owner, 2 when the topic cannot be read.
int RunClusterStatus(const Config& config, bool json, std::ostream& out, std::ostream& err);

}  // namespace rapport::cli
