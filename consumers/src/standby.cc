// Standbys ([run] standby_replicas): warm copies of partitions other
// instances own, so that reads of a dead instance's customers are answered
// at once and its partitions' next owner, if it is a standby, resumes where
// the standby stands instead of rebuilding from the log.
//
// A standby partition is applied by the live lane itself, from records its
// own consumer (assigned by hand, in no group) fetches: the same projections,
// the same store keys (state, offset, de-duplication window) and the same
// outbox entries as its owner's, which the relay does not send while the
// partition is not owned (OutboxRelay::ForgetSentByOwners drops those its
// owner sent). So a promotion moves nothing: the group's assignment takes the
// partition off the standby consumer and the live consumer goes on from the
// stored offset, which is the standby's.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runner_impl.h"

namespace rapport::consumers {

Result<kafka::KafkaHandle> ProjectionRunner::Impl::ManualConsumer(const char* group_suffix) {
  ASSIGN_OR_RETURN(
      kafka::KafkaConf conf,
      kafka::BuildKafkaConf(options.kafka, {{"group.id", options.group_id + group_suffix, "joins no group"},
                                            {"enable.auto.commit", "false", "offsets live in RocksDB"},
                                            {"enable.auto.offset.store", "false", "offsets live in RocksDB"},
                                            {"auto.offset.reset", "error", "the runner decides where it goes on"}}));
  return kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf));
}

void ProjectionRunner::Impl::StartStandbys(const std::set<int32_t>& partitions) {
  if (partitions.empty()) return;
  // Where each log ends now, in one request (timestamp -1: the latest
  // offset), bounded to 1 s however many partitions start: the Run thread
  // waits for it. Until a standby has reached that end it answers nothing:
  // what it has of its customers is only part of their history.
  rd_kafka_topic_partition_list_t* ends = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (int32_t p : partitions) rd_kafka_topic_partition_list_add(ends, options.topic.c_str(), p)->offset = -1;
  const bool answered = rd_kafka_offsets_for_times(standby_consumer.get(), ends, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (int i = 0; i < ends->cnt; ++i) {
    const int32_t p = ends->elems[i].partition;
    auto stored = lane.next_offset.find(p);
    const int64_t from = stored != lane.next_offset.end() ? stored->second : log_start[p];
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p)->offset = from;
    if (answered && ends->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && ends->elems[i].offset >= 0) {
      log_end[p] = std::max(log_end[p], ends->elems[i].offset);
      const bool behind = log_end[p] > from;
      progress.SetStandby(p, true, behind ? log_end[p] : -1);
      if (behind) standby_warming[p] = {from, Clock::now()};
    } else {
      // Not known yet: catching up until a fetch tells (UpdateProgress).
      progress.SetStandby(p, true, std::numeric_limits<int64_t>::max());
      standby_warming[p] = {from, Clock::now(), /*end_known=*/false};
    }
    progress.Update(p, from, log_end[p]);
    standing_by.insert(p);
    log->info("standby for {}[{}] from offset {} ({} records behind the log's end)", options.topic, p, from,
              std::max<int64_t>(log_end[p] - from, 0));
  }
  rd_kafka_topic_partition_list_destroy(ends);
  rd_kafka_error_t* error = rd_kafka_incremental_assign(standby_consumer.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (error) {
    log->error("assigning standby partitions: {}", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
  }
  if (meters) meters->partitions_standby->Set(static_cast<double>(standing_by.size()));
}

void ProjectionRunner::Impl::StopStandbys(const std::set<int32_t>& partitions, std::string_view why) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (int32_t p : partitions) {
    if (!standing_by.erase(p)) continue;
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p);
    standby_warming.erase(p);
    progress.SetStandby(p, false);
    auto at = lane.next_offset.find(p);
    log->info("standby for {}[{}] ends at offset {}: {}", options.topic, p,
              at == lane.next_offset.end() ? log_start[p] : at->second, why);
  }
  if (list->cnt > 0) {
    rd_kafka_error_t* error = rd_kafka_incremental_unassign(standby_consumer.get(), list);
    if (error) {
      log->error("taking partitions off the standby consumer: {}", rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (meters) meters->partitions_standby->Set(static_cast<double>(standing_by.size()));
}

Status ProjectionRunner::Impl::StepStandby(std::vector<rd_kafka_message_t*>& messages) {
  const auto now = Clock::now();
  if (now >= next_standby_placement) {
    next_standby_placement = now + std::chrono::seconds(1);
    std::set<int32_t> wanted;
    for (int32_t p : options.standby_partitions(partition_count)) {
      if (p >= 0 && p < partition_count && !assigned.contains(p)) wanted.insert(p);
    }
    std::set<int32_t> starting, stopping;
    std::set_difference(wanted.begin(), wanted.end(), standing_by.begin(), standing_by.end(),
                        std::inserter(starting, starting.end()));
    std::set_difference(standing_by.begin(), standing_by.end(), wanted.begin(), wanted.end(),
                        std::inserter(stopping, stopping.end()));
    if (!stopping.empty()) StopStandbys(stopping, "the placement moved it to another instance");
    StartStandbys(starting);
  }
  if (standing_by.empty()) return absl::OkStatus();

  // What the standby consumer has fetched, of the partitions still standing
  // by here (one promoted or dropped since may still have records queued).
  size_t count = PollBatch(standby_consumer.get(), messages, std::chrono::milliseconds(0));
  size_t kept = 0;
  for (size_t i = 0; i < count; ++i) {
    rd_kafka_message_t* m = messages[i];
    const bool ours = standing_by.contains(m->partition) && m->err != RD_KAFKA_RESP_ERR__FATAL;
    if (ours) {
      messages[kept++] = m;
    } else {
      rd_kafka_message_destroy(m);
    }
  }
  Status processed = ProcessBatch(lane, messages.data(), kept);
  for (size_t i = 0; i < kept; ++i) rd_kafka_message_destroy(messages[i]);
  RETURN_IF_ERROR(processed);

  if (relay && now >= next_standby_forget) {
    next_standby_forget = now + std::chrono::seconds(10);
    relay->ForgetSentByOwners(consumer.get(), standing_by);
  }
  return absl::OkStatus();
}

}  // namespace rapport::consumers
