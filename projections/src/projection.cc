#include "rapport/projections/projection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "rapport/projections/keys.h"

namespace rapport::projections {

namespace {
// What a cached entry costs beyond its key and value (the hash slot, the
// optional, the strings' headers), roughly.
constexpr int64_t kEntryOverhead = 80;
}  // namespace

StateCache::StateCache(int32_t partitions, std::shared_ptr<std::atomic<int64_t>> budget_left)
    : parts_(static_cast<size_t>(std::max(partitions, 0))), budget_left_(std::move(budget_left)) {}

StateCache::~StateCache() { Clear(); }

const StateCache::Part* StateCache::PartOf(std::string_view key) const {
  if (key.size() < 4) return nullptr;
  uint32_t partition = ReadU32(key);
  return partition < parts_.size() ? &parts_[partition] : nullptr;
}
StateCache::Part* StateCache::PartOf(std::string_view key) {
  return const_cast<Part*>(static_cast<const StateCache*>(this)->PartOf(key));
}

const std::optional<std::string>* StateCache::Find(std::string_view key) const {
  const Part* part = PartOf(key);
  if (part == nullptr) return nullptr;
  auto it = part->values.find(absl::string_view(key.data(), key.size()));
  return it == part->values.end() ? nullptr : &it->second;
}

void StateCache::Store(std::string_view key, std::optional<std::string> value) {
  Part* part = PartOf(key);
  if (part == nullptr) return;
  const int64_t size = static_cast<int64_t>(key.size() + (value ? value->size() : 0)) + kEntryOverhead;
  auto it = part->values.find(absl::string_view(key.data(), key.size()));
  int64_t change = size;
  if (it != part->values.end()) {
    change -= static_cast<int64_t>(it->first.size() + (it->second ? it->second->size() : 0)) + kEntryOverhead;
  } else if (budget_left_->load(std::memory_order_relaxed) < size) {
    budget_left_->fetch_add(part->bytes, std::memory_order_relaxed);
    part->values.clear();
    part->bytes = 0;
    if (budget_left_->load(std::memory_order_relaxed) < size) return;  // the other parts hold the budget
  }
  part->bytes += change;
  budget_left_->fetch_sub(change, std::memory_order_relaxed);
  if (it != part->values.end()) {
    it->second = std::move(value);
  } else {
    part->values.emplace(std::string(key), std::move(value));
  }
}

void StateCache::Clear() {
  for (Part& part : parts_) {
    budget_left_->fetch_add(part.bytes, std::memory_order_relaxed);
    part.values.clear();
    part.bytes = 0;
  }
}

Result<const std::string*> StateBatch::Find(std::string_view key) {
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    Entry entry;
    if (const std::optional<std::string>* cached = shared_ ? shared_->Find(key) : nullptr) {
      entry.value = *cached;
    } else {
      auto value = store_.Get(family_, key);
      if (value.ok()) {
        entry.value = std::move(value).value();
      } else if (value.status().code() != absl::StatusCode::kNotFound) {
        return value.status();
      }
      if (shared_) shared_->Store(key, entry.value);
    }
    it = cache_.emplace(std::string(key), std::move(entry)).first;
  }
  return it->second.value ? &*it->second.value : nullptr;
}

void StateBatch::Put(std::string key, std::string value) {
  Entry& entry = cache_[std::move(key)];
  entry.value = std::move(value);
  entry.dirty = true;
}

void StateBatch::Delete(std::string key) {
  Entry& entry = cache_[std::move(key)];
  entry.value.reset();
  entry.dirty = true;
}

void StateBatch::CommitTo(rocksdb::WriteBatch& batch) {
  for (auto& [key, entry] : cache_) {
    if (!entry.dirty) continue;
    if (entry.value) {
      batch.Put(family_, key, *entry.value).PermitUncheckedError();
    } else {
      batch.Delete(family_, key).PermitUncheckedError();
    }
    if (shared_) shared_->Store(key, std::move(entry.value));
  }
  cache_.clear();
}

std::string Projection::Family() const { return absl::StrCat(std::string(Name()), "@v", Version()); }

Status Projection::Apply(const v1::Envelope& event, const LogPosition& position, StateBatch& state,
                         std::vector<OutboxRecord>& outbox) {
  if (!Reads(event.payload_case())) return absl::OkStatus();
  return DoApply(event, position, state, outbox);
}

}  // namespace rapport::projections
