#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rapport/events/violation.h"
#include "rapport/v1/envelope.pb.h"

namespace rapport::events {

// How deeply JSON from outside may nest objects and arrays. A valid event
// nests about six levels; the parsers behind ParseEventJson and the HTTP API
// recurse per level, so a deep body would overflow the stack.
inline constexpr int kMaxJsonNesting = 64;

// Checks, without recursion and before any parser sees `json`, that objects
// and arrays nest at most `max_depth` levels; nullopt when they do, else a
// violation naming the byte where the limit was passed. Strings (with their
// escapes) are skipped, so brackets inside them do not count.
std::optional<Violation> CheckJsonNesting(std::string_view json, int max_depth = kMaxJsonNesting);

// Parses one event written in the proto3 JSON mapping of rapport.v1.Envelope.
// Field names may be snake_case (as printed by rapport) or lowerCamelCase.
// Returns nullopt on success, else what is wrong and where, e.g.
//   {"purchase_completed.total.amount", "expected a string, got 12"}.
// Only the shape is checked here; Validate() checks the values. JSON nested
// deeper than kMaxJsonNesting is rejected before it is parsed.
std::optional<Violation> ParseEventJson(std::string_view json, v1::Envelope& event);

// One line of proto3 JSON with snake_case field names, the format
// `rapport publish` reads.
std::string EventToJson(const v1::Envelope& event);

// The Kafka record value: the envelope in protobuf binary, serialized
// deterministically (map entries in key order), so the same event always
// gives the same bytes.
std::string EncodeEvent(const v1::Envelope& event);

enum class JsonStyle { kOneLine, kIndented };

// Any message in protobuf binary, serialized deterministically.
std::string EncodeDeterministic(const google::protobuf::Message& message);

// Any message in the proto3 JSON mapping with proto field names and map
// entries in key order: the same message always prints the same text.
std::string ToJsonDeterministic(const google::protobuf::Message& message, JsonStyle style = JsonStyle::kOneLine);

// Parses a Kafka record value; nullopt on success, else why it is not an envelope.
std::optional<Violation> DecodeEvent(std::string_view bytes, v1::Envelope& event);

}  // namespace rapport::events
