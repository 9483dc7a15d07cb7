#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace rapport::events {

// Generates UUIDv7 event ids (RFC 9562): 48 bits of Unix milliseconds, then a
// 12-bit counter that keeps ids from one generator strictly increasing within
// a millisecond, then 62 random bits. Not thread-safe: one per thread.
class UuidV7Generator {
 public:
  UuidV7Generator();                        // seeded from the operating system's entropy source
  explicit UuidV7Generator(uint64_t seed);  // reproducible ids, for tests

  // A new id for an event accepted at `now`, in canonical lower-case form.
  std::string Next(absl::Time now);

 private:
  std::mt19937_64 random_;
  int64_t last_millis_ = -1;
  uint16_t counter_ = 0;
};

// True for a UUID in canonical text form (8-4-4-4-12 hex digits, either case)
// with the RFC 9562 variant and a version from 1 to 8.
bool IsWellFormedUuid(std::string_view text);

// The version nibble of a well-formed UUID.
int UuidVersion(std::string_view text);

}  // namespace rapport::events
