// Where the runner reads: the group's assignments and revocations, a
// replay's own assignment, partitions paused at their stop, whether the log
// still holds what the store applied, the stall watchdog, and the progress
// readers see.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "rapport/events/validation.h"
#include "runner_impl.h"

namespace rapport::consumers {

// Publishes, after a write, how far each partition is applied and where its
// log ends (librdkafka's cached watermarks: no request to the broker).
// Standby partitions likewise, from their own consumer.
void ProjectionRunner::Impl::UpdateProgress() {
  auto update = [&](int32_t p, rd_kafka_t* from, std::map<int32_t, CatchUp>& coming, bool standby) {
    int64_t low = 0, high = -1;
    int64_t applied = lane.next_offset.count(p) ? lane.next_offset.at(p) : log_start[p];
    rd_kafka_get_watermark_offsets(from, options.topic.c_str(), p, &low, &high);
    int64_t& end = log_end[p];
    end = options.replay ? caught_up_at[p] : std::max({end, high, applied});
    progress.Update(p, applied, end);
    auto catching = coming.find(p);
    if (catching != coming.end() && !catching->second.end_known) {
      if (high < 0) return;  // no fetch has answered yet
      catching->second.end_known = true;
      standby ? progress.SetStandby(p, true, end) : progress.SetOwned(p, true, end);
    }
    if (catching != coming.end() && applied >= end) {
      log->info("{}[{}] caught up{}: {} records applied in {:.1f} s since it {}", options.topic, p,
                standby ? " as a standby" : "", applied - catching->second.from,
                std::chrono::duration<double>(Clock::now() - catching->second.since).count(),
                standby ? "became one" : "was assigned");
      coming.erase(catching);
    }
  };
  for (int32_t p : assigned) update(p, consumer.get(), catching_up, false);
  for (int32_t p : standing_by) update(p, standby_consumer.get(), standby_warming, true);
  if (meters) {
    meters->partitions_assigned->Set(static_cast<double>(assigned.size()));
    meters->partitions_catching_up->Set(static_cast<double>(catching_up.size()));
  }
}

// Replay: every partition assigned directly, from the stored offset (or
// --from-time, or the start) to --until (or the end now).
Status ProjectionRunner::Impl::AssignForReplay() {
  std::vector<int32_t> all;
  for (int32_t p = 0; p < partition_count; ++p) all.push_back(p);
  // Applied events are stamped no earlier than events::kMaxStampLead
  // before they occurred (ApplyShard), so every record before the first one
  // stamped at or after EarliestStampOf(from) occurred before `from`.
  auto offsets_for = [&](int64_t ms) {
    return kafka::OffsetsForTime(consumer.get(), options.kafka, options.topic, all, events::EarliestStampOf(ms));
  };
  // Offsets-for-times only where it is exact: as the start of a window
  // (every record before the offset it gives is stamped earlier), never as
  // its end (a record stamped earlier may follow one stamped later).
  std::map<int32_t, int64_t> from;
  if (options.replay->from_ms) {
    ASSIGN_OR_RETURN(from, offsets_for(*options.replay->from_ms));
  }
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partition_count);
  for (int32_t p = 0; p < partition_count; ++p) {
    const int64_t end = log_end[p];  // the high watermark now (Init)
    const int64_t stop = end;
    int64_t start = log_start[p];
    if (from.count(p)) start = from[p] >= 0 ? from[p] : end;
    if (!lane.next_offset.count(p)) lane.next_offset[p] = std::min(start, stop);  // "applied" for a new store
    caught_up_at[p] = stop;
    lane.stop[p] = stop;
    log_end[p] = stop;
    progress.Update(p, lane.next_offset[p], stop);
    assigned.insert(p);
    rd_kafka_topic_partition_list_add(assignment, options.topic.c_str(), p)->offset = lane.next_offset[p];
  }
  options.stop_when_caught_up = true;
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return kafka::KafkaStatus(err, absl::StrCat("reading ", options.topic));
  PauseAtStop(lane);
  log->info("replaying {} ({} partitions) into {} projections", options.topic, partition_count,
            lane.projections.size());
  return absl::OkStatus();
}

// Replay and rebuild: partitions that reached their stop are paused, so that
// the others are not slowed by fetching records that will not be applied.
void ProjectionRunner::Impl::PauseAtStop(Lane& reading) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  for (const auto& [p, stop] : reading.stop) {
    if (reading.next_offset[p] >= stop && !reading.paused.contains(p)) {
      rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p);
      reading.paused.insert(p);
    }
  }
  if (list->cnt > 0) rd_kafka_pause_partitions(reading.consumer, list);
  rd_kafka_topic_partition_list_destroy(list);
}

void ProjectionRunner::Impl::OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
  // NULL before the consumer has joined a group (a runner closed before it ran).
  const char* protocol = rd_kafka_rebalance_protocol(consumer.get());
  bool cooperative = protocol != nullptr && std::string_view(protocol) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    joined = true;
    // A standby of a partition the group gives here stops being one: the
    // live consumer goes on from where it stands (the stored offset).
    std::set<int32_t> promoted;
    for (int i = 0; i < partitions->cnt; ++i) {
      if (standing_by.contains(partitions->elems[i].partition)) promoted.insert(partitions->elems[i].partition);
    }
    if (!promoted.empty()) StopStandbys(promoted, "the group assigned it here");
    // Start where the store says, not where Kafka's committed offsets say.
    const bool new_store = lane.next_offset.empty();
    for (int i = 0; i < partitions->cnt; ++i) {
      auto& tp = partitions->elems[i];
      auto stored = lane.next_offset.find(tp.partition);
      auto start = log_start.find(tp.partition);
      tp.offset = stored != lane.next_offset.end() ? stored->second
                  : start != log_start.end()       ? start->second
                                                   : RD_KAFKA_OFFSET_BEGINNING;
      assigned.insert(tp.partition);
      // Where the log ends now (the end last seen may be from before the
      // partition went to another instance): until the store reaches it,
      // the API says a customer not found may yet be.
      int64_t low = 0, high = -1;
      const rd_kafka_resp_err_t queried =
          rd_kafka_query_watermark_offsets(consumer.get(), tp.topic, tp.partition, &low, &high, 1000);
      const int64_t from = tp.offset >= 0 ? tp.offset : 0;
      if (queried == RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_end[tp.partition] = std::max(log_end[tp.partition], high);
        const int64_t behind = std::max<int64_t>(log_end[tp.partition] - from, 0);
        progress.SetOwned(tp.partition, true, behind > 0 ? log_end[tp.partition] : -1);
        if (behind > 0) catching_up[tp.partition] = {from, Clock::now()};
      } else {
        // The end last seen may be from before the partition went elsewhere:
        // catching up until a fetch says where the log ends.
        log->warn("{}[{}]: where the log ends is not known yet ({}): catching up until a fetch tells", tp.topic,
                  tp.partition, rd_kafka_err2str(queried));
        progress.SetOwned(tp.partition, true, std::numeric_limits<int64_t>::max());
        catching_up[tp.partition] = {from, Clock::now(), /*end_known=*/false};
      }
      const int64_t behind = std::max<int64_t>(log_end[tp.partition] - from, 0);
      progress.Update(tp.partition, from, log_end[tp.partition]);
      if (relay) relay->Own(tp.partition);
      if (stored != lane.next_offset.end()) {
        if (meters) meters->assigned_with_state->Add();
        log->info("assigned {}[{}] from offset {}, where this store's state for it stands{} ({} records behind)",
                  tp.topic, tp.partition, stored->second, promoted.contains(tp.partition) ? " as its standby" : "",
                  behind);
      } else {
        if (meters) meters->assigned_without_state->Add();
        // A store that holds other partitions but never this one: the
        // partition moved here from another instance, and its state is
        // built from the log's start, which takes a while on a long log.
        if (new_store || behind == 0) {
          log->info("assigned {}[{}] from the beginning ({} records)", tp.topic, tp.partition, behind);
        } else {
          log->warn(
              "assigned {}[{}], for which this store has no state: building it from the log's start ({} "
              "records); until it has caught up, this instance's answers for the partition's customers lack "
              "what it has not yet applied",
              tp.topic, tp.partition, behind);
        }
      }
    }
    progress.MarkJoined();
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_assign(consumer.get(), partitions);
      if (error) {
        log->error("assigning partitions: {}", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
      }
    } else {
      rd_kafka_assign(consumer.get(), partitions);
    }
  } else {
    // Every applied batch is already written, so nothing is lost on revoke.
    // What the partitions' records caused is sent first, with their
    // watermarks, so that their next owner has nothing of it to send.
    if (relay) {
      if (Status flushed = relay->Flush(consumer.get(), lane.next_offset, /*now=*/true); !flushed.ok()) {
        log->error("sending the outbox before a revocation: {}", std::string(flushed.message()));
      }
    }
    for (int i = 0; i < partitions->cnt; ++i) {
      if (relay) relay->Disown(partitions->elems[i].partition);
      progress.SetOwned(partitions->elems[i].partition, false);
      assigned.erase(partitions->elems[i].partition);
      catching_up.erase(partitions->elems[i].partition);
      log->info("revoked {}[{}]", partitions->elems[i].topic, partitions->elems[i].partition);
    }
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer.get(), partitions);
      if (error) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(consumer.get(), nullptr);
    }
  }
  if (options.on_assignment) options.on_assignment();
}

Status ProjectionRunner::Impl::CheckLogHolds(Lane& reading, int32_t partition, int64_t low, int64_t high) {
  auto at = reading.next_offset.find(partition);
  if (at == reading.next_offset.end()) return absl::OkStatus();
  if (at->second > high) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.topic, "[", partition, "] now ends at offset ", high, ", but this store has applied it up to offset ",
        at->second,
        ": the topic was deleted and recreated, or its log was cut (an unclean leader election). Those offsets now "
        "name other records, so rapport stops rather than skip or mix them. To rebuild from the log as it is: stop "
        "every rapport instance, move the store's directory ([store] data_dir) aside and start again. If the topic "
        "was replaced by mistake, point [topics] events at the original one."));
  }
  if (at->second < low) {
    log->warn(
        "{}[{}]: records {}..{} were deleted from the log (retention) before this store applied them; going on "
        "from offset {}. Keep the topic's retention.ms longer than rapport may be stopped.",
        options.topic, partition, at->second, low - 1, low);
    if (meters) meters->lost_to_retention->Add(static_cast<uint64_t>(low - at->second));
    at->second = low;
  }
  return absl::OkStatus();
}

Status ProjectionRunner::Impl::OnOffsetOutOfRange(Lane& reading, int32_t partition) {
  // The group may have moved the partition to another instance since Kafka
  // answered: that instance checks it on assignment; here nothing to seek.
  const bool standby = reading.live && standing_by.contains(partition);
  if (reading.live && !options.replay && !assigned.contains(partition) && !standby) {
    log->info("{}[{}]: out of range, but no longer assigned here; left to its new owner", options.topic, partition);
    return absl::OkStatus();
  }
  rd_kafka_t* from = standby ? standby_consumer.get() : reading.consumer;
  ASSIGN_OR_RETURN(kafka::LogBounds bounds, kafka::QueryLogBounds(from, options.kafka, options.topic, partition));
  // A new store's partition with nothing applied goes on from the start too.
  reading.next_offset.try_emplace(partition, bounds.low);
  RETURN_IF_ERROR(CheckLogHolds(reading, partition, bounds.low, bounds.high));
  log->info("{}[{}]: going on from offset {}", options.topic, partition, reading.next_offset[partition]);
  rd_kafka_topic_partition_list_t* at = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(at, options.topic.c_str(), partition)->offset = reading.next_offset[partition];
  rd_kafka_error_t* error = rd_kafka_seek_partitions(from, at, 5000);
  rd_kafka_topic_partition_list_destroy(at);
  if (error) {
    Status status = absl::UnavailableError(absl::StrCat("seeking ", options.topic, "[", partition,
                                                        "] after out of range: ", rd_kafka_error_string(error)));
    rd_kafka_error_destroy(error);
    return status;
  }
  return absl::OkStatus();
}

bool ProjectionRunner::Impl::CaughtUp() const {
  if (!options.stop_when_caught_up || rebuild) return false;  // a rebuild goes on until swapped in
  // What the outbox holds is sent before the run ends (a store that died
  // after a write, before sending it, is caught up at once on restart).
  if (relay && relay->HasToSend(joined)) return false;
  for (const auto& [partition, end] : caught_up_at) {
    auto it = lane.next_offset.find(partition);
    int64_t at = it == lane.next_offset.end() ? 0 : it->second;
    if (at < end) return false;
  }
  return true;
}

// A consumer that holds partitions with records to read but receives none
// for a while is stuck (seen once after a rapid series of crashes and
// restarts with librdkafka 2.0.2): say so, and seek the partitions again to
// the stored offsets, which restarts their fetchers.
void ProjectionRunner::Impl::WatchForStall() {
  constexpr auto kStall = std::chrono::seconds(15);
  if (assigned.empty() || Clock::now() - last_record < kStall) return;
  last_record = Clock::now();
  rd_kafka_topic_partition_list_t* stalled = rd_kafka_topic_partition_list_new(static_cast<int>(assigned.size()));
  std::string names;
  for (int32_t p : assigned) {
    int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(consumer.get(), options.topic.c_str(), p, &low, &high, 2000) != 0) continue;
    auto at = lane.next_offset.find(p);
    int64_t position = at != lane.next_offset.end() ? at->second : low;
    if (position >= high) continue;  // nothing to read: idle, not stuck
    rd_kafka_topic_partition_list_add(stalled, options.topic.c_str(), p)->offset = position;
    absl::StrAppend(&names, names.empty() ? "" : ", ", p);
  }
  if (stalled->cnt > 0) {
    log->warn("no records for {} s from partitions with records to read ({}); seeking them again", kStall.count(),
              names);
    rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer.get(), stalled, 5000);
    if (error) {
      log->error("seeking stalled partitions: {}", rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    }
  }
  rd_kafka_topic_partition_list_destroy(stalled);
}

}  // namespace rapport::consumers
