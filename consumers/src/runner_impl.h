#pragma once

// The runner's insides, shared by the files that hold its parts:
// projection_runner.cc (setting up, the loop), partitions.cc (assignments,
// where the log stands, commits, progress), batch.cc (checking, applying and
// writing a batch), standby.cc (warm copies of other instances' partitions)
// and versions.cc (building a raised projection version beside the live one,
// then swapping it in). The parts that need no Impl
// have headers of their own: runner_state.h, outbox_relay.h, dedup_window.h,
// dead_letter.h, apply_pool.h.

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "apply_pool.h"
#include "dead_letter.h"
#include "dedup_window.h"
#include "outbox_relay.h"
#include "rapport/base/logging.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/state/v1/runner.pb.h"
#include "runner_keys.h"
#include "runner_state.h"

namespace rapport::consumers {

using Clock = std::chrono::steady_clock;

// One reading of the log into a set of projections, at its own position,
// with its own de-duplication window. `run` and `replay` have one lane; while
// a raised projection version is built, `run` has a second, the rebuild lane,
// which reads the log from the start up to wherever the live lane is.
struct Lane {
  bool live = true;    // only the live lane sends (alerts, dead letters, watermarks) and publishes RunnerProgress
  std::string prefix;  // of its keys in the runner family ("" or runner_keys::kRebuildPrefix)
  rd_kafka_t* consumer = nullptr;
  std::vector<projections::Projection*> projections;
  std::vector<rocksdb::ColumnFamilyHandle*> families;  // one per projection: the live lane's are the live versions
  std::vector<Counter*> applied;                       // one per projection, when metrics are kept
  std::vector<std::unique_ptr<projections::StateCache>> caches;  // one per projection: its state across batches
  std::map<int32_t, int64_t> next_offset;                        // mirrors what is stored
  std::map<int32_t, int64_t> stop;  // replay and rebuild: the first offset not to apply; empty: no end
  std::map<int32_t, DedupWindow> windows;
  std::set<int32_t> paused;  // partitions paused at their stop
};

struct ProjectionRunner::Impl {
  Impl(RunnerOptions o, projections::ProjectionStore& s, std::vector<projections::Projection*> p)
      : options(std::move(o)), store(s), all_projections(std::move(p)), log(ModuleLogger("consumers")) {}

  // A runner made but never run (the caller failed in between) still leaves
  // its group here: destroying a subscribed handle would run the rebalance
  // callback inside rd_kafka_destroy, which deadlocks.
  ~Impl() {
    if (consumer && !consumer_closed) rd_kafka_consumer_close(consumer.get());
  }

  RunnerOptions options;
  projections::ProjectionStore& store;
  std::vector<projections::Projection*> all_projections;  // as given, in order
  rocksdb::ColumnFamilyHandle* runner_family = nullptr;
  std::shared_ptr<spdlog::logger> log;

  kafka::KafkaHandle consumer;  // the live (or replay) lane's
  bool consumer_closed = false;
  bool subscribed = false;
  bool joined = false;  // the first assignment arrived (possibly of no partitions)
  int32_t partition_count = 0;
  Lane lane;                    // live, or the replay
  std::optional<Lane> rebuild;  // while raised versions are built
  kafka::KafkaHandle rebuild_consumer;
  std::set<int32_t> assigned;
  // Partitions assigned and not yet caught up with the log's end as last
  // seen: a partition that moved here (from another instance, or back after
  // one left) catches up from where this store's state for it stands.
  struct CatchUp {
    int64_t from;
    Clock::time_point since;
    // False while the log's end is not known (the broker did not answer the
    // watermark query at the assignment): the partition counts as catching
    // up until the first fetch tells where the log ends.
    bool end_known = true;
  };
  std::map<int32_t, CatchUp> catching_up;
  // Standbys (RunnerOptions::standby_partitions): the live lane applies them
  // too, as they arrive on their own consumer (standby.cc).
  kafka::KafkaHandle standby_consumer;
  std::set<int32_t> standing_by;
  std::map<int32_t, CatchUp> standby_warming;  // standbys not yet applied to where the log ended when they came
  Clock::time_point next_standby_placement, next_standby_forget;
  std::map<int32_t, int64_t> caught_up_at;  // high watermarks when the run started
  std::map<int32_t, int64_t> log_start;     // low watermarks: where a partition with no stored offset starts
  std::chrono::steady_clock::time_point last_record = std::chrono::steady_clock::now();  // for the stall watchdog
  RunnerStats stats;
  RunnerProgress progress;
  std::map<int32_t, int64_t> log_end;  // the highest log end seen per partition
  std::unique_ptr<ApplyPool> pool;     // with more than one apply thread
  // What the lanes' state caches may still take (RunnerOptions::state_cache_bytes).
  std::shared_ptr<std::atomic<int64_t>> cache_budget = std::make_shared<std::atomic<int64_t>>(0);

  // Metrics, when a registry was given.
  struct Meters {
    std::map<std::string, Counter*> applied;  // per projection family
    Counter* duplicates;
    Counter* dead_lettered;
    Counter* alerts;
    Counter* parked;
    Counter* transactions;
    Counter* aborted;
    Counter* lost_to_retention;
    Counter* batches;
    Histogram* batch_seconds;
    Gauge* rebuild_behind;
    Counter* assigned_with_state;     // partitions assigned from this store's stored offset
    Counter* assigned_without_state;  // partitions assigned that this store has never applied
    Gauge* partitions_assigned;
    Gauge* partitions_catching_up;
    Gauge* partitions_standby;
  };
  std::optional<Meters> meters;

  std::optional<RunnerState> own_state;  // offsets, partition count, store id
  std::unique_ptr<OutboxRelay> relay;    // none in a replay, which sends nothing
  // Fault injection for tests/fault: RAPPORT_FAULT=exit-after-outbox-write
  // makes the process die right after a batch with outbox entries is written
  // and before the relay sends them, the moment a random kill rarely hits.
  bool exit_after_outbox_write = false;
  bool fenced = false;                      // the consumer reported a fatal error: Rejoin
  std::deque<Clock::time_point> fenced_at;  // the last minute's fences

  // projection_runner.cc
  Status Init();
  Status CreateConsumer();
  Status Rejoin();
  void InitMetrics();
  Status LoadWindows(Lane& lane);
  void SetProjections(Lane& lane, const std::vector<projections::Projection*>& projections);
  Status Subscribe();
  size_t PollBatch(rd_kafka_t* from, std::vector<rd_kafka_message_t*>& messages, std::chrono::milliseconds wait);

  // batch.cc
  struct Shard;
  Status ProcessBatch(Lane& lane, rd_kafka_message_t** messages, size_t count);
  void ApplyShard(Lane& lane, Shard& shard);
  // Replay: whether a valid event lies inside RunnerOptions::Replay's window.
  bool InReplayWindow(const v1::Envelope& event, const rd_kafka_message_t* m) const;

  // partitions.cc
  void OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions);
  Status AssignForReplay();
  void PauseAtStop(Lane& lane);
  // Whether the log still holds `partition` where `reading` stands. Past its
  // end (`high`): the topic was recreated or its log cut, and the offsets now
  // name other records, so the run stops with what happened and what to do.
  // Before its start (`low`): retention deleted records not yet applied; it
  // goes on from `low`, with a warning and a count (nothing else can be done).
  Status CheckLogHolds(Lane& reading, int32_t partition, int64_t low, int64_t high);
  // Kafka answered "offset out of range" (auto.offset.reset is "error", so
  // that no position is ever moved silently): asks where the log stands now,
  // CheckLogHolds, and seeks the partition to where it goes on.
  Status OnOffsetOutOfRange(Lane& reading, int32_t partition);
  bool CaughtUp() const;
  void WatchForStall();
  void UpdateProgress();

  // standby.cc
  // A consumer of the events topic assigned by hand, in no group (the
  // rebuild's and the standbys'): group.id is the group's with the suffix.
  Result<kafka::KafkaHandle> ManualConsumer(const char* group_suffix);
  // Follows the placement, applies what the standby consumer has fetched,
  // and forgets outbox entries their owners sent.
  Status StepStandby(std::vector<rd_kafka_message_t*>& messages);
  void StartStandbys(const std::set<int32_t>& partitions);
  void StopStandbys(const std::set<int32_t>& partitions, std::string_view why);

  // versions.cc
  Status InitVersions();
  Status StartRebuild(const std::vector<projections::Projection*>& to_build);
  int64_t RebuildBehind();  // records the rebuild lane has to apply to reach the live lane
  Status StepRebuild(std::vector<rd_kafka_message_t*>& messages);
  Status SwapRebuilt();
};

}  // namespace rapport::consumers
