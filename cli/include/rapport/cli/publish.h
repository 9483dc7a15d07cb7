#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "rapport/cli/config.h"

namespace rapport::cli {

struct PublishArgs {
  std::string input = "-";  // a file, or "-" for standard input
  bool dry_run = false;     // validate only; no broker needed
  bool verbose = false;     // one line per delivered event on `out`
  bool progress = false;    // a live progress line on `err` (for terminals)
};

// Exit codes of `rapport publish`.
inline constexpr int kPublishOk = 0;           // every line sent (or valid, with dry_run)
inline constexpr int kPublishSomeFailed = 1;   // some lines rejected or undelivered
inline constexpr int kPublishCannotStart = 2;  // no input, bad config, broker or topic missing

// `rapport publish`: reads JSON lines, reports every invalid line on `err` as
// "line N: field: reason" and does not send it, sends the valid ones to the
// events topic, reports undelivered lines the same way, and ends with a
// summary on `out`. Blank lines are skipped. Stops reading when `stop` becomes
// true (Ctrl-C), still waiting for what was sent. Returns the exit code.
int RunPublish(const Config& config, const PublishArgs& args, std::istream& in, std::ostream& out, std::ostream& err,
               const std::atomic<bool>& stop);

}  // namespace rapport::cli
