#include "rapport/events/uuid.h"

#include <array>

namespace rapport::events {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

UuidV7Generator::UuidV7Generator() : random_(std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32)) {}

UuidV7Generator::UuidV7Generator(uint64_t seed) : random_(seed) {}

std::string UuidV7Generator::Next(absl::Time now) {
  int64_t millis = absl::ToUnixMillis(now);
  if (millis <= last_millis_) {
    // Same (or an earlier, after a clock step back) millisecond: keep ids
    // increasing by counting within the last one; borrow the next one when the
    // 12-bit counter runs out.
    millis = last_millis_;
    if (++counter_ > 0xfff) {
      ++millis;
      counter_ = 0;
    }
  } else {
    counter_ = 0;
  }
  last_millis_ = millis;

  std::array<uint8_t, 16> bytes{};
  for (int i = 0; i < 6; ++i) bytes[i] = static_cast<uint8_t>(millis >> (8 * (5 - i)));
  bytes[6] = static_cast<uint8_t>(0x70 | (counter_ >> 8));
  bytes[7] = static_cast<uint8_t>(counter_ & 0xff);
  uint64_t random = random_();
  for (int i = 8; i < 16; ++i) bytes[i] = static_cast<uint8_t>(random >> (8 * (i - 8)));
  bytes[8] = static_cast<uint8_t>(0x80 | (bytes[8] & 0x3f));  // RFC 9562 variant

  std::string text;
  text.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text.push_back('-');
    text.push_back(kHex[bytes[i] >> 4]);
    text.push_back(kHex[bytes[i] & 0xf]);
  }
  return text;
}

bool IsWellFormedUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : HexValue(text[i]) < 0) return false;
  }
  int version = HexValue(text[14]);
  int variant = HexValue(text[19]);
  return version >= 1 && version <= 8 && (variant & 0xc) == 0x8;
}

int UuidVersion(std::string_view text) { return HexValue(text[14]); }

}  // namespace rapport::events
