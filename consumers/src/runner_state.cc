#include "runner_state.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "runner_keys.h"

namespace rapport::consumers {

using projections::AppendU32;
using projections::ReadU32;
using projections::ReadU64;

RunnerState::RunnerState(projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, std::string topic)
    : store_(store), family_(family), topic_(std::move(topic)) {}

Result<int32_t> RunnerState::PartitionCount() const {
  auto stored = store_.Get(family_, runner_keys::PartitionCountKey(topic_));
  if (!stored.ok()) {
    if (stored.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("the store has never consumed ", topic_));
    }
    return stored.status();
  }
  if (stored->size() != 4)
    return absl::InternalError(absl::StrCat("the stored partition count of ", topic_, " is damaged"));
  return static_cast<int32_t>(ReadU32(*stored));
}

Status RunnerState::CheckPartitionCount(int32_t count) {
  auto built_with = PartitionCount();
  if (built_with.ok()) {
    if (*built_with == count) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        topic_, " has ", count, " partitions now, but this store was built when it had ", *built_with,
        ": a customer's partition is murmur2 of the key modulo the count, so the change moved customers, and "
        "rapport stops rather than split them. Keep the events topic's partition count fixed; to change it, "
        "publish its events again into a new topic with the count wanted and build a new store from that one."));
  }
  if (built_with.status().code() != absl::StatusCode::kNotFound) return built_with.status();
  std::string value;
  AppendU32(value, static_cast<uint32_t>(count));
  rocksdb::WriteBatch batch;
  batch.Put(family_, runner_keys::PartitionCountKey(topic_), value).PermitUncheckedError();
  return store_.Write(batch);
}

Result<std::map<int32_t, int64_t>> RunnerState::Offsets(const std::string& lane_prefix) const {
  std::map<int32_t, int64_t> offsets;
  const std::string prefix = runner_keys::OffsetPrefix(lane_prefix, topic_);
  RETURN_IF_ERROR(store_.Scan(family_, prefix, [&](std::string_view key, std::string_view value) -> Result<bool> {
    if (key.size() != prefix.size() + 4 || value.size() != 8) {
      return absl::InternalError(absl::StrCat("a stored offset of ", topic_, " is damaged"));
    }
    offsets[static_cast<int32_t>(ReadU32(key.substr(prefix.size())))] = static_cast<int64_t>(ReadU64(value));
    return true;
  }));
  return offsets;
}

void RunnerState::StageOffset(rocksdb::WriteBatch& batch, const std::string& lane_prefix, int32_t partition,
                              int64_t next_offset) const {
  batch
      .Put(family_, runner_keys::OffsetKey(lane_prefix, topic_, partition),
           runner_keys::U64(static_cast<uint64_t>(next_offset)))
      .PermitUncheckedError();
}

Result<std::string> RunnerState::StoreId() {
  auto stored = store_.Get(family_, runner_keys::kStoreIdKey);
  if (stored.ok()) {
    if (stored->size() != 16) return absl::InternalError("the store's id is damaged");
    return *stored;
  }
  if (stored.status().code() != absl::StatusCode::kNotFound) return stored.status();
  std::string id;
  std::random_device entropy;
  for (int i = 0; i < 4; ++i) AppendU32(id, entropy());
  rocksdb::WriteBatch batch;
  batch.Put(family_, runner_keys::kStoreIdKey, id).PermitUncheckedError();
  RETURN_IF_ERROR(store_.Write(batch));
  return id;
}

}  // namespace rapport::consumers
