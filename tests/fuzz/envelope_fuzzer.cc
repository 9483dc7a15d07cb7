// A Kafka record value as the runner reads it: decode the envelope, validate
// it against its own recorded_at, and fold it into every projection.
#include <cstddef>
#include <cstdint>

#include "fuzz_store.h"
#include "rapport/events/codec.h"
#include "rapport/events/validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static rapport::fuzz::FuzzStore* fuzz = new rapport::fuzz::FuzzStore();
  rapport::v1::Envelope event;
  if (rapport::events::DecodeEvent(std::string_view(reinterpret_cast<const char*>(data), size), event)) return 0;
  const absl::Time recorded = event.has_recorded_at() ? absl::FromUnixSeconds(event.recorded_at().seconds())
                                                      : absl::FromUnixSeconds(1795348800);
  if (!rapport::events::Validate(event, {.reference_time = recorded}).empty()) return 0;
  fuzz->Apply(event);
  return 0;
}
