// A JSON line as `rapport publish` and POST /v1/events admit it: nesting
// check, proto3 JSON parse, ids and recorded_at, validation, encoding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "rapport/events/admission.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static rapport::events::EventAdmission admission;
  auto admitted = admission.AdmitJson(std::string_view(reinterpret_cast<const char*>(data), size),
                                      absl::FromUnixSeconds(1795348800));
  for (const auto& violation : admitted.violations) (void)violation.ToString();
  return 0;
}
