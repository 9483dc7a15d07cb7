#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rapport/base/metrics.h"
#include "rapport/base/status.h"
#include "rapport/kafka/client.h"
#include "rapport/projections/projection.h"
#include "rapport/projections/store.h"

namespace rapport::consumers {

class RunnerProgress;

struct RunnerOptions {
  kafka::KafkaSettings kafka;
  std::string group_id = "rapport";
  // Static group membership (KIP-345): a process restarted with the same id,
  // after a crash too, takes its partitions back at once instead of waiting
  // for the dead member's session to expire. Empty: dynamic membership.
  std::string instance_id;
  std::string topic = "cx.events";
  std::string dead_letter_topic = "cx.events.dlq";
  std::string alerts_topic = "cx.alerts";
  size_t max_batch = 5000;                   // records per batch (one RocksDB write)
  std::chrono::milliseconds batch_wait{50};  // how long a poll waits for a batch's first record
  uint32_t dedup_window = 100000;            // event ids remembered per partition
  // Threads that apply a batch, each a share of its partitions (state keys
  // start with the partition, so they never meet); 0: one per core.
  unsigned apply_threads = 0;
  // Projection state kept in memory across batches (parsed by no one: the
  // stored bytes), so that most reads skip RocksDB; 0: none.
  size_t state_cache_bytes = 256ull << 20;
  // Stop once every partition has reached the end it had when the run
  // started (for catching up, tests and benchmarks); otherwise run until stopped.
  bool stop_when_caught_up = false;
  // Where to count events, batches, lag and latency; null: nowhere.
  Metrics* metrics = nullptr;

  // Replay (`rapport replay`): read every partition directly, with no group,
  // from the stored offsets up to the log's end when the run started, then
  // stop. A partition is not in time order (imports, re-sends, late tills),
  // so the window is a filter on each event, never a stop at an offset:
  //   from_ms:     only events that occurred at or after it; a new store
  //                starts each partition at its first record stamped at or
  //                after events::EarliestStampOf(from_ms) (exact: every
  //                applied record before it occurred before from_ms);
  //   until_ms:    only events that occurred before it ("as of");
  //   known_at_ms: only events the log held before it ("known at"): by
  //                recorded_at, or the record's Kafka timestamp without one.
  // Nothing is sent: alerts and dead letters were the live runner's to send,
  // so a replay never repeats them.
  struct Replay {
    std::optional<int64_t> from_ms;
    std::optional<int64_t> until_ms;
    std::optional<int64_t> known_at_ms;
  };
  std::optional<Replay> replay;
  // Called on the Run thread after each batch is written (progress bars).
  std::function<void(const RunnerProgress&)> on_batch;
  // Called on the Run thread when the group assigned or took away partitions
  // (the members topic says so at once).
  std::function<void()> on_assignment;
  // [run] standby_replicas: the partitions of other instances this one keeps
  // warm copies of (cluster::StandbyPartitions places them), asked once a
  // second on the Run thread with the events topic's partition count; those the group assigns here are owned
  // instead. They are applied into the same store exactly as their owner
  // applies them, by a consumer of their own (assigned by hand, in no
  // group), and send nothing; when the group assigns one here, applying it
  // goes on from where the standby stands. Null: no standbys.
  std::function<std::set<int32_t>(int32_t partition_count)> standby_partitions;
};

// How far the runner has applied each partition, for readers on other
// threads: the API's freshness figures, read-your-writes waits and readiness.
// Thread-safe.
class RunnerProgress {
 public:
  struct Partition {
    int64_t applied = 0;  // the next offset to apply: every offset below it is in the store
    int64_t end = 0;      // the log end (high watermark) last seen
    // Applied here now: assigned to this instance by the group (a replay
    // applies every partition). A partition not owned holds the state the
    // store had when it last applied it, if any, and moves no further.
    bool owned = true;
    int64_t owned_since_ms = 0;  // unix ms of the assignment that made it owned here
    // A warm copy of a partition another instance owns ([run]
    // standby_replicas): applied here as its owner applies it, sending
    // nothing; it answers reads while no live owner does, and its owner
    // resumes from it if the group gives it here.
    bool standby = false;
    // The log's end when the group assigned it here (or it became a
    // standby here), if this store was behind it then: until applied
    // reaches it, the partition is catching up (what this store has of its
    // customers is only part of their history).
    int64_t catch_up_to = -1;
  };

  // A raised projection version being built beside the live one; until it is
  // swapped in, that projection's queries read the version it replaces (which
  // the live lane keeps folding new events into).
  struct Rebuild {
    std::string families;  // comma-separated; empty: nothing is being built
    int64_t behind = 0;    // records it has yet to apply to reach the live position
  };

  void Update(int32_t partition, int64_t applied, int64_t end);
  // `catch_up_to`: the log's end at the assignment, when the store is behind it.
  void SetOwned(int32_t partition, bool owned, int64_t catch_up_to = -1);
  // Whether the group assigned `partition` here (cheaper than a Snapshot:
  // the API asks it for every read of one customer).
  bool Owned(int32_t partition) const;
  // A standby here (`catch_up_to` as for SetOwned). Owning it ends that.
  void SetStandby(int32_t partition, bool standby, int64_t catch_up_to = -1);
  bool Standby(int32_t partition) const;
  // Owned or a standby, and not yet applied up to where the log ended when
  // it came here.
  bool CatchingUp(int32_t partition) const;
  // The group's first assignment arrived (a replay: at once): which
  // partitions are owned here is known.
  void MarkJoined();
  bool joined() const;
  void SetRebuild(Rebuild rebuild);
  Rebuild rebuild() const;
  void MarkStarted();  // the stored positions are loaded: figures are meaningful

  bool started() const;
  std::map<int32_t, Partition> Snapshot() const;
  int64_t TotalLag() const;  // records of owned partitions not yet applied (as last seen)

  // Waits until the record at `offset` of `partition` has been applied, at
  // most `timeout`; false if it has not been by then.
  bool WaitApplied(int32_t partition, int64_t offset, std::chrono::milliseconds timeout) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<int32_t, Partition> partitions_;
  Rebuild rebuild_;
  bool started_ = false;
  bool joined_ = false;
};

struct RunnerStats {
  uint64_t batches = 0;
  uint64_t applied = 0;         // events folded into the projections
  uint64_t duplicates = 0;      // events skipped because their id was seen in the window
  uint64_t dead_lettered = 0;   // records sent to the dead-letter topic
  uint64_t rebuilt = 0;         // events folded into projection versions being built
  uint64_t outside_window = 0;  // replay: valid events outside its time window, not applied
};

// Folds cx.events into projections, exactly once.
//
// Each batch of records is applied to every projection and written to RocksDB
// in one WriteBatch together with the next offset of each partition, the
// de-duplication window, and the outbox of records to send (dead letters,
// alerts). On start and on every partition assignment the consumer seeks to
// the offsets stored in RocksDB, never to Kafka's committed offsets (those are
// committed only for lag tools). A crash at any moment therefore neither loses
// nor repeats an event: what was written is complete, and what was not is read
// again. The outbox is relayed after each write by an idempotent producer; on
// start the relay learns from the target topics what they already hold, so no
// outbox record is sent twice.
//
// Records that do not decode, lack a key, or fail validation (judged against
// their own recorded_at, so a replay judges them the same way) go to the
// dead-letter topic with the reason and origin in headers; the run goes on.
//
// Threading: Run is called from one thread; projections are applied there and
// on the runner's apply threads (RunnerOptions::apply_threads), each with the
// records of its own partitions, before Run writes the batch.
class ProjectionRunner {
 public:
  static Result<std::unique_ptr<ProjectionRunner>> Create(RunnerOptions options, projections::ProjectionStore& store,
                                                          std::vector<projections::Projection*> projections);
  ~ProjectionRunner();

  // Runs until `stop` is set (SIGINT/SIGTERM: the current batch completes),
  // until caught up when so configured, or until a projection or the store
  // fails. The broker going away is waited for, with log lines.
  Status Run(const std::atomic<bool>& stop);

  const RunnerStats& stats() const;
  const RunnerProgress& progress() const;

  // The runner family's name in the store.
  static constexpr const char* kFamily = "runner";

 private:
  struct Impl;
  explicit ProjectionRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads what the runner stored: the next offset of each partition (for
// status and for `rapport query` to know the partition count).
Result<std::map<int32_t, int64_t>> StoredOffsets(projections::ProjectionStore& store, const std::string& topic);

// The partition count of `topic` when the runner last started.
Result<int32_t> StoredPartitionCount(projections::ProjectionStore& store, const std::string& topic);

}  // namespace rapport::consumers
