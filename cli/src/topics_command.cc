#include "rapport/cli/topics_command.h"

#include <ostream>

#include "fmt/format.h"

namespace rapport::cli {

int RunTopicsEnsure(const Config& config, std::ostream& out, std::ostream& err) {
  std::vector<kafka::TopicSpec> specs = TopicSpecs(config.topics);
  auto reports = kafka::EnsureTopics(config.kafka, specs);
  if (!reports.ok()) {
    err << "topics ensure: " << reports.status().message() << "\n";
    return 2;
  }
  bool mismatch = false;
  for (size_t i = 0; i < reports->size(); ++i) {
    const auto& report = (*reports)[i];
    switch (report.outcome) {
      case kafka::TopicReport::Outcome::kCreated:
        out << fmt::format("{}: created ({} partitions, {})\n", report.topic, specs[i].partitions,
                           specs[i].configs.count("retention.ms") ? "kept forever" : "compacted");
        break;
      case kafka::TopicReport::Outcome::kAsSpecified:
        out << fmt::format("{}: exists as configured\n", report.topic);
        break;
      case kafka::TopicReport::Outcome::kMismatch:
        mismatch = true;
        err << fmt::format("{}: exists but differs from the config (not changed):\n", report.topic);
        for (const auto& d : report.differences) err << "  " << d << "\n";
        break;
    }
  }
  return mismatch ? 1 : 0;
}

}  // namespace rapport::cli
