#include "rapport/events/codec.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/type_resolver_util.h"
#include "rapport/events/event_type.h"

namespace rapport::events {
namespace {

namespace pb = google::protobuf;

// protobuf names an unknown field without saying whether it sits at the top
// level, where an unknown object is most likely a misspelt or newer event type.
Violation UnknownFieldViolation(std::string_view json, const std::string& parent, const std::string& name) {
  if (!parent.empty()) return {absl::StrCat(parent, ".", name), "unknown field"};
  pb::Struct object;
  bool is_object = pb::util::JsonStringToMessage(std::string(json), &object).ok() && object.fields().contains(name) &&
                   object.fields().at(name).has_struct_value();
  if (is_object) {
    return {"",
            absl::StrCat("unknown event type \"", name, "\"; expected one of ", absl::StrJoin(EventTypeNames(), ", "))};
  }
  return {name, "unknown field"};
}

std::string EnumValues(const pb::EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() != 0) names.push_back(type->value(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

// protobuf says "(path): invalid value V for type T"; say what was expected.
Violation InvalidValueViolation(const std::string& path, const std::string& value, const std::string& type) {
  static const std::regex kWrapped("Field '[^']*', (.*)");
  std::smatch wrapped;
  std::string shown = value;
  if (std::regex_match(value, wrapped, kWrapped)) shown = wrapped[1];

  constexpr std::string_view kTypeUrl = "type.googleapis.com/";
  if (type.rfind(kTypeUrl, 0) == 0) {
    std::string full_name = type.substr(kTypeUrl.size());
    if (full_name == "google.protobuf.Timestamp") {
      return {path, absl::StrCat("expected an RFC 3339 timestamp such as \"2026-11-22T09:30:00Z\" (", shown, ")")};
    }
    if (full_name == "google.protobuf.Duration") {
      return {path, absl::StrCat("expected a duration in seconds such as \"90s\" or \"1.5s\" (", shown, ")")};
    }
    if (const auto* e = pb::DescriptorPool::generated_pool()->FindEnumTypeByName(full_name)) {
      return {path, absl::StrCat("unknown value ", value, "; expected one of ", EnumValues(e))};
    }
    return {path, absl::StrCat("expected a JSON object, got ", value)};
  }
  if (type == "TYPE_STRING" || type == "TYPE_BYTES") return {path, "expected a string, got " + value};
  if (type == "TYPE_BOOL") return {path, "expected true or false, got " + value};
  if (type.find("INT") != std::string::npos || type.find("FIXED") != std::string::npos) {
    return {path, "expected an integer, got " + value};
  }
  if (type == "TYPE_DOUBLE" || type == "TYPE_FLOAT") return {path, "expected a number, got " + value};
  if (type == "oneof") {
    return {"", "more than one event type in one event; an event carries exactly one payload"};
  }
  return {path, absl::StrCat("invalid value ", value, " for ", type)};
}

Violation TranslateParseError(std::string_view json, const pb::util::Status& status) {
  std::string message(status.message().data(), status.message().size());
  static const std::regex kInvalidValue(R"(^\(([^)]*)\): invalid value ([\s\S]*) for type (\S+)$)");
  static const std::regex kOneof(
      R"(^: invalid value oneof field '([^']*)' is already set\. Cannot set '([^']*)' for type oneof$)");
  static const std::regex kUnknownField(R"(^(?:\(([^)]*)\) )?([^:\s]+): Cannot find field\.$)");
  std::smatch m;
  if (std::regex_match(message, m, kOneof)) {
    return {"", absl::StrCat("more than one event type (a second one, \"", m[2].str(),
                             "\"); an event carries exactly one")};
  }
  if (std::regex_match(message, m, kInvalidValue)) {
    return InvalidValueViolation(m[1], m[2], m[3]);
  }
  if (std::regex_match(message, m, kUnknownField)) return UnknownFieldViolation(json, m[1], m[2]);
  if (message.find("Root element must be a message") != std::string::npos) {
    return {"", "expected a JSON object (one event per line)"};
  }
  // A syntax error: protobuf adds a blank line and a caret; keep the sentence.
  std::string first_line = message.substr(0, message.find('\n'));
  return {"", absl::StrCat("invalid JSON: ", first_line)};
}

}  // namespace

std::optional<Violation> CheckJsonNesting(std::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        return Violation{"", absl::StrCat("JSON nested more than ", max_depth, " levels deep (at byte ", i,
                                          "); an event nests a few levels")};
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

std::optional<Violation> ParseEventJson(std::string_view json, v1::Envelope& event) {
  event.Clear();
  if (auto too_deep = CheckJsonNesting(json)) return too_deep;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  pb::util::Status status = pb::util::JsonStringToMessage(std::string(json), &event, options);
  if (status.ok()) return std::nullopt;
  event.Clear();
  return TranslateParseError(json, status);
}

std::string EncodeDeterministic(const pb::Message& message) {
  std::string bytes;
  bytes.reserve(message.ByteSizeLong());
  {
    pb::io::StringOutputStream stream(&bytes);
    pb::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeWithCachedSizes(&coded);
  }
  return bytes;
}

std::string ToJsonDeterministic(const pb::Message& message, JsonStyle style) {
  // protobuf prints map entries in hash order, which differs from run to run;
  // printing from the deterministic encoding puts them in key order.
  static const std::unique_ptr<pb::util::TypeResolver> resolver(
      pb::util::NewTypeResolverForDescriptorPool("type.googleapis.com", pb::DescriptorPool::generated_pool()));
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = style == JsonStyle::kIndented;
  std::string json;
  // Printing a valid in-memory message cannot fail.
  (void)pb::util::BinaryToJsonString(resolver.get(), "type.googleapis.com/" + message.GetDescriptor()->full_name(),
                                     EncodeDeterministic(message), &json, options);
  return json;
}

std::string EventToJson(const v1::Envelope& event) { return ToJsonDeterministic(event); }

std::string EncodeEvent(const v1::Envelope& event) { return EncodeDeterministic(event); }

std::optional<Violation> DecodeEvent(std::string_view bytes, v1::Envelope& event) {
  if (!event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    event.Clear();
    return Violation{
        "", absl::StrCat("not a rapport.v1.Envelope in protobuf binary (", bytes.size(), " bytes that do not parse)")};
  }
  return std::nullopt;
}

}  // namespace rapport::events
