#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "rapport/cli/config.h"

namespace rapport::cli {

struct RunArgs {
  bool until_caught_up = false;  // stop once the log, as it was at start, is applied
};

// `rapport run`: folds the events topic into the projections in
// config.store.data_dir until stopped. Returns 0, or 2 when it cannot start
// or stops on an error.
int RunProjections(const Config& config, const RunArgs& args, std::ostream& out, std::ostream& err,
                   const std::atomic<bool>& stop);

// `rapport digest`: one line per projection, "NAME HEX", a digest of its state.
int RunDigest(const Config& config, std::ostream& out, std::ostream& err);

struct QueryArgs {
  std::string what;  // "profile", "lookup", "reviews", "churn" or "segments"
  std::string id;    // the customer id (profile), identity value (lookup) or TYPE/ID subject (reviews)
  std::string identity_kind = "email";  // lookup: email, phone, card, device or external
  std::string as_of;                    // reviews: RFC 3339 time or date for "last 30 days" (default: now)
  bool items = false;                   // reviews: the reviews themselves, newest first
  size_t limit = 20;                    // reviews --items: page size
  std::string cursor;                   // reviews --items: the next_cursor of the previous page
  std::string customer;                 // reviews: the reviews this customer wrote
};

// `rapport query`: prints JSON; works on a stopped store or beside a running one.
int RunQuery(const Config& config, const QueryArgs& args, std::ostream& out, std::ostream& err);

}  // namespace rapport::cli
