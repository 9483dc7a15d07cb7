#include "rapport/events/event_type.h"

#include "google/protobuf/descriptor.h"

namespace rapport::events {
namespace {

const google::protobuf::FieldDescriptor* PayloadField(const v1::Envelope& event) {
  if (event.payload_case() == v1::Envelope::PAYLOAD_NOT_SET) return nullptr;
  return v1::Envelope::descriptor()->FindFieldByNumber(event.payload_case());
}

}  // namespace

std::string_view EventTypeName(const v1::Envelope& event) {
  const auto* field = PayloadField(event);
  return field == nullptr ? std::string_view() : std::string_view(field->name());
}

std::string_view CloudEventType(const v1::Envelope& event) {
  const auto* field = PayloadField(event);
  return field == nullptr ? std::string_view() : std::string_view(field->message_type()->full_name());
}

const std::vector<std::string>& EventTypeNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> result;
    const auto* oneof = v1::Envelope::descriptor()->FindOneofByName("payload");
    for (int i = 0; i < oneof->field_count(); ++i) result.push_back(oneof->field(i)->name());
    return result;
  }();
  return names;
}

}  // namespace rapport::events
