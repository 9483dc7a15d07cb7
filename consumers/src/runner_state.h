#pragma once

// What the runner keeps about its reading of one topic in the runner family,
// beside the outbox (outbox_relay.h) and the de-duplication windows
// (dedup_window.h): each lane's next offset to apply per partition, the
// partition count the store was built under, and the store's own id. The
// offsets move in the same atomic write as the state they produced, so a
// crash at any moment resumes exactly where the state stands.

#include <cstdint>
#include <map>
#include <string>

#include "rapport/base/status.h"
#include "rapport/projections/store.h"

namespace rapport::consumers {

class RunnerState {
 public:
  // `store` and `family` (the runner family) outlive this.
  RunnerState(projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, std::string topic);

  // The partition count the store was built under; NotFound before the first run.
  Result<int32_t> PartitionCount() const;
  // Records `count` on a new store. A store built under another count keeps
  // customers where murmur2 modulo that count put them: under this one,
  // queries would look for many of them on other partitions, and their new
  // events would fold into second copies there. FailedPrecondition then.
  Status CheckPartitionCount(int32_t count);

  // One lane's next offset to apply per partition (`lane_prefix`: "" for the
  // live lane, runner_keys::kRebuildPrefix for a rebuild); partitions never
  // applied are absent.
  Result<std::map<int32_t, int64_t>> Offsets(const std::string& lane_prefix = "") const;
  void StageOffset(rocksdb::WriteBatch& batch, const std::string& lane_prefix, int32_t partition,
                   int64_t next_offset) const;

  // 16 random bytes that name this store, in the outbox relay's
  // transactional id (outbox_relay.h): made and written on first use, the
  // same ever after.
  Result<std::string> StoreId();

 private:
  projections::ProjectionStore& store_;
  rocksdb::ColumnFamilyHandle* family_;
  std::string topic_;
};

}  // namespace rapport::consumers
