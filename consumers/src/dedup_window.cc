#include "dedup_window.h"

#include <algorithm>

namespace rapport::consumers {

EventIdBytes IdBytes(std::string_view uuid) {
  EventIdBytes bytes{};
  size_t n = 0;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < uuid.size() && n < bytes.size();) {
    if (uuid[i] == '-') {
      ++i;
      continue;
    }
    bytes[n++] = static_cast<char>(nibble(uuid[i]) << 4 | nibble(uuid[i + 1]));
    i += 2;
  }
  return bytes;
}

bool DedupWindow::AddStoredChunk(uint64_t first, std::string_view ids) {
  if (ids.empty() || ids.size() % 16 != 0) return false;
  for (size_t at = 0; at < ids.size(); at += 16) {
    EventIdBytes id;
    std::copy_n(ids.data() + at, 16, id.begin());
    ids_.insert(id);
    order_.push_back(id);
  }
  chunks_.emplace_back(first, ids.size() / 16);
  next_seq_ = first + ids.size() / 16;
  batch_first_ = next_seq_;
  return true;
}

void DedupWindow::Trim(const std::function<void(uint64_t first)>& forget) {
  Evict();
  ForgetLeftChunks(forget);
}

bool DedupWindow::Remember(const EventIdBytes& id) {
  if (ids_.contains(id)) return false;
  next_seq_++;
  ids_.insert(id);
  order_.push_back(id);
  batch_ids_.append(id.data(), id.size());
  Evict();
  return true;
}

void DedupWindow::EndBatch(const std::function<void(uint64_t first, std::string ids)>& store,
                           const std::function<void(uint64_t first)>& forget) {
  if (batch_ids_.empty()) return;
  chunks_.emplace_back(batch_first_, next_seq_ - batch_first_);
  store(batch_first_, std::move(batch_ids_));
  batch_ids_.clear();
  batch_first_ = next_seq_;
  ForgetLeftChunks(forget);
}

void DedupWindow::Evict() {
  while (order_.size() > capacity_) {
    ids_.erase(order_.front());
    order_.pop_front();
  }
}

void DedupWindow::ForgetLeftChunks(const std::function<void(uint64_t first)>& forget) {
  const uint64_t oldest_kept = next_seq_ - order_.size();
  while (!chunks_.empty() && chunks_.front().first + chunks_.front().second <= oldest_kept) {
    forget(chunks_.front().first);
    chunks_.pop_front();
  }
}

}  // namespace rapport::consumers
