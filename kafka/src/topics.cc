#include "rapport/kafka/topics.h"

#include <algorithm>
#include <array>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"

namespace rapport::kafka {
namespace {

using Clock = std::chrono::steady_clock;

struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
using KafkaEvent = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
using KafkaQueue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

int Millis(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }

// Waits for the result of one admin request on `queue`.
Result<KafkaEvent> AwaitResult(rd_kafka_queue_t* queue, const KafkaSettings& settings, const std::string& what) {
  KafkaEvent event(rd_kafka_queue_poll(queue, Millis(settings.timeout) + 1000));
  if (!event) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": no answer from Kafka at ", settings.brokers, " within ",
                                                    settings.timeout.count(), " ms"));
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaStatus(rd_kafka_event_error(event.get()),
                       absl::StrCat(what, " (", rd_kafka_event_error_string(event.get()), ")"));
  }
  return event;
}

// The partition count of every topic on the cluster. Retries while the
// cluster is still starting, up to settings.timeout.
Result<std::map<std::string, int32_t>> ExistingTopics(rd_kafka_t* handle, const KafkaSettings& settings) {
  auto deadline = Clock::now() + settings.timeout;
  for (;;) {
    const rd_kafka_metadata_t* metadata = nullptr;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    rd_kafka_resp_err_t err = rd_kafka_metadata(handle, 1, nullptr, &metadata, std::max(Millis(left), 100));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::map<std::string, int32_t> topics;
      for (int i = 0; i < metadata->topic_cnt; ++i) {
        topics[metadata->topics[i].topic] = metadata->topics[i].partition_cnt;
      }
      bool has_brokers = metadata->broker_cnt > 0;
      rd_kafka_metadata_destroy(metadata);
      if (has_brokers) return topics;
    }
    if (Clock::now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("no answer from Kafka at ", settings.brokers, " within ",
                                                 settings.timeout.count(), " ms (", rd_kafka_err2str(err),
                                                 "); is the broker running?"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// Waits until every topic in `specs` is in the cluster's metadata with a
// leader for each partition. A created topic reaches the brokers' metadata a
// moment after CreateTopics answers; a producer started before that would be
// told the topic does not exist.
Status AwaitTopicsReady(rd_kafka_t* handle, const KafkaSettings& settings, const std::vector<const TopicSpec*>& specs) {
  auto deadline = Clock::now() + settings.timeout;
  std::string waiting_for;
  for (;;) {
    const rd_kafka_metadata_t* metadata = nullptr;
    waiting_for.clear();
    if (rd_kafka_metadata(handle, 1, nullptr, &metadata, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (const TopicSpec* spec : specs) {
        bool ready = false;
        for (int i = 0; i < metadata->topic_cnt && !ready; ++i) {
          const rd_kafka_metadata_topic_t& t = metadata->topics[i];
          if (spec->name != t.topic || t.err != RD_KAFKA_RESP_ERR_NO_ERROR || t.partition_cnt != spec->partitions) {
            continue;
          }
          ready = std::all_of(t.partitions, t.partitions + t.partition_cnt,
                              [](const rd_kafka_metadata_partition_t& p) { return p.leader >= 0; });
        }
        if (!ready) waiting_for = spec->name;
      }
      rd_kafka_metadata_destroy(metadata);
      if (waiting_for.empty()) return absl::OkStatus();
    }
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("topic ", waiting_for,
                                                      " was created but has no leader for every partition after ",
                                                      settings.timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Creates `specs`; a topic created meanwhile by someone else is not an error.
Result<std::set<std::string>> CreateTopics(rd_kafka_t* handle, const KafkaSettings& settings,
                                           const std::vector<const TopicSpec*>& specs) {
  std::vector<rd_kafka_NewTopic_t*> new_topics;
  std::array<char, 512> error{};
  auto destroy = [&] { rd_kafka_NewTopic_destroy_array(new_topics.data(), new_topics.size()); };
  for (const TopicSpec* spec : specs) {
    rd_kafka_NewTopic_t* t = rd_kafka_NewTopic_new(spec->name.c_str(), spec->partitions, spec->replication_factor,
                                                   error.data(), error.size());
    if (t == nullptr) {
      destroy();
      return absl::InvalidArgumentError(absl::StrCat("topic ", spec->name, ": ", error.data()));
    }
    new_topics.push_back(t);
    for (const auto& [name, value] : spec->configs) {
      rd_kafka_NewTopic_set_config(t, name.c_str(), value.c_str());
    }
  }
  KafkaQueue queue(rd_kafka_queue_new(handle));
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(options, Millis(settings.timeout), error.data(), error.size());
  rd_kafka_CreateTopics(handle, new_topics.data(), new_topics.size(), options, queue.get());
  rd_kafka_AdminOptions_destroy(options);
  destroy();

  ASSIGN_OR_RETURN(KafkaEvent event, AwaitResult(queue.get(), settings, "creating topics"));
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  std::set<std::string> created;
  for (size_t i = 0; i < count; ++i) {
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    const char* name = rd_kafka_topic_result_name(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      created.insert(name);
    } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      const char* message = rd_kafka_topic_result_error_string(results[i]);
      return KafkaStatus(err, absl::StrCat("creating topic ", name, message ? absl::StrCat(" (", message, ")") : ""));
    }
  }
  return created;
}

// The current value of every config of `topic`.
Result<std::map<std::string, std::string>> TopicConfigs(rd_kafka_t* handle, const KafkaSettings& settings,
                                                        const std::string& topic) {
  KafkaQueue queue(rd_kafka_queue_new(handle));
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_DescribeConfigs(handle, &resource, 1, nullptr, queue.get());
  rd_kafka_ConfigResource_destroy(resource);
  ASSIGN_OR_RETURN(KafkaEvent event, AwaitResult(queue.get(), settings, absl::StrCat("reading configs of ", topic)));
  size_t count = 0;
  const rd_kafka_ConfigResource_t** resources =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event.get()), &count);
  std::map<std::string, std::string> configs;
  for (size_t i = 0; i < count; ++i) {
    if (rd_kafka_ConfigResource_error(resources[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(rd_kafka_ConfigResource_error(resources[i]), absl::StrCat("reading configs of ", topic));
    }
    size_t entry_count = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(resources[i], &entry_count);
    for (size_t j = 0; j < entry_count; ++j) {
      const char* value = rd_kafka_ConfigEntry_value(entries[j]);
      configs[rd_kafka_ConfigEntry_name(entries[j])] = value ? value : "";
    }
  }
  return configs;
}

}  // namespace

Result<std::vector<TopicReport>> EnsureTopics(const KafkaSettings& settings, const std::vector<TopicSpec>& specs) {
  ASSIGN_OR_RETURN(KafkaConf conf, BuildKafkaConf(settings, {}));
  ASSIGN_OR_RETURN(KafkaHandle handle, NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  ASSIGN_OR_RETURN(auto existing, ExistingTopics(handle.get(), settings));

  std::vector<const TopicSpec*> missing;
  for (const auto& spec : specs) {
    if (!existing.contains(spec.name)) missing.push_back(&spec);
  }
  std::set<std::string> created;
  if (!missing.empty()) {
    ASSIGN_OR_RETURN(created, CreateTopics(handle.get(), settings, missing));
    RETURN_IF_ERROR(AwaitTopicsReady(handle.get(), settings, missing));
    ASSIGN_OR_RETURN(existing, ExistingTopics(handle.get(), settings));
  }

  std::vector<TopicReport> reports;
  for (const auto& spec : specs) {
    TopicReport report{.topic = spec.name, .outcome = TopicReport::Outcome::kAsSpecified, .differences = {}};
    if (created.contains(spec.name)) {
      report.outcome = TopicReport::Outcome::kCreated;
      reports.push_back(std::move(report));
      continue;
    }
    auto partitions = existing.find(spec.name);
    if (partitions != existing.end() && partitions->second != spec.partitions) {
      report.differences.push_back(
          absl::StrCat("partitions: ", partitions->second, " on the cluster, ", spec.partitions, " in the config"));
    }
    ASSIGN_OR_RETURN(auto configs, TopicConfigs(handle.get(), settings, spec.name));
    for (const auto& [name, wanted] : spec.configs) {
      auto actual = configs.find(name);
      std::string actual_value = actual == configs.end() ? "(unset)" : actual->second;
      if (actual_value != wanted) {
        report.differences.push_back(
            absl::StrCat(name, ": ", actual_value, " on the cluster, ", wanted, " in the config"));
      }
    }
    if (!report.differences.empty()) report.outcome = TopicReport::Outcome::kMismatch;
    reports.push_back(std::move(report));
  }
  return reports;
}

}  // namespace rapport::kafka
