#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <string>

#include "rapport/cli/config.h"

namespace rapport::cli {

struct TailArgs {
  std::string topic = "events";  // events, dlq, alerts (names from the config) or any topic name
  bool from_end = false;         // only records that arrive from now on
  bool follow = false;           // keep waiting for new records
  uint64_t max = 0;              // stop after this many records (0: no limit)
};

// `rapport tail`: prints the records of a topic, one JSON object per line:
// {"partition":P,"offset":O,"timestamp":"...","key":"...","event":{...}} for an
// envelope, "alert":{...} for an alert, and "headers" and "error" for a record
// that is neither (dead letters). Returns the exit code: 0, or 2 when the topic
// cannot be read.
int RunTail(const Config& config, const TailArgs& args, std::ostream& out, std::ostream& err,
            const std::atomic<bool>& stop);

}  // namespace rapport::cli
