#include "rapport/projections/keys.h"

namespace rapport::projections {

void AppendU32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
}

void AppendU64(std::string& out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
}

uint32_t ReadU32(std::string_view bytes) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = value << 8 | static_cast<uint8_t>(bytes[i]);
  return value;
}

uint64_t ReadU64(std::string_view bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = value << 8 | static_cast<uint8_t>(bytes[i]);
  return value;
}

std::string PartitionKey(int32_t partition, char kind, std::string_view rest) {
  std::string key;
  key.reserve(5 + rest.size());
  AppendU32(key, static_cast<uint32_t>(partition));
  key.push_back(kind);
  key.append(rest);
  return key;
}

}  // namespace rapport::projections
