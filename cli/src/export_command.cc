#include "rapport/cli/export_command.h"

#include <chrono>
#include <fstream>
#include <set>

#include "absl/time/time.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/cli/progress.h"
#include "rapport/events/codec.h"
#include "rapport/events/event_type.h"
#include "rapport/events/time_text.h"
#include "rapport/events/validation.h"
#include "rapport/kafka/log_reader.h"
#include "rapport/kafka/partitioner.h"

namespace rapport::cli {
namespace {

namespace pb = google::protobuf;

// Column paths of `message`'s fields under `prefix`: scalars and timestamps
// are leaves, nested messages recurse, lists and maps are one JSON cell.
void AddColumns(const pb::Descriptor& message, const std::string& prefix, std::vector<std::string>& out,
                int depth = 0) {
  for (int i = 0; i < message.field_count(); ++i) {
    const pb::FieldDescriptor& field = *message.field(i);
    if (field.real_containing_oneof() != nullptr && prefix.empty()) continue;  // the envelope's payload
    const std::string path = prefix.empty() ? field.name() : prefix + "." + field.name();
    const bool leaf_message = field.message_type() != nullptr &&
                              field.message_type()->full_name() != "google.protobuf.Timestamp" && depth < 4;
    if (field.is_repeated() || !leaf_message) {
      out.push_back(path);
    } else {
      AddColumns(*field.message_type(), path, out, depth + 1);
    }
  }
}

// RFC 4180: quoted when it holds a comma, quote or line break.
std::string CsvCell(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string CsvRow(const std::vector<std::string>& columns, const nlohmann::json& event, std::string_view type) {
  std::string row;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) row += ',';
    if (columns[i] == "type") {
      row += type;
      continue;
    }
    const nlohmann::json* node = &event;
    size_t begin = 0;
    while (node != nullptr && begin <= columns[i].size()) {
      size_t dot = columns[i].find('.', begin);
      std::string key = columns[i].substr(begin, dot - begin);
      auto it = node->find(key);
      node = it == node->end() ? nullptr : &*it;
      if (dot == std::string::npos) break;
      begin = dot + 1;
    }
    if (node == nullptr || node->is_null()) continue;
    row += CsvCell(node->is_string() ? node->get<std::string>() : node->dump());
  }
  return row;
}

}  // namespace

std::vector<std::string> CsvColumns(const std::vector<std::string>& types) {
  std::vector<std::string> columns;
  const pb::Descriptor& envelope = *v1::Envelope::descriptor();
  AddColumns(envelope, "", columns);
  columns.push_back("type");
  for (const auto& name : events::EventTypeNames()) {
    if (!types.empty() && std::find(types.begin(), types.end(), name) == types.end()) continue;
    const pb::FieldDescriptor* payload = envelope.FindFieldByName(name);
    if (payload != nullptr) AddColumns(*payload->message_type(), name, columns, 1);
  }
  return columns;
}

int RunExport(const Config& config, const ExportArgs& args, std::ostream& out, std::ostream& err,
              const std::atomic<bool>& stop) {
  const auto& known = events::EventTypeNames();
  for (const auto& type : args.types) {
    if (std::find(known.begin(), known.end(), type) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      err << "export: --type: \"" << type << "\" is not an event type; they are: " << list << "\n";
      return 2;
    }
  }
  std::optional<absl::Time> since, until, known_at;
  for (auto [text, flag, target] : {std::tuple{&args.since, "--since", &since},
                                    {&args.until, "--until", &until},
                                    {&args.known_at, "--known-at", &known_at}}) {
    if (text->empty()) continue;
    *target = events::ParseDateOrTime(*text);
    if (!*target) {
      err << "export: " << flag << ": \"" << *text << "\" is not a date such as 2026-01-31 or an RFC 3339 time\n";
      return 2;
    }
  }
  if (since && until && *until <= *since) {
    err << "export: --until must be later than --since\n";
    return 2;
  }

  kafka::LogReaderOptions options;
  options.kafka = config.kafka;
  options.topic = config.topics.events;
  // --since starts each partition at offsets-for-times (exact: see
  // LogReaderOptions::from_ms); --until and --known-at are filters over the
  // rest of the log, which is not in time order.
  if (since) options.from_ms = absl::ToUnixMillis(*since);
  if (!args.customer.empty()) {
    // Only the customer's partition holds their events.
    auto probe = kafka::LogReader::Open({.kafka = config.kafka,
                                         .topic = config.topics.events,
                                         .start = kafka::StartAt::kEnd,
                                         .at_end = kafka::AtEnd::kStop,
                                         .partitions = {0},
                                         .from_ms = std::nullopt});
    if (!probe.ok()) {
      err << "export: " << probe.status().message() << "\n";
      return 2;
    }
    options.partitions = {kafka::PartitionForKey(args.customer, (*probe)->partition_count())};
  }
  auto reader = kafka::LogReader::Open(options);
  if (!reader.ok()) {
    err << "export: " << reader.status().message() << "\n";
    return 2;
  }

  std::ofstream file;
  std::ostream* sink = &out;
  if (args.out != "-") {
    file.open(args.out, std::ios::binary | std::ios::trunc);
    if (!file) {
      err << "export: cannot write " << args.out << "\n";
      return 2;
    }
    sink = &file;
  }
  const std::vector<std::string> columns = args.format == "csv" ? CsvColumns(args.types) : std::vector<std::string>{};
  if (args.format == "csv") {
    for (size_t i = 0; i < columns.size(); ++i) *sink << (i ? "," : "") << columns[i];
    *sink << "\n";
  }

  uint64_t total = 0;
  for (const auto& [partition, range] : (*reader)->ranges()) total += static_cast<uint64_t>(range.stop - range.start);
  Progress progress(err, args.progress, "export", total);
  const std::set<std::string> types(args.types.begin(), args.types.end());
  const int64_t since_ms = since ? absl::ToUnixMillis(*since) : INT64_MIN;
  const int64_t until_ms = until ? absl::ToUnixMillis(*until) : INT64_MAX;
  const int64_t known_at_ms = known_at ? absl::ToUnixMillis(*known_at) : INT64_MAX;
  uint64_t exported = 0, not_events = 0;
  v1::Envelope event;
  const auto started = std::chrono::steady_clock::now();
  Status status = (*reader)->Run(
      [&](const kafka::LogRecord& record) {
        progress.Advance(record.partition, record.offset, (*reader)->ranges().at(record.partition).stop);
        if (events::DecodeEvent(record.value, event)) {
          ++not_events;
          return true;
        }
        const int64_t at = events::ToUnixMillis(event.occurred_at());
        if (at < since_ms || at >= until_ms) return true;
        if (known_at && events::KnownAtMillis(event, record.timestamp_ms) >= known_at_ms) return true;
        if (!args.customer.empty() && event.customer_id() != args.customer) return true;
        const std::string_view type = events::EventTypeName(event);
        if (!types.empty() && !types.contains(std::string(type))) return true;
        const std::string json = events::EventToJson(event);
        if (args.format == "csv") {
          *sink << CsvRow(columns, nlohmann::json::parse(json), type) << "\n";
        } else {
          *sink << json << "\n";
        }
        ++exported;
        return true;
      },
      stop);
  progress.Finish();
  sink->flush();
  if (!status.ok()) {
    err << "export: " << status.message() << "\n";
    return 2;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  err << fmt::format("export: {} events of {} records read from {} in {:.2f} s", exported, progress.done(),
                     config.topics.events, seconds);
  if (not_events > 0) err << fmt::format("; {} records were not events and were skipped", not_events);
  if (stop.load()) err << " (interrupted)";
  err << "\n";
  return 0;
}

}  // namespace rapport::cli
