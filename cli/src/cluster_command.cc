#include "rapport/cli/cluster_command.h"

#include <ostream>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/cluster/membership.h"
#include "rapport/kafka/client.h"

namespace rapport::cli {

int RunClusterStatus(const Config& config, bool json, std::ostream& out, std::ostream& err) {
  auto directory = cluster::Directory::Start(config.kafka, config.topics.members, config.run.group_id);
  if (!directory.ok()) {
    err << "cluster status: " << config.topics.members << ": " << directory.status().message() << "\n";
    return 2;
  }
  if (!(*directory)->WaitCaughtUp(config.kafka.timeout)) {
    err << "cluster status: " << config.topics.members << " not read to its end within " << config.kafka.timeout.count()
        << " ms\n";
    return 2;
  }
  const auto members = (*directory)->Members();
  std::vector<int32_t> unowned;
  const auto owners = (*directory)->Owners(config.topics.events_partitions);
  for (int32_t p = 0; p < config.topics.events_partitions; ++p) {
    if (!owners.contains(p)) unowned.push_back(p);
  }
  if (json) {
    nlohmann::ordered_json instances = nlohmann::ordered_json::array();
    for (const auto& [id, heard] : members) {
      auto listed = [](const auto& states) {
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const auto& p : states) {
          list.push_back({{"partition", p.partition()},
                          {"applied_offset", p.applied()},
                          {"lag_records", std::max<int64_t>(p.end() - p.applied(), 0)}});
        }
        return list;
      };
      instances.push_back({{"instance_id", id},
                           {"url", heard.member.advertised_url()},
                           {"live", heard.live},
                           {"last_heard_ms", heard.since.count()},
                           {"owned", listed(heard.member.owned())},
                           {"standby", listed(heard.member.standby())}});
    }
    out << nlohmann::ordered_json{{"group_id", config.run.group_id},
                                  {"instances", std::move(instances)},
                                  {"unowned_partitions", unowned}}
               .dump()
        << "\n";
  } else {
    out << fmt::format("group {} ({} partitions of {}), from {}\n", config.run.group_id,
                       config.topics.events_partitions, config.topics.events, config.topics.members);
    out << fmt::format("{:<28} {:<6} {:>10}  {:<28} {}\n", "INSTANCE", "STATE", "HEARD", "URL", "PARTITIONS (LAG)");
    for (const auto& [id, heard] : members) {
      std::string partitions;
      for (const auto& p : heard.member.owned()) {
        partitions += fmt::format("{}{} ({})", partitions.empty() ? "" : ", ", p.partition(),
                                  std::max<int64_t>(p.end() - p.applied(), 0));
      }
      std::string standby;
      for (const auto& p : heard.member.standby()) {
        standby += fmt::format("{}{} ({})", standby.empty() ? "" : ", ", p.partition(),
                               std::max<int64_t>(p.end() - p.applied(), 0));
      }
      if (!standby.empty()) partitions += fmt::format("; standby {}", standby);
      const std::string state = heard.live ? "live" : heard.member.leaving() ? "left" : "gone";
      out << fmt::format("{:<28} {:<6} {:>8.1f}s  {:<28} {}\n", id, state, heard.since.count() / 1000.0,
                         heard.member.advertised_url(), heard.live ? partitions : "");
    }
    std::vector<int32_t> by_standby;
    for (const auto& [p, owner] : owners) {
      if (owner.standby) by_standby.push_back(p);
    }
    if (!by_standby.empty()) {
      out << fmt::format("no live owner: standbys answer for partitions {}\n", fmt::join(by_standby, ", "));
    }
    if (!unowned.empty()) {
      out << fmt::format("no live instance applies partitions {}\n", fmt::join(unowned, ", "));
    }
  }
  return unowned.empty() ? 0 : 1;
}

}  // namespace rapport::cli
