#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rapport::projections {

// Big-endian integers in keys, so that RocksDB's byte order is numeric order.
void AppendU32(std::string& out, uint32_t value);
void AppendU64(std::string& out, uint64_t value);
uint32_t ReadU32(std::string_view bytes);  // the first 4 bytes
uint64_t ReadU64(std::string_view bytes);  // the first 8 bytes

// State keys start with the source partition (4 bytes, big-endian), so one
// partition's state is one key range that can move to another process.
std::string PartitionKey(int32_t partition, char kind, std::string_view rest = {});

}  // namespace rapport::projections
