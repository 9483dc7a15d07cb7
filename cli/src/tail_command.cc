#include "rapport/cli/tail_command.h"

#include <ostream>

#include "absl/time/time.h"
#include "fmt/format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/log_reader.h"
#include "rapport/v1/alert.pb.h"

namespace rapport::cli {
namespace {

std::string ResolveTopic(const Config& config, const std::string& name) {
  if (name == "events") return config.topics.events;
  if (name == "dlq") return config.topics.dead_letter;
  if (name == "alerts") return config.topics.alerts;
  return name;
}

// A JSON string literal for arbitrary bytes (protobuf's printer escapes them).
std::string JsonString(std::string_view text) {
  google::protobuf::Value value;
  value.set_string_value(std::string(text));
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(value, &json);
  return json;
}

std::string FormatRecord(const kafka::LogRecord& r) {
  std::string line = fmt::format(
      R"({{"partition":{},"offset":{},"timestamp":{},"key":{})", r.partition, r.offset,
      JsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(r.timestamp_ms), absl::UTCTimeZone())),
      JsonString(r.key));
  // Records say what they hold in content-type; alerts are not envelopes.
  for (const auto& h : r.headers) {
    if (h.name == "content-type" && h.value == "application/protobuf; proto=rapport.v1.Alert") {
      v1::Alert alert;
      if (alert.ParseFromArray(r.value.data(), static_cast<int>(r.value.size()))) {
        return line + fmt::format(R"(,"alert":{}}})", events::ToJsonDeterministic(alert));
      }
    }
  }
  v1::Envelope event;
  if (auto violation = events::DecodeEvent(r.value, event)) {
    line += R"(,"headers":{)";
    for (size_t i = 0; i < r.headers.size(); ++i) {
      line += fmt::format("{}{}:{}", i == 0 ? "" : ",", JsonString(r.headers[i].name), JsonString(r.headers[i].value));
    }
    line += fmt::format(R"(}},"error":{}}})", JsonString(violation->ToString()));
  } else {
    line += fmt::format(R"(,"event":{}}})", events::EventToJson(event));
  }
  return line;
}

}  // namespace

int RunTail(const Config& config, const TailArgs& args, std::ostream& out, std::ostream& err,
            const std::atomic<bool>& stop) {
  const std::string topic = ResolveTopic(config, args.topic);
  kafka::LogReaderOptions options;
  options.kafka = config.kafka;
  options.topic = topic;
  options.start = args.from_end ? kafka::StartAt::kEnd : kafka::StartAt::kBeginning;
  options.at_end = args.follow ? kafka::AtEnd::kFollow : kafka::AtEnd::kStop;
  auto reader = kafka::LogReader::Open(options);
  if (!reader.ok()) {
    err << "tail: " << reader.status().message() << "\n";
    return 2;
  }
  uint64_t printed = 0;
  Status status = (*reader)->Run(
      [&](const kafka::LogRecord& record) {
        out << FormatRecord(record) << "\n";
        return args.max == 0 || ++printed < args.max;
      },
      stop);
  out.flush();
  if (!status.ok()) {
    err << "tail: " << status.message() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace rapport::cli
