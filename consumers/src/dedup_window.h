#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_set.h"

namespace rapport::consumers {

// An event id (a validated UUID, either case) as its 16 bytes.
using EventIdBytes = std::array<char, 16>;
EventIdBytes IdBytes(std::string_view uuid);

// The de-duplication window of one partition: the ids of its last
// `capacity` events, in the order they came, so that the oldest leaves
// first. Stored as chunks, one per batch that applied events of the
// partition: the first id's sequence number and the ids (16 bytes each) in
// order. A chunk is deleted once all its ids have left the window. (One
// stored entry per batch, not two per event: memtable inserts were a quarter
// of a small batch's time.) Not thread-safe; each partition's window is
// touched by the one thread applying that partition.
class DedupWindow {
 public:
  explicit DedupWindow(size_t capacity = 0) : capacity_(capacity) {}

  // Loading: the stored chunks in sequence order. False when `ids` is not a
  // whole number of ids (a damaged store).
  bool AddStoredChunk(uint64_t first, std::string_view ids);
  // After loading: drops the oldest ids beyond the capacity (it may have
  // shrunk since they were stored) and hands `forget` the first sequence
  // number of each stored chunk none of whose ids is still in the window.
  void Trim(const std::function<void(uint64_t first)>& forget);

  // Whether `id` is new to the window; a new id is remembered, and the
  // oldest one leaves if the window is full.
  bool Remember(const EventIdBytes& id);

  // Ends a batch: the ids remembered since the last EndBatch become one
  // chunk, handed to `store` (unless there were none), and the chunks all of
  // whose ids have left are handed to `forget`.
  void EndBatch(const std::function<void(uint64_t first, std::string ids)>& store,
                const std::function<void(uint64_t first)>& forget);

  size_t size() const { return order_.size(); }
  bool contains(const EventIdBytes& id) const { return ids_.contains(id); }

 private:
  void Evict();
  void ForgetLeftChunks(const std::function<void(uint64_t first)>& forget);

  size_t capacity_;
  absl::flat_hash_set<EventIdBytes> ids_;
  std::deque<EventIdBytes> order_;
  uint64_t next_seq_ = 0;                             // of the next id remembered
  std::deque<std::pair<uint64_t, uint64_t>> chunks_;  // stored: first sequence number, ids
  uint64_t batch_first_ = 0;                          // sequence number of the batch's first id
  std::string batch_ids_;                             // remembered since the last EndBatch
};

}  // namespace rapport::consumers
