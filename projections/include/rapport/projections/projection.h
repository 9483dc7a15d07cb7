#pragma once

#include <rocksdb/write_batch.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "rapport/base/status.h"
#include "rapport/events/cloudevents.h"
#include "rapport/projections/store.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::projections {

// Where an event sits in the log.
struct LogPosition {
  int32_t partition = -1;
  int64_t offset = -1;
};

// Values of one projection family that recent batches read or wrote, kept
// across batches so that a customer's next event finds its state without a
// RocksDB read (a third of the fold's time before). Exact because the runner
// is the family's only writer and every write passes through
// StateBatch::CommitTo, which updates it. Split into parts by the partition
// at the start of each key (keys.h), so threads applying different
// partitions never share a part. All the caches of a reading share one
// budget of bytes; a part that is written to while the budget is spent is
// emptied, which is cheap and keeps the parts in use.
class StateCache {
 public:
  StateCache(int32_t partitions, std::shared_ptr<std::atomic<int64_t>> budget_left);
  ~StateCache();
  StateCache(const StateCache&) = delete;
  StateCache& operator=(const StateCache&) = delete;

  // Null when `key` is not cached; else its value (nullopt: it has none).
  const std::optional<std::string>* Find(std::string_view key) const;
  void Store(std::string_view key, std::optional<std::string> value);
  void Clear();

 private:
  struct Part {
    absl::flat_hash_map<std::string, std::optional<std::string>> values;
    int64_t bytes = 0;
  };
  Part* PartOf(std::string_view key);
  const Part* PartOf(std::string_view key) const;
  std::vector<Part> parts_;
  std::shared_ptr<std::atomic<int64_t>> budget_left_;
};

// One projection's state during one batch. Reads see the batch's own earlier
// writes; every changed key is staged once, in key order, when the batch
// commits, so a hot key (a busy store's review totals) costs one write per
// batch, not one per event. Used by one thread.
class StateBatch {
 public:
  // With `cache`, reads look there before the store, and CommitTo keeps
  // what the batch wrote in it.
  StateBatch(ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, StateCache* cache = nullptr)
      : store_(store), family_(family), shared_(cache) {}

  // The key's value, or nullptr when it has none. Store errors are returned.
  Result<const std::string*> Find(std::string_view key);
  void Put(std::string key, std::string value);
  void Delete(std::string key);

  // Stages every change into `batch` and forgets them.
  void CommitTo(rocksdb::WriteBatch& batch);

 private:
  struct Entry {
    std::optional<std::string> value;
    bool dirty = false;
  };
  ProjectionStore& store_;
  rocksdb::ColumnFamilyHandle* family_;
  StateCache* shared_;
  std::map<std::string, Entry, std::less<>> cache_;
};

// A record a projection asks to send (an alert), kept in the outbox in the
// same write as the state change that caused it, then relayed to Kafka.
struct OutboxRecord {
  std::string topic;  // a role ("alerts") that the runner maps to a topic name
  std::string key;
  std::string value;
  std::vector<events::Header> headers;
};

// A projection folds events into state: a deterministic function of the log.
// DoApply may use the event's own times but never the wall clock, random
// numbers or unordered iteration. Applying the same log always gives the same
// state and so the same digest.
//
// Threading: the runner calls Apply from several threads at once, for events
// of different partitions, each thread with its own StateBatch: DoApply
// changes no member and touches only keys of `position.partition` (keys.h).
// Queries read the store through their own read-only classes, never through
// a Projection.
class Projection {
 public:
  virtual ~Projection() = default;

  virtual std::string_view Name() const = 0;
  virtual int Version() const = 0;
  // The column family holding this version's state, "name@vN".
  std::string Family() const;

  // Folds one valid, de-duplicated event in. An error here means the
  // projection cannot go on (a bug or a damaged store), and the runner stops
  // rather than skip an event.
  Status Apply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
               std::vector<OutboxRecord>& outbox);

  // Whether the projection reads events of this type at all.
  virtual bool Reads(v1::Envelope::PayloadCase type) const = 0;

 protected:
  virtual Status DoApply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
                         std::vector<OutboxRecord>& outbox) = 0;
};

}  // namespace rapport::projections
