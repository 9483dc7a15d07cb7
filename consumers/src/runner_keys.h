#pragma once

// The keys of the runner family (ProjectionRunner::kFamily): the runner's own
// state, kept in the store beside the projections so that both move in one
// atomic write. Written once here; the runner's parts and the tests that
// write a store as an earlier version left it use them.

#include <cstdint>
#include <string>

#include "rapport/projections/keys.h"

namespace rapport::consumers {
namespace runner_keys {

// Keys of the runner family. The live lane's have no prefix; the rebuild
// lane's start with "b" (kRebuildPrefix), so that one range delete ends a
// rebuild.
// Every offset key of one lane and topic starts with this (the NUL keeps a
// topic whose name extends another's apart).
inline std::string OffsetPrefix(const std::string& prefix, const std::string& topic) {
  std::string key = prefix + "o" + topic;
  key.push_back('\0');
  return key;
}
inline std::string OffsetKey(const std::string& prefix, const std::string& topic, int32_t partition) {
  std::string key = OffsetPrefix(prefix, topic);
  projections::AppendU32(key, static_cast<uint32_t>(partition));
  return key;
}
inline std::string DedupKey(const std::string& prefix, int32_t partition, char kind) {
  std::string key = prefix + "d";
  projections::AppendU32(key, static_cast<uint32_t>(partition));
  key.push_back(kind);
  return key;
}
inline std::string OutboxKey(uint64_t seq) {
  std::string key = "x";
  projections::AppendU64(key, seq);
  return key;
}
inline std::string U64(uint64_t value) {
  std::string out;
  projections::AppendU64(out, value);
  return out;
}
inline std::string ParkedKey(uint64_t seq) {
  std::string key = "p";
  projections::AppendU64(key, seq);
  return key;
}
inline const std::string kOutboxNextKey = "n";
inline const std::string kStoreIdKey = "s";
inline std::string PartitionCountKey(const std::string& topic) { return "c" + topic; }

inline const std::string kRebuildPrefix = "b";
inline const std::string kRebuildEnd = "c";  // just past every "b" key
// The families being built, comma-separated: a different set starts over.
inline const std::string kRebuildFamiliesKey = "bf";

}  // namespace runner_keys

}  // namespace rapport::consumers
