#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "rapport/cli/config.h"
#include "rapport/simulator/simulator.h"

namespace rapport::cli {

struct SimulateArgs {
  simulator::SimulationOptions options;
  std::string out;        // JSON-lines file, or "-" for standard output
  bool publish = false;   // to the events topic instead
  std::string truth;      // optional CSV of what generated each customer
  double rate = 0;        // records per second when publishing; 0: as fast as possible
  bool progress = false;  // a live progress line on `err`
};

// `rapport simulate`: writes or publishes a simulated stream of touchpoint
// events, then a summary on `err` (so that `--out -` keeps standard output for
// the events). Returns 0, 1 when some records were not delivered, 2 when it
// could not start.
int RunSimulate(const Config& config, const SimulateArgs& args, std::ostream& out, std::ostream& err,
                const std::atomic<bool>& stop);

// Parses "2025-01-01" or an RFC 3339 time for --start.
Result<absl::Time> ParseStartTime(const std::string& text);

}  // namespace rapport::cli
