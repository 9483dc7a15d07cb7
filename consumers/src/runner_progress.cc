#include "absl/time/clock.h"
#include "rapport/consumers/projection_runner.h"

namespace rapport::consumers {

void RunnerProgress::Update(int32_t partition, int64_t applied, int64_t end) {
  {
    std::lock_guard lock(mutex_);
    Partition& p = partitions_[partition];
    p.applied = applied;
    p.end = end;
  }
  changed_.notify_all();
}

void RunnerProgress::SetOwned(int32_t partition, bool owned, int64_t catch_up_to) {
  std::lock_guard lock(mutex_);
  Partition& p = partitions_[partition];
  if (owned && !p.owned) p.owned_since_ms = absl::ToUnixMillis(absl::Now());
  p.owned = owned;
  if (owned) p.standby = false;
  p.catch_up_to = owned ? catch_up_to : -1;
}

void RunnerProgress::SetStandby(int32_t partition, bool standby, int64_t catch_up_to) {
  std::lock_guard lock(mutex_);
  Partition& p = partitions_[partition];
  if (p.owned) return;  // the owner's figures stand
  p.standby = standby;
  p.catch_up_to = standby ? catch_up_to : -1;
}

bool RunnerProgress::Standby(int32_t partition) const {
  std::lock_guard lock(mutex_);
  auto it = partitions_.find(partition);
  return it != partitions_.end() && it->second.standby;
}

bool RunnerProgress::Owned(int32_t partition) const {
  std::lock_guard lock(mutex_);
  auto it = partitions_.find(partition);
  return it != partitions_.end() && it->second.owned;
}

bool RunnerProgress::CatchingUp(int32_t partition) const {
  std::lock_guard lock(mutex_);
  auto it = partitions_.find(partition);
  return it != partitions_.end() && (it->second.owned || it->second.standby) &&
         it->second.applied < it->second.catch_up_to;
}

void RunnerProgress::MarkJoined() {
  std::lock_guard lock(mutex_);
  joined_ = true;
}

bool RunnerProgress::joined() const {
  std::lock_guard lock(mutex_);
  return joined_;
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
  for (const auto& [partition, p] : partitions_) {
    if (p.owned) lag += std::max<int64_t>(p.end - p.applied, 0);
  }
  return lag;
}

bool RunnerProgress::WaitApplied(int32_t partition, int64_t offset, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    auto it = partitions_.find(partition);
    return it != partitions_.end() && it->second.applied > offset;
  });
}

}  // namespace rapport::consumers
