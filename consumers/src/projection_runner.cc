#include "rapport/consumers/projection_runner.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "rapport/projections/keys.h"
#include "runner_impl.h"

namespace rapport::consumers {
namespace {

using projections::ReadU64;
using runner_keys::DedupKey;
using runner_keys::U64;

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
  meters_in.transactions = &m->counter("rapport_outbox_transactions_total",
                                       "Transactions of the outbox relay (records and watermarks), by how they ended.",
                                       {{"result", "committed"}});
  meters_in.aborted = &m->counter("rapport_outbox_transactions_total",
                                  "Transactions of the outbox relay (records and watermarks), by how they ended.",
                                  {{"result", "aborted"}});
  meters_in.lost_to_retention =
      &m->counter("rapport_records_lost_to_retention_total",
                  "Records deleted from the log by retention before this store applied them.");
  meters_in.batches = &m->counter("rapport_batches_total", "Batches written to the store (one WriteBatch each).");
  meters_in.batch_seconds =
      &m->histogram("rapport_batch_apply_seconds", "Time to apply a batch to every projection and write it.", {});
  meters_in.assigned_with_state = &m->counter(
      "rapport_partition_assignments_total",
      "Partitions assigned to this instance, by whether its store had state for them.", {{"state", "stored"}});
  meters_in.assigned_without_state = &m->counter("rapport_partition_assignments_total",
                                                 "Partitions assigned to this instance, by whether its store had "
                                                 "state for them.",
                                                 {{"state", "none"}});
  meters_in.partitions_assigned =
      &m->gauge("rapport_partitions_assigned", "Partitions of the events topic this instance applies now.");
  meters_in.partitions_catching_up =
      &m->gauge("rapport_partitions_catching_up",
                "Assigned partitions not yet caught up with the log's end since they were assigned.");
  meters_in.partitions_standby =
      &m->gauge("rapport_partitions_standby",
                "Partitions of other instances this one keeps a warm copy of ([run] standby_replicas).");
  meters_in.rebuild_behind =
      &m->gauge("rapport_rebuild_lag_records",
                "Records a projection version being built still has to apply to reach the live position (0: none).");
  meters = meters_in;
  m->AddCollector([this, m] {
    for (const auto& [partition, p] : progress.Snapshot()) {
      Labels labels{{"topic", options.topic}, {"partition", std::to_string(partition)}};
      m->gauge("rapport_consumer_lag_records",
               "Records in the log not yet applied, per partition owned or standing by here (0 for the others).",
               labels)
          .Set(p.owned || p.standby ? static_cast<double>(std::max<int64_t>(p.end - p.applied, 0)) : 0);
      m->gauge("rapport_applied_offset", "The next offset to apply, per partition.", labels)
          .Set(static_cast<double>(p.applied));
    }
  });
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

// The live (or replay) lane's consumer: made at start, and again when the
// group fenced the last one (Rejoin).
Status ProjectionRunner::Impl::CreateConsumer() {
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
  // How soon the group gives a dead instance's partitions to the others
  // (librdkafka's default is 45 s): a static member that stops, crashed or
  // not, keeps its partitions this long, and one restarted within it gets
  // them back with no rebalance. Heartbeats tell members of a rebalance.
  kafka.properties.try_emplace("session.timeout.ms", "10000");
  kafka.properties.try_emplace("heartbeat.interval.ms", "1000");
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
  return absl::OkStatus();
}

// librdkafka 2.0 treats a static member fenced by the group as fatal for
// its consumer (FENCED_INSTANCE_ID: seen when a broker outage outlasts the
// session, librdkafka issue 3437): a new consumer joins again, from the
// stored offsets, and the relay reads its watermarks again. Fenced five
// times in a minute is another process with the same [run] instance_id.
Status ProjectionRunner::Impl::Rejoin() {
  char reason[512] = "";
  rd_kafka_fatal_error(consumer.get(), reason, sizeof(reason));
  const auto now = Clock::now();
  while (!fenced_at.empty() && now - fenced_at.front() > std::chrono::minutes(1)) fenced_at.pop_front();
  fenced_at.push_back(now);
  if (fenced_at.size() > 5) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the consumer group fenced this instance five times in a minute (", reason,
        "): another process runs with the same [run] instance_id \"", options.instance_id, "\"; give each its own"));
  }
  log->warn("the consumer group fenced this instance ({}); joining it again with a new consumer", reason);
  rd_kafka_consumer_close(consumer.get());  // revokes what it held (OnRebalance)
  for (int32_t p : assigned) {
    if (relay) relay->Disown(p);
    progress.SetOwned(p, false);
  }
  assigned.clear();
  catching_up.clear();
  consumer.reset();
  subscribed = joined = false;
  RETURN_IF_ERROR(CreateConsumer());
  lane.consumer = consumer.get();
  rd_kafka_poll_set_consumer(consumer.get());
  return Subscribe();
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

  RETURN_IF_ERROR(CreateConsumer());
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
    ASSIGN_OR_RETURN(relay, OutboxRelay::Create({.kafka = options.kafka,
                                                 .source_topic = options.topic,
                                                 .transactional_id = OutboxTransactionalId(options.group_id, store_id),
                                                 .parked = meters ? meters->parked : nullptr,
                                                 .transactions = meters ? meters->transactions : nullptr,
                                                 .aborted = meters ? meters->aborted : nullptr},
                                                store, runner_family));
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
    progress.SetOwned(p, options.replay.has_value());  // a group run owns what the group assigns
  }
  RETURN_IF_ERROR(InitVersions());  // which projections the lane applies; a rebuild if a version was raised
  if (options.replay) RETURN_IF_ERROR(AssignForReplay());
  if (options.replay) progress.MarkJoined();
  progress.MarkStarted();
  if (options.replay) return absl::OkStatus();
  rd_kafka_poll_set_consumer(consumer.get());
  if (options.standby_partitions) {
    ASSIGN_OR_RETURN(standby_consumer, ManualConsumer(".standby"));
    rd_kafka_poll_set_consumer(standby_consumer.get());
  }
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
    if (processed.ok() && r.standby_consumer) processed = r.StepStandby(messages);
    if (processed.ok() && r.rebuild) processed = r.StepRebuild(messages);
    if (processed.ok() && r.fenced) {
      r.fenced = false;
      processed = r.Rejoin();
    }
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
  if (r.standby_consumer) rd_kafka_consumer_close(r.standby_consumer.get());
  // librdkafka 2.0.2 aborts (rd_kafka_sticky_assignor_state_destroy) when a
  // cooperative-sticky consumer is closed while it joins its group: a stop
  // in the first moments waits for the join to finish (records it brings are
  // not applied; the next start seeks to the stored offsets anyway).
  for (auto until = Clock::now() + std::chrono::seconds(15); r.subscribed && !r.joined && Clock::now() < until;) {
    if (rd_kafka_message_t* message = rd_kafka_consumer_poll(r.consumer.get(), 100)) rd_kafka_message_destroy(message);
  }
  // Leave cleanly: the relay sends what waits, with the watermarks (which
  // lag tools read as the group's offsets), the group rebalances, and what
  // was delivered is removed from the outbox.
  if (r.relay && r.joined) {
    Status flushed = r.relay->Flush(r.consumer.get(), r.lane.next_offset, /*now=*/true);
    if (result.ok()) result = flushed;
  }
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
