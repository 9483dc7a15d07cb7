#include "rapport/projections/projection.h"

#include "absl/strings/str_cat.h"

namespace rapport::projections {

Result<const std::string*> StateBatch::Find(std::string_view key) {
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    Entry entry;
    auto value = store_.Get(family_, key);
    if (value.ok()) {
      entry.value = std::move(value).value();
    } else if (value.status().code() != absl::StatusCode::kNotFound) {
      return value.status();
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
