#pragma once

#include <atomic>
#include <ostream>
#include <string>
#include <vector>

#include "rapport/cli/config.h"

namespace rapport::cli {

struct ExportArgs {
  std::vector<std::string> types;  // event type names; empty: every type
  std::string customer;            // only this customer (reads only their partition)
  std::string since;               // occurred_at at or after (date or RFC 3339)
  std::string until;               // occurred_at before
  std::string known_at;            // recorded_at (what the log held) before
  std::string format = "jsonl";    // jsonl or csv
  std::string out = "-";           // a file, or - for standard output
  bool progress = false;           // draw a progress bar (stderr is a terminal)
};

// `rapport export`: streams the events of the log that match, decoded:
// JSON lines in the proto3 JSON mapping (as `rapport publish` reads them), or
// CSV with one row per event. CSV columns are stable for a set of types:
// the envelope's fields, `type`, then each selected type's fields in catalog
// and field order, nested messages flattened with dots
// (purchase_completed.total.amount), lists and maps as JSON in one cell.
// --since and --until seek by record timestamp (Kafka's offsets-for-times)
// instead of reading from the start, then filter on occurred_at exactly.
// Records that are not events are skipped and counted. Returns 0, or 2 when
// the arguments are wrong or the log cannot be read.
int RunExport(const Config& config, const ExportArgs& args, std::ostream& out, std::ostream& err,
              const std::atomic<bool>& stop);

// The CSV header for these types (all when empty), for docs and tests.
std::vector<std::string> CsvColumns(const std::vector<std::string>& types);

}  // namespace rapport::cli
