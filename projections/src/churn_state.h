#pragma once

// How the churn projection lays out its state, shared by the projection
// (churn.cc, which writes it) and its view (churn_view.cc, which reads it):
// days and weeks, the population histograms' buckets, and the keys. Every
// key starts with the customer's partition (keys.h).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "rapport/events/time_text.h"
#include "rapport/projections/keys.h"

namespace rapport::projections::churn_state {

using events::kDayMs;
inline constexpr int kRecentDays = 32;

inline int32_t Day(int64_t ms) { return static_cast<int32_t>(ms / kDayMs); }
// Calendar weeks from Monday, as pandas' weekly periods: 1970-01-01 was a Thursday.
inline int32_t Week(int32_t day) { return static_cast<int32_t>(std::floor((day + 3) / 7.0)); }

// Monetary buckets: eight per doubling, from integers only (exact everywhere).
inline int32_t MonetaryBucket(int64_t minor) {
  if (minor <= 0) return 0;
  uint64_t v = static_cast<uint64_t>(minor);
  int bits = std::bit_width(v);
  uint64_t next3 = bits > 3 ? (v >> (bits - 4)) & 7 : (v << (4 - bits)) & 7;
  return bits * 8 + static_cast<int32_t>(next3);
}
inline int32_t FrequencyBucket(int64_t purchase_days) {
  return static_cast<int32_t>(std::min<int64_t>(purchase_days, 10000));
}

inline std::string CustomerKey(int32_t p, const std::string& id) { return PartitionKey(p, 'c', id); }
inline std::string RecencyKey(int32_t p, int32_t day) {
  std::string key = PartitionKey(p, 'r');
  AppendU32(key, static_cast<uint32_t>(day));
  return key;
}
inline std::string FrequencyKey(int32_t p, int32_t bucket) {
  std::string key = PartitionKey(p, 'f');
  AppendU32(key, static_cast<uint32_t>(bucket));
  return key;
}
inline std::string MonetaryKey(int32_t p, const std::string& currency, int32_t bucket) {
  std::string key = PartitionKey(p, 'm', currency);
  AppendU32(key, static_cast<uint32_t>(bucket));
  return key;
}

}  // namespace rapport::projections::churn_state
