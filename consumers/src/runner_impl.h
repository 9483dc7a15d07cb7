#pragma once

// The runner's insides, shared by projection_runner.cc (reading the log into
// the live projections, or a replay) and versions.cc (building a raised
// projection version beside the live one, then swapping it in).

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
#include "rapport/consumers/projection_runner.h"
#include "rapport/events/logging.h"
#include "rapport/projections/keys.h"
#include "rapport/state/v1/runner.pb.h"

namespace rapport::consumers {
namespace runner_keys {

// Keys of the runner family. The live lane's have no prefix; the rebuild
// lane's start with "b" (kRebuildPrefix), so that one range delete ends a
// rebuild.
inline std::string OffsetKey(const std::string& prefix, const std::string& topic, int32_t partition) {
  std::string key = prefix + "o" + topic;
  key.push_back('\0');
  projections::AppendU32(key, static_cast<uint32_t>(partition));
  return key;
}
inline std::string DedupKey(const std::string& prefix, int32_t partition, char kind) {
  std::string key = prefix + "d";
  projections::AppendU32(key, static_cast<uint32_t>(partition));
  key.push_back(kind);
  return key;
}
inline std::string OutboxKey(uint64_t seq) {
  std::string key = "x";
  projections::AppendU64(key, seq);
  return key;
}
inline std::string U64(uint64_t value) {
  std::string out;
  projections::AppendU64(out, value);
  return out;
}
inline std::string ParkedKey(uint64_t seq) {
  std::string key = "p";
  projections::AppendU64(key, seq);
  return key;
}
inline const std::string kOutboxNextKey = "n";
inline const std::string kStoreIdKey = "s";
inline std::string PartitionCountKey(const std::string& topic) { return "c" + topic; }

inline const std::string kRebuildPrefix = "b";
inline const std::string kRebuildEnd = "c";  // just past every "b" key
// The families being built, comma-separated: a different set starts over.
inline const std::string kRebuildFamiliesKey = "bf";

}  // namespace runner_keys

// One reading of the log into a set of projections, at its own position,
// with its own de-duplication window. `run` and `replay` have one lane; while
// a raised projection version is built, `run` has a second, the rebuild lane,
// which reads the log from the start up to wherever the live lane is.
struct Lane {
  bool live = true;    // only the live lane sends (alerts, dead letters), publishes RunnerProgress, commits offsets
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

  producers::KafkaHandle consumer;  // the live (or replay) lane's
  bool consumer_closed = false;
  bool subscribed = false;
  bool joined = false;  // the first assignment arrived (possibly of no partitions)
  int32_t partition_count = 0;
  Lane lane;                    // live, or the replay
  std::optional<Lane> rebuild;  // while raised versions are built
  producers::KafkaHandle rebuild_consumer;
  std::set<int32_t> assigned;
  std::map<int32_t, int64_t> caught_up_at;  // high watermarks when the run started
  std::map<int32_t, int64_t> log_start;     // low watermarks: where a partition with no stored offset starts
  std::chrono::steady_clock::time_point last_record = std::chrono::steady_clock::now();  // for the stall watchdog
  RunnerStats stats;
  RunnerProgress progress;
  std::map<int32_t, int64_t> log_end;  // the highest log end seen per partition
  std::unique_ptr<ApplyPool> pool;     // with more than one apply thread
  std::chrono::steady_clock::time_point next_advisory_commit;
  bool advisory_commit_due = false;  // positions moved since the last advisory commit
  // What the lanes' state caches may still take (RunnerOptions::state_cache_bytes).
  std::shared_ptr<std::atomic<int64_t>> cache_budget = std::make_shared<std::atomic<int64_t>>(0);

  // Metrics, when a registry was given.
  struct Meters {
    std::map<std::string, Counter*> applied;  // per projection family
    Counter* duplicates;
    Counter* dead_lettered;
    Counter* alerts;
    Counter* parked;
    Counter* lost_to_retention;
    Counter* batches;
    Histogram* batch_seconds;
    Gauge* rebuild_behind;
  };
  std::optional<Meters> meters;

  // The outbox relay.
  producers::KafkaHandle relay;
  std::map<std::string, int32_t> target_partitions;
  uint64_t next_outbox_seq = 0;
  std::string store_id;  // 16 random bytes, made when the store is first used
  // Fault injection for tests/fault: RAPPORT_FAULT=exit-after-outbox-write
  // makes the process die right after a batch with outbox entries is written
  // and before the relay sends them, the moment a random kill rarely hits.
  bool exit_after_outbox_write = false;
  std::vector<uint64_t> delivered;  // outbox entries the broker acknowledged; deleted in the next write
  // Outbox entries the broker can never take (too large, a timestamp it
  // refuses, ...): moved from the outbox to the parked keys in the next
  // write, so that they neither stop the pipeline nor its restart.
  std::vector<uint64_t> to_park;
  // Refused as too large, possibly only for the company it had: Kafka
  // checks the size of a whole batch of records, so a small record batched
  // with a too-large one is refused with it. Each is sent again alone; one
  // still refused alone is parked.
  std::vector<uint64_t> retry_alone;
  std::set<uint64_t> sent_alone;
  uint64_t relay_failures = 0;

  // projection_runner.cc
  Status Init();
  Status ResumeOutbox();
  Status LoadWindows(Lane& lane);
  Result<int32_t> TargetPartitions(const std::string& topic);
  Status Relay(uint64_t seq, const state::v1::OutboxEntry& entry);
  // Sets an entry the broker refused for good aside (metric, log line).
  void Park(uint64_t seq, const std::string& topic, rd_kafka_resp_err_t err);
  // Sends each of `retry_alone` with nothing else in flight.
  Status RetryAlone();
  // Stages the move of `to_park`'s entries from the outbox to the parked keys.
  Status StageParked(rocksdb::WriteBatch& batch);
  size_t PollBatch(rd_kafka_t* from, std::vector<rd_kafka_message_t*>& messages, std::chrono::milliseconds wait);
  struct Shard;
  Status ProcessBatch(Lane& lane, rd_kafka_message_t** messages, size_t count);
  void ApplyShard(Lane& lane, Shard& shard);
  // Replay: whether a valid event lies inside RunnerOptions::Replay's window.
  bool InReplayWindow(const v1::Envelope& event, const rd_kafka_message_t* m) const;
  void OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions);
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
  // Commits the live lane's positions to Kafka for lag tools (asynchronously):
  // at most once per kAdvisoryCommitInterval, or at once with `now` (when the
  // run ends; closing the consumer sends it).
  void CommitAdvisory(bool now = false);
  void InitMetrics();
  Status AssignForReplay();
  Status Subscribe();
  void PauseAtStop(Lane& lane);
  void UpdateProgress();
  void SetProjections(Lane& lane, const std::vector<projections::Projection*>& projections);

  // versions.cc
  Status InitVersions();
  Status StartRebuild(const std::vector<projections::Projection*>& to_build);
  int64_t RebuildBehind();  // records the rebuild lane has to apply to reach the live lane
  Status StepRebuild(std::vector<rd_kafka_message_t*>& messages);
  Status SwapRebuilt();
};

}  // namespace rapport::consumers
