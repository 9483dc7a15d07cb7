#include "rapport/consumers/projection_runner.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "rapport/events/codec.h"
#include "rapport/events/time_text.h"
#include "rapport/events/validation.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/keys.h"
#include "rapport/state/v1/runner.pb.h"
#include "runner_impl.h"

namespace rapport::consumers {
namespace {

using projections::ReadU64;
using projections::StateBatch;
using runner_keys::DedupKey;
using runner_keys::U64;
using Clock = std::chrono::steady_clock;

}  // namespace

void ProjectionRunner::Impl::InitMetrics() {
  Metrics* m = options.metrics;
  if (m == nullptr) return;
  Meters meters_in;
  for (auto* projection : all_projections) {
    meters_in.applied[projection->Family()] =
        &m->counter("rapport_events_applied_total", "Events folded into a projection (of the types it reads).",
                    {{"projection", projection->Family()}});
  }
  meters_in.duplicates = &m->counter("rapport_events_duplicate_total", "Events skipped: their id was seen before.");
  meters_in.dead_lettered =
      &m->counter("rapport_events_dead_lettered_total", "Records sent to the dead-letter topic, with the reason.");
  meters_in.alerts = &m->counter("rapport_alerts_emitted_total", "Alerts staged for the alerts topic.");
  meters_in.parked = &m->counter("rapport_outbox_parked_total",
                                 "Outbox records (alerts, dead letters) Kafka refused for good, set aside.");
  meters_in.lost_to_retention =
      &m->counter("rapport_records_lost_to_retention_total",
                  "Records deleted from the log by retention before this store applied them.");
  meters_in.batches = &m->counter("rapport_batches_total", "Batches written to the store (one WriteBatch each).");
  meters_in.batch_seconds =
      &m->histogram("rapport_batch_apply_seconds", "Time to apply a batch to every projection and write it.", {});
  meters_in.rebuild_behind =
      &m->gauge("rapport_rebuild_lag_records",
                "Records a projection version being built still has to apply to reach the live position (0: none).");
  meters = meters_in;
  m->AddCollector([this, m] {
    for (const auto& [partition, p] : progress.Snapshot()) {
      Labels labels{{"topic", options.topic}, {"partition", std::to_string(partition)}};
      m->gauge("rapport_consumer_lag_records", "Records in the log not yet applied, per partition.", labels)
          .Set(static_cast<double>(std::max<int64_t>(p.end - p.applied, 0)));
      m->gauge("rapport_applied_offset", "The next offset to apply, per partition.", labels)
          .Set(static_cast<double>(p.applied));
    }
  });
}

// Publishes, after a write, how far each partition is applied and where its
// log ends (librdkafka's cached watermarks: no request to the broker).
void ProjectionRunner::Impl::UpdateProgress() {
  for (int32_t p : assigned) {
    int64_t low = 0, high = -1;
    int64_t applied = lane.next_offset.count(p) ? lane.next_offset.at(p) : log_start[p];
    rd_kafka_get_watermark_offsets(consumer.get(), options.topic.c_str(), p, &low, &high);
    int64_t& end = log_end[p];
    end = options.replay ? caught_up_at[p] : std::max({end, high, applied});
    progress.Update(p, applied, end);
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

// A lane applies `projections`: the live lane into their live versions
// (while a raised version is built, the one it will replace), a rebuild
// into the versions being built.
void ProjectionRunner::Impl::SetProjections(Lane& reading, const std::vector<projections::Projection*>& chosen) {
  reading.projections = chosen;
  reading.families.clear();
  reading.applied.clear();
  reading.caches.clear();  // gives their bytes back to the budget
  for (auto* projection : chosen) {
    reading.caches.push_back(std::make_unique<projections::StateCache>(partition_count, cache_budget));
    auto live = store.ServingFamily(projection->Family());
    reading.families.push_back(reading.live && live ? store.family(live->GetName())
                                                    : store.family(projection->Family()));
    reading.applied.push_back(meters ? meters->applied.at(projection->Family()) : nullptr);
  }
}

Status ProjectionRunner::Impl::Init() {
  for (auto* projection : all_projections) {
    if (store.family(projection->Family()) == nullptr)
      return absl::InternalError(absl::StrCat("the store was opened without ", projection->Family()));
  }
  runner_family = store.family(kFamily);
  if (runner_family == nullptr) return absl::InternalError("the store was opened without the runner family");
  cache_budget->store(static_cast<int64_t>(options.state_cache_bytes));
  const unsigned apply_threads =
      options.apply_threads > 0 ? options.apply_threads : std::max(1u, std::thread::hardware_concurrency());
  if (apply_threads > 1) pool = std::make_unique<ApplyPool>(apply_threads);

  std::vector<kafka::RequiredProperty> consumer_properties = {
      {"group.id", options.group_id, "set it with [run] group_id"},
      {"enable.auto.commit", "false", "offsets live in RocksDB"},
      {"enable.auto.offset.store", "false", "offsets live in RocksDB"},
      {"partition.assignment.strategy", "cooperative-sticky", "rebalances must not stop every partition"},
      {"auto.offset.reset", "error", "the runner decides where a partition it cannot read from goes on"},
      {"enable.partition.eof", "true", "the runner must see where partitions end"}};
  if (!options.instance_id.empty()) {
    consumer_properties.push_back({"group.instance.id", options.instance_id, "set it with [run] instance_id"});
  }
  // A default the config may change: librdkafka (2.0) stops fetching a
  // partition whose prefetched queue holds queued.min.messages (100,000) and
  // backs off before it looks again, so a fold faster than that backoff sat
  // idle: a churn-only replay of 1.1M events took 8.5 s at 59% CPU, 4.9 s with
  // 300,000 (bench/run). queued.max.messages.kbytes still bounds the memory.
  kafka::KafkaSettings kafka = options.kafka;
  kafka.properties.try_emplace("queued.min.messages", "300000");
  ASSIGN_OR_RETURN(kafka::KafkaConf conf, kafka::BuildKafkaConf(kafka, consumer_properties));
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_rebalance_cb(
      conf.get(), [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions, void* opaque) {
        static_cast<Impl*>(opaque)->OnRebalance(err, partitions);
      });
  rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<Impl*>(opaque)->log->warn("Kafka: {} ({}); waiting for the cluster",
                                          rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err)), reason);
  });
  ASSIGN_OR_RETURN(consumer, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  lane.consumer = consumer.get();
  ASSIGN_OR_RETURN(partition_count, kafka::TopicPartitionCount(consumer.get(), options.kafka, options.topic));

  // Queries need the partition count to find a customer's partition.
  own_state.emplace(store, runner_family, options.topic);
  RETURN_IF_ERROR(own_state->CheckPartitionCount(partition_count));
  ASSIGN_OR_RETURN(lane.next_offset, own_state->Offsets(lane.prefix));
  ASSIGN_OR_RETURN(std::string store_id, own_state->StoreId());
  const char* fault = std::getenv("RAPPORT_FAULT");
  exit_after_outbox_write = fault != nullptr && std::string_view(fault) == "exit-after-outbox-write";
  RETURN_IF_ERROR(LoadWindows(lane));
  InitMetrics();
  if (!options.replay) {
    ASSIGN_OR_RETURN(
        relay,
        OutboxRelay::Create({.kafka = options.kafka, .store_id = store_id, .parked = meters ? meters->parked : nullptr},
                            store, runner_family));
    RETURN_IF_ERROR(relay->Resume());
  }

  // Where each partition starts and ends now. A partition with no stored
  // offset is assigned its first offset as a number rather than the logical
  // "beginning", which spares librdkafka an offset lookup at assignment.
  for (int32_t p = 0; p < partition_count; ++p) {
    ASSIGN_OR_RETURN(kafka::LogBounds bounds, kafka::QueryLogBounds(consumer.get(), options.kafka, options.topic, p));
    const int64_t low = bounds.low, high = bounds.high;
    log_start[p] = low;
    RETURN_IF_ERROR(CheckLogHolds(lane, p, low, high));
    if (options.stop_when_caught_up) caught_up_at[p] = high;
    int64_t applied = lane.next_offset.count(p) ? lane.next_offset[p] : low;
    log_end[p] = std::max(high, applied);
    progress.Update(p, applied, log_end[p]);
  }
  RETURN_IF_ERROR(InitVersions());  // which projections the lane applies; a rebuild if a version was raised
  if (options.replay) RETURN_IF_ERROR(AssignForReplay());
  progress.MarkStarted();
  if (options.replay) return absl::OkStatus();
  rd_kafka_poll_set_consumer(consumer.get());
  return absl::OkStatus();
}

// Joins the group (Run does, and only when there is something to apply:
// librdkafka 2.0.2 asserts in rd_kafka_destroy when a cooperative-sticky
// consumer is closed between its JoinGroup and its first assignment, which
// is where an already caught-up `run --until-caught-up` would close it).
Status ProjectionRunner::Impl::Subscribe() {
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, options.topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) return kafka::KafkaStatus(err, absl::StrCat("subscribing to ", options.topic));
  subscribed = true;
  log->info("consuming {} ({} partitions) as group {} into {} projections", options.topic, partition_count,
            options.group_id, lane.projections.size());
  return absl::OkStatus();
}

// Loads each partition's de-duplication window ("d" partition 's' seq -> id),
// trimming it when the configured window has shrunk since.
Status ProjectionRunner::Impl::LoadWindows(Lane& reading) {
  rocksdb::WriteBatch trim;
  for (int32_t p = 0; p < partition_count; ++p) {
    DedupWindow& window = reading.windows.try_emplace(p, options.dedup_window).first->second;
    const std::string prefix = DedupKey(reading.prefix, p, 's');
    RETURN_IF_ERROR(
        store.Scan(runner_family, prefix, [&](std::string_view key, std::string_view value) -> Result<bool> {
          if (key.size() != prefix.size() + 8 || !window.AddStoredChunk(ReadU64(key.substr(prefix.size(), 8)), value)) {
            return absl::InternalError(absl::StrCat(
                "the de-duplication window of partition ", p, " holds an entry of ", value.size(),
                " bytes, not a multiple of 16: the store is damaged or was written by a development build of rapport; "
                "build it again from the log into a new data directory"));
          }
          return true;
        }));
    window.Trim([&](uint64_t first) { trim.Delete(runner_family, prefix + U64(first)).PermitUncheckedError(); });
  }
  if (trim.Count() > 0) RETURN_IF_ERROR(store.Write(trim));
  return absl::OkStatus();
}

void ProjectionRunner::Impl::OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
  // NULL before the consumer has joined a group (a runner closed before it ran).
  const char* protocol = rd_kafka_rebalance_protocol(consumer.get());
  bool cooperative = protocol != nullptr && std::string_view(protocol) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    joined = true;
    // Start where the store says, not where Kafka's committed offsets say.
    for (int i = 0; i < partitions->cnt; ++i) {
      auto& tp = partitions->elems[i];
      auto stored = lane.next_offset.find(tp.partition);
      auto start = log_start.find(tp.partition);
      tp.offset = stored != lane.next_offset.end() ? stored->second
                  : start != log_start.end()       ? start->second
                                                   : RD_KAFKA_OFFSET_BEGINNING;
      assigned.insert(tp.partition);
      log->info("assigned {}[{}] from offset {}", tp.topic, tp.partition,
                stored == lane.next_offset.end() ? std::string("the beginning") : std::to_string(stored->second));
    }
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
    for (int i = 0; i < partitions->cnt; ++i) {
      assigned.erase(partitions->elems[i].partition);
      log->info("revoked {}[{}]", partitions->elems[i].topic, partitions->elems[i].partition);
    }
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer.get(), partitions);
      if (error) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(consumer.get(), nullptr);
    }
  }
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
  if (reading.live && !options.replay && !assigned.contains(partition)) {
    log->info("{}[{}]: out of range, but no longer assigned here; left to its new owner", options.topic, partition);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(kafka::LogBounds bounds,
                   kafka::QueryLogBounds(reading.consumer, options.kafka, options.topic, partition));
  // A new store's partition with nothing applied goes on from the start too.
  reading.next_offset.try_emplace(partition, bounds.low);
  RETURN_IF_ERROR(CheckLogHolds(reading, partition, bounds.low, bounds.high));
  log->info("{}[{}]: going on from offset {}", options.topic, partition, reading.next_offset[partition]);
  rd_kafka_topic_partition_list_t* at = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(at, options.topic.c_str(), partition)->offset = reading.next_offset[partition];
  rd_kafka_error_t* error = rd_kafka_seek_partitions(reading.consumer, at, 5000);
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

// The offsets Kafka holds are advisory (the stored ones are authoritative),
// so they are committed once a second, not with every batch: caught up at
// 20,000 events/s, batches of a few dozen events made the broker write about
// 10,000 offset records a second to __consumer_offsets for nothing.
constexpr auto kAdvisoryCommitInterval = std::chrono::seconds(1);

void ProjectionRunner::Impl::CommitAdvisory(bool now) {
  if (!advisory_commit_due || (!now && Clock::now() < next_advisory_commit)) return;
  advisory_commit_due = false;
  next_advisory_commit = Clock::now() + kAdvisoryCommitInterval;
  if (assigned.empty()) return;
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(assigned.size()));
  for (int32_t p : assigned) {
    auto it = lane.next_offset.find(p);
    if (it != lane.next_offset.end())
      rd_kafka_topic_partition_list_add(offsets, options.topic.c_str(), p)->offset = it->second;
  }
  if (offsets->cnt > 0) rd_kafka_commit(consumer.get(), offsets, 1);  // async: close sends what is queued
  rd_kafka_topic_partition_list_destroy(offsets);
}

// One thread's share of a batch: the records of some of its partitions, in
// log order per partition, applied into state staged apart from the other
// shards'. State keys start with the partition, so shards never touch the
// same key, and the batch's one write is the same whichever thread applied
// which partition.
struct ProjectionRunner::Impl::Shard {
  std::vector<std::pair<DedupWindow*, std::vector<const rd_kafka_message_t*>>> partitions;
  size_t records = 0;
  std::vector<StateBatch> states;  // one per projection of the lane
  std::optional<StateBatch> runner_state;
  std::vector<state::v1::OutboxEntry> outbox;  // numbered once every shard is done
  uint64_t applied = 0, duplicates = 0, dead_lettered = 0, outside_window = 0;
  Status status;
};

bool ProjectionRunner::Impl::InReplayWindow(const v1::Envelope& event, const rd_kafka_message_t* m) const {
  const RunnerOptions::Replay& window = *options.replay;
  const int64_t occurred = events::ToUnixMillis(event.occurred_at());
  if (window.from_ms && occurred < *window.from_ms) return false;
  if (window.until_ms && occurred >= *window.until_ms) return false;
  return !window.known_at_ms ||
         events::KnownAtMillis(event, rd_kafka_message_timestamp(m, nullptr)) < *window.known_at_ms;
}

void ProjectionRunner::Impl::ApplyShard(Lane& reading, Shard& shard) {
  // A replay sends nothing, and neither does a rebuild: the live lane
  // already sent what these events caused.
  const bool sends = reading.live && !options.replay;
  StateBatch& runner_state = *shard.runner_state;
  auto dead_letter = [&](const rd_kafka_message_t* m, const std::string& stage, std::string reason) {
    if (!reading.live) return;  // the rebuild skips what the live lane dead-lettered
    reason = BoundedReason(std::move(reason));
    ++shard.dead_lettered;
    if (meters) meters->dead_lettered->Add();
    log->warn("dead-lettered {}/{}/{}: {}", options.topic, m->partition, m->offset, reason);
    if (!sends) return;
    shard.outbox.push_back(
        BuildDeadLetter(RejectedRecordOf(m, options.topic), options.dead_letter_topic, stage, reason));
  };

  v1::Envelope event;
  std::vector<projections::OutboxRecord> produced;
  for (auto& [window_of_partition, records] : shard.partitions) {
    DedupWindow& window = *window_of_partition;
    for (const rd_kafka_message_t* m : records) {
      std::string_view value(static_cast<const char*>(m->payload), m->len);
      if (auto violation = events::DecodeEvent(value, event)) {
        dead_letter(m, "decode", violation->ToString());
        continue;
      }
      std::string_view key(static_cast<const char*>(m->key), m->key_len);
      if (key.empty()) {
        dead_letter(m, "key", "the record has no key; the key must be the customer_id");
        continue;
      }
      if (key != event.customer_id()) {
        dead_letter(m, "key",
                    absl::StrCat("the record key \"", std::string(key), "\" differs from customer_id \"",
                                 event.customer_id(), "\""));
        continue;
      }
      // A customer's events must share a partition: one elsewhere (a client
      // with another partitioner) would fold into a shadow copy of the
      // customer, and queries, which find the partition by murmur2, would
      // never see it.
      if (const int32_t home = kafka::PartitionForKey(key, partition_count); home != m->partition) {
        dead_letter(m, "key",
                    absl::StrCat("the record is on partition ", m->partition, ", but its key \"", std::string(key),
                                 "\" belongs on partition ", home,
                                 " (murmur2); produce with librdkafka's murmur2_random partitioner or Java's default"));
        continue;
      }
      // Judged against the record's own time, never the wall clock, so a
      // replay judges it alike: recorded_at, or the Kafka timestamp when a
      // client left recorded_at out (that is then the one violation reported).
      absl::Time recorded = event.has_recorded_at() ? absl::FromUnixMillis(events::ToUnixMillis(event.recorded_at()))
                                                    : absl::FromUnixMillis(rd_kafka_message_timestamp(m, nullptr));
      events::Violations violations = events::Validate(event, {.reference_time = recorded});
      if (!violations.empty()) {
        dead_letter(m, "validate", events::JoinViolations(violations, kDeadLetterMaxReasonBytes));
        continue;
      }

      // A record stamped well before it occurred is refused
      // (events::kMaxStampLead): that is what lets a replay --from-time
      // start at offsets-for-times exactly.
      const int64_t stamped = rd_kafka_message_timestamp(m, nullptr);
      if (stamped >= 0 && !events::StampedInTime(events::ToUnixMillis(event.occurred_at()), stamped)) {
        dead_letter(
            m, "validate",
            absl::StrCat(
                "occurred_at: ", events::FormatTime(absl::FromUnixMillis(events::ToUnixMillis(event.occurred_at()))),
                " is more than an hour after the record's Kafka timestamp ",
                events::FormatTime(absl::FromUnixMillis(stamped)), "; stamp a record with its occurred_at"));
        continue;
      }
      if (options.replay && !InReplayWindow(event, m)) {
        ++shard.outside_window;
        continue;
      }

      // De-duplication over the last `dedup_window` ids of this partition:
      // the window is in memory; its changes go into this batch's write.
      if (!window.Remember(IdBytes(event.event_id()))) {
        ++shard.duplicates;
        if (meters) meters->duplicates->Add();
        continue;
      }

      projections::LogPosition position{m->partition, m->offset};
      for (size_t p = 0; p < reading.projections.size(); ++p) {
        produced.clear();
        shard.status = reading.projections[p]->Apply(event, position, shard.states[p], produced);
        if (!shard.status.ok()) return;
        if (meters && reading.projections[p]->Reads(event.payload_case())) reading.applied[p]->Add();
        if (!sends) continue;
        for (auto& record : produced) {
          state::v1::OutboxEntry& entry = shard.outbox.emplace_back();
          entry.set_topic(record.topic == "alerts" ? options.alerts_topic : record.topic);
          if (meters && record.topic == "alerts") meters->alerts->Add();
          entry.set_key(record.key);
          entry.set_value(record.value);
          entry.set_timestamp_ms(events::ToUnixMillis(event.occurred_at()));
          for (const auto& h : record.headers) {
            auto* header = entry.add_headers();
            header->set_name(h.name);
            header->set_value(h.value);
          }
        }
      }
      ++shard.applied;
    }
    const std::string prefix = DedupKey(reading.prefix, records.front()->partition, 's');
    window.EndBatch([&](uint64_t first, std::string ids) { runner_state.Put(prefix + U64(first), std::move(ids)); },
                    [&](uint64_t first) { runner_state.Delete(prefix + U64(first)); });
  }
}

Status ProjectionRunner::Impl::ProcessBatch(Lane& reading, rd_kafka_message_t** messages, size_t count) {
  const auto started = Clock::now();
  std::map<int32_t, int64_t> advanced;

  // Which records to apply, grouped by partition: not those applied before
  // (a late seek) or past the stop (--until, or the live lane's position).
  std::map<int32_t, std::vector<const rd_kafka_message_t*>> by_partition;
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_message_t* m = messages[i];
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      RETURN_IF_ERROR(OnOffsetOutOfRange(reading, m->partition));
      continue;
    }
    if (m->err) {
      log->warn("consuming {}: {}", options.topic, rd_kafka_message_errstr(m));
      continue;
    }
    auto known = reading.next_offset.find(m->partition);
    if (known != reading.next_offset.end() && m->offset < known->second) continue;
    auto stop = reading.stop.find(m->partition);
    if (stop != reading.stop.end() && m->offset >= stop->second) continue;
    advanced[m->partition] = m->offset + 1;
    reading.next_offset[m->partition] = m->offset + 1;
    by_partition[m->partition].push_back(m);
  }

  // Partitions to shards, the largest first to the least loaded; a small
  // batch is not worth waking another thread for.
  constexpr size_t kRecordsPerExtraShard = 256;
  size_t applying = 0;
  for (const auto& [partition, records] : by_partition) applying += records.size();
  const size_t shard_count = std::max<size_t>(
      1, std::min({pool ? pool->threads() : 1, by_partition.size(), applying / kRecordsPerExtraShard}));
  std::vector<Shard> shards(shard_count);
  std::vector<std::pair<size_t, int32_t>> sizes;
  for (const auto& [partition, records] : by_partition) sizes.emplace_back(records.size(), partition);
  std::sort(sizes.begin(), sizes.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [size, partition] : sizes) {
    Shard& least = *std::min_element(shards.begin(), shards.end(),
                                     [](const Shard& a, const Shard& b) { return a.records < b.records; });
    least.partitions.emplace_back(&reading.windows.try_emplace(partition, options.dedup_window).first->second,
                                  std::move(by_partition[partition]));
    least.records += size;
  }
  for (Shard& shard : shards) {
    for (size_t p = 0; p < reading.families.size(); ++p) {
      shard.states.emplace_back(store, reading.families[p], reading.caches[p].get());
    }
    shard.runner_state.emplace(store, runner_family);
  }
  if (applying > 0) {
    log->debug("applying {} records of {} partitions on {} threads", applying, by_partition.size(), shard_count);
  }
  // Exceptions never cross a thread: one thrown while applying (a bug, or
  // memory running out) becomes the shard's status, and the run stops with
  // it, nothing of the batch written, instead of terminating the process.
  auto guarded = [](const std::function<void(Shard&)>& work, Shard& shard) {
    try {
      work(shard);
    } catch (const std::exception& e) {
      shard.status = absl::InternalError(absl::StrCat("applying a batch: ", e.what()));
    } catch (...) {
      shard.status = absl::InternalError("applying a batch: an unknown exception");
    }
  };
  auto on_every_shard = [&](const std::function<void(Shard&)>& work) {
    if (shard_count == 1) return guarded(work, shards[0]);
    std::vector<std::function<void()>> tasks;
    for (Shard& shard : shards) tasks.emplace_back([&work, &shard, &guarded] { guarded(work, shard); });
    pool->RunAll(tasks);
  };
  on_every_shard([&](Shard& shard) { ApplyShard(reading, shard); });
  for (const Shard& shard : shards) RETURN_IF_ERROR(shard.status);

  // A batch with nothing to send (no alert, no dead letter, no delivery to
  // forget: most of them, and every batch of a replay or a rebuild) is
  // written by its shards, each its own partitions' state, offsets and
  // window in a write of its own, at once: RocksDB inserts concurrent writes
  // into its memtables in parallel, and each partition's state still moves
  // with its offset in one atomic write. Otherwise one write takes it all,
  // with the outbox in sequence order.
  const bool write_per_shard =
      shard_count > 1 && !(relay && relay->HasSettled()) &&
      std::all_of(shards.begin(), shards.end(), [](const Shard& shard) { return shard.outbox.empty(); });
  if (write_per_shard) {
    on_every_shard([&](Shard& shard) {
      rocksdb::WriteBatch own;
      for (auto& state : shard.states) state.CommitTo(own);
      shard.runner_state->CommitTo(own);
      for (const auto& [window, records] : shard.partitions) {
        const int32_t partition = records.front()->partition;
        own_state->StageOffset(own, reading.prefix, partition, advanced.at(partition));
      }
      shard.status = store.Write(own);
    });
  }

  std::vector<state::v1::OutboxEntry> outbox;
  for (Shard& shard : shards) {
    if (!shard.status.ok()) {
      for (auto& cache : reading.caches) cache->Clear();  // they may hold what was not written
      return shard.status;
    }
    (reading.live ? stats.applied : stats.rebuilt) += shard.applied;
    stats.duplicates += shard.duplicates;
    stats.dead_lettered += shard.dead_lettered;
    stats.outside_window += shard.outside_window;
    for (auto& entry : shard.outbox) outbox.push_back(std::move(entry));
  }

  // One atomic write: projection state, offsets, the de-duplication window,
  // new outbox entries, and the removal of entries already delivered.
  rocksdb::WriteBatch batch;
  for (Shard& shard : shards) {
    for (auto& state : shard.states) state.CommitTo(batch);
    shard.runner_state->CommitTo(batch);
  }
  for (const auto& [partition, offset] : write_per_shard ? std::map<int32_t, int64_t>() : advanced) {
    own_state->StageOffset(batch, reading.prefix, partition, offset);
  }
  const bool sending = !outbox.empty();
  if (relay) {
    relay->Stage(std::move(outbox), batch);
    RETURN_IF_ERROR(relay->StageSettled(batch));
  }
  if (batch.Count() > 0) {
    if (Status written = store.Write(batch); !written.ok()) {
      for (auto& cache : reading.caches) cache->Clear();  // they hold what was not written
      return written;
    }
  }
  ++stats.batches;
  if (meters && count > 0) {
    meters->batches->Add();
    meters->batch_seconds->Observe(std::chrono::duration<double>(Clock::now() - started).count());
  }
  if (reading.live) UpdateProgress();
  if (exit_after_outbox_write && sending) _exit(86);
  if (relay) RETURN_IF_ERROR(relay->SendStaged());
  if (!reading.stop.empty()) PauseAtStop(reading);
  if (reading.live && !options.replay && !advanced.empty()) {
    advisory_commit_due = true;
    CommitAdvisory();
  }
  return absl::OkStatus();
}

ProjectionRunner::ProjectionRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProjectionRunner::~ProjectionRunner() = default;

Result<std::unique_ptr<ProjectionRunner>> ProjectionRunner::Create(RunnerOptions options,
                                                                   projections::ProjectionStore& store,
                                                                   std::vector<projections::Projection*> projections) {
  auto impl = std::make_unique<Impl>(std::move(options), store, std::move(projections));
  RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<ProjectionRunner>(new ProjectionRunner(std::move(impl)));
}

const RunnerStats& ProjectionRunner::stats() const { return impl_->stats; }
const RunnerProgress& ProjectionRunner::progress() const { return impl_->progress; }

void RunnerProgress::Update(int32_t partition, int64_t applied, int64_t end) {
  {
    std::lock_guard lock(mutex_);
    partitions_[partition] = {applied, end};
  }
  changed_.notify_all();
}

void RunnerProgress::SetRebuild(Rebuild rebuild) {
  std::lock_guard lock(mutex_);
  rebuild_ = std::move(rebuild);
}

RunnerProgress::Rebuild RunnerProgress::rebuild() const {
  std::lock_guard lock(mutex_);
  return rebuild_;
}

void RunnerProgress::MarkStarted() {
  std::lock_guard lock(mutex_);
  started_ = true;
}

bool RunnerProgress::started() const {
  std::lock_guard lock(mutex_);
  return started_;
}

std::map<int32_t, RunnerProgress::Partition> RunnerProgress::Snapshot() const {
  std::lock_guard lock(mutex_);
  return partitions_;
}

int64_t RunnerProgress::TotalLag() const {
  std::lock_guard lock(mutex_);
  int64_t lag = 0;
  for (const auto& [partition, p] : partitions_) lag += std::max<int64_t>(p.end - p.applied, 0);
  return lag;
}

bool RunnerProgress::WaitApplied(int32_t partition, int64_t offset, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    auto it = partitions_.find(partition);
    return it != partitions_.end() && it->second.applied > offset;
  });
}

// A batch is what rd_kafka_consumer_poll (which also serves rebalances) has
// ready: it waits up to `wait` for the first record, then takes what is
// already fetched, up to the batch size, without waiting for more. Under a
// backlog batches fill up; when caught up, each record is applied as soon as
// it arrives instead of waiting for a batch to fill (freshness).
// (rd_kafka_consume_batch_queue was seen to stop returning after a rebalance
// with librdkafka 2.0.2.)
size_t ProjectionRunner::Impl::PollBatch(rd_kafka_t* from, std::vector<rd_kafka_message_t*>& messages,
                                         std::chrono::milliseconds wait) {
  size_t count = 0;
  while (count < messages.size()) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(from, count == 0 ? static_cast<int>(wait.count()) : 0);
    if (message == nullptr) break;
    messages[count++] = message;
  }
  return count;
}

Status ProjectionRunner::Run(const std::atomic<bool>& stop) {
  Impl& r = *impl_;
  std::vector<rd_kafka_message_t*> messages(r.options.max_batch);
  Status result = absl::OkStatus();
  auto next_report = Clock::now() + std::chrono::seconds(10);
  uint64_t reported = 0, rebuilt_reported = 0;
  int held = 0;  // consecutive batches the live lane waited for the rebuild to reach it
  if (!r.options.replay && !r.CaughtUp()) result = r.Subscribe();
  while (result.ok() && !stop.load() && !r.CaughtUp()) {
    // While a version is built the live lane takes only what is already
    // fetched, so the rebuild gets the rest of the time; once the rebuild is
    // within a batch of it, the live lane waits (briefly) so that it can be
    // reached and the new version swapped in.
    size_t count = 0;
    const bool hold = r.rebuild && held < 20 && r.RebuildBehind() <= static_cast<int64_t>(r.options.max_batch);
    held = hold ? held + 1 : 0;
    if (!hold) {
      count = r.PollBatch(r.consumer.get(), messages, r.rebuild ? std::chrono::milliseconds(0) : r.options.batch_wait);
    }
    if (count > 0) {
      r.last_record = Clock::now();
    } else if (!hold) {
      r.WatchForStall();
    }
    Status processed = r.ProcessBatch(r.lane, messages.data(), count);
    if (processed.ok() && r.options.on_batch) r.options.on_batch(r.progress);
    for (size_t i = 0; i < count; ++i) rd_kafka_message_destroy(messages[i]);
    if (processed.ok() && r.rebuild) processed = r.StepRebuild(messages);
    if (!processed.ok()) {
      result = processed;
      break;
    }
    if (Clock::now() >= next_report) {
      r.log->info("applied {} events ({}/s), {} duplicates, {} dead-lettered", r.stats.applied,
                  (r.stats.applied - reported) / 10, r.stats.duplicates, r.stats.dead_lettered);
      if (r.rebuild) {
        r.log->info("building {}: {} records behind the live position ({} events/s)", r.progress.rebuild().families,
                    r.RebuildBehind(), (r.stats.rebuilt - rebuilt_reported) / 10);
      }
      reported = r.stats.applied;
      rebuilt_reported = r.stats.rebuilt;
      next_report = Clock::now() + std::chrono::seconds(10);
    }
  }
  if (r.rebuild_consumer) rd_kafka_consumer_close(r.rebuild_consumer.get());
  // librdkafka 2.0.2 aborts (rd_kafka_sticky_assignor_state_destroy) when a
  // cooperative-sticky consumer is closed while it joins its group: a stop
  // in the first moments waits for the join to finish (records it brings are
  // not applied; the next start seeks to the stored offsets anyway).
  for (auto until = Clock::now() + std::chrono::seconds(15); r.subscribed && !r.joined && Clock::now() < until;) {
    if (rd_kafka_message_t* message = rd_kafka_consumer_poll(r.consumer.get(), 100)) rd_kafka_message_destroy(message);
  }
  // Leave cleanly: lag tools see where the run ended, the group rebalances,
  // the relay drains, and what it delivered is removed from the outbox.
  if (r.joined) r.CommitAdvisory(/*now=*/true);
  rd_kafka_consumer_close(r.consumer.get());
  r.consumer_closed = true;
  if (r.relay) {
    Status drained = r.relay->Drain();
    if (result.ok()) result = drained;
  }
  r.log->info("stopped: {} batches, {} events applied, {} duplicates, {} dead-lettered", r.stats.batches,
              r.stats.applied, r.stats.duplicates, r.stats.dead_lettered);
  return result;
}

Result<int32_t> StoredPartitionCount(projections::ProjectionStore& store, const std::string& topic) {
  auto* family = store.family(ProjectionRunner::kFamily);
  if (family == nullptr) return absl::NotFoundError("the store has no runner state; has `rapport run` filled it?");
  return RunnerState(store, family, topic).PartitionCount();
}

Result<std::map<int32_t, int64_t>> StoredOffsets(projections::ProjectionStore& store, const std::string& topic) {
  auto* family = store.family(ProjectionRunner::kFamily);
  if (family == nullptr) return absl::NotFoundError("the store has no runner state");
  return RunnerState(store, family, topic).Offsets();
}

}  // namespace rapport::consumers
