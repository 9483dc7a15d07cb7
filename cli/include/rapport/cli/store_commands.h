#pragma once

#include <atomic>
#include <iosfwd>
#include <string>
#include <vector>

#include "rapport/cli/config.h"

namespace rapport::cli {

struct RunArgs {
  bool until_caught_up = false;  // stop once the log, as it was at start, is applied
  bool read_only = false;        // serve the API from the store, apply nothing (a replay's directory)
};

// `rapport run`: folds the events topic into the projections in
// config.store.data_dir until stopped. Returns 0, or 2 when it cannot start
// or stops on an error.
int RunProjections(const Config& config, const RunArgs& args, std::ostream& out, std::ostream& err,
                   const std::atomic<bool>& stop);

// `rapport digest`: one line per projection, "NAME HEX", a digest of its state.
int RunDigest(const Config& config, std::ostream& out, std::ostream& err);

struct ReplayArgs {
  std::vector<std::string> projections = {"all"};  // names, or "all"
  std::string into;                                // the directory to build
  std::string from_time;                           // only events that occurred at or after (date or RFC 3339)
  std::string until;                               // only events that occurred before ("as of")
  std::string known_at;                            // only events the log held before (by recorded_at)
  bool progress = false;                           // draw a bar (stderr is a terminal)
};

// `rapport replay`: builds projection state from the events topic's history
// into a directory of its own: as of --until (every event that occurred
// before it, wherever it sits in the log), as known at --known-at (every
// event recorded before it), or both; without joining the
// live consumer group and without sending anything. Interrupted, it leaves a
// consistent directory; the same command resumes it. Returns 0 when done,
// 130 when interrupted, 2 on an error.
int RunReplay(const Config& config, const ReplayArgs& args, std::ostream& out, std::ostream& err,
              const std::atomic<bool>& stop);

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

struct ChurnFitArgs {
  std::string as_of;      // RFC 3339 time or date; empty: now, or the latest purchase if later
  bool no_store = false;  // print the fit only (works beside a running `rapport run`)
};

// `rapport churn fit`: fits the lifetime-value models on the churn state as
// of --as-of, with config.churn's period and CLV settings, stores them (the
// query API and `rapport query churn` then use them) and prints them as JSON.
// Returns 0, or 2 on an error.
int RunChurnFit(const Config& config, const ChurnFitArgs& args, std::ostream& out, std::ostream& err);

}  // namespace rapport::cli
