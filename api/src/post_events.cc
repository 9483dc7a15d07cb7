// POST /v1/events: a body of one event or an array of them, each admitted
// (parsed, validated, given an id) and published; the answer lists each
// event's position, or why it was refused.
#include "service_impl.h"

namespace rapport::api {
namespace {

// The text of each event in a POST body: one object, or an array of them.
std::optional<HttpResponse> SplitEvents(const std::string& body, size_t max_events, std::vector<std::string>& out,
                                        bool& batch) {
  // nlohmann's parser recurses per level: a body of 200,000 '[' would
  // overflow the stack, so depth is checked first, without recursion.
  if (auto too_deep = events::CheckJsonNesting(body)) {
    return ErrorResponse(400, "malformed_json", fmt::format("the body is {}", too_deep->reason));
  }
  Json parsed;
  try {
    parsed = Json::parse(body);
  } catch (const Json::parse_error& e) {
    return ErrorResponse(400, "malformed_json",
                         fmt::format("the body is not JSON (at byte {}): {}", e.byte,
                                     std::string_view(e.what()).substr(std::string_view(e.what()).find(": ") + 2)));
  }
  batch = parsed.is_array();
  if (parsed.is_object()) {
    out.push_back(body);
    return std::nullopt;
  }
  if (!batch) return ErrorResponse(400, "invalid_body", "the body must be one event (an object) or an array of events");
  if (parsed.empty()) return ErrorResponse(400, "invalid_body", "the array holds no events");
  if (parsed.size() > max_events) {
    return ErrorResponse(413, "payload_too_large",
                         fmt::format("the array holds {} events; a batch holds at most {}", parsed.size(), max_events));
  }
  for (const auto& element : parsed) out.push_back(element.dump(-1, ' ', false, Json::error_handler_t::replace));
  return std::nullopt;
}

}  // namespace

HttpResponse ApiService::Impl::PostEvents(const HttpRequest& request) {
  std::string type = request.Header("content-type");
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (type != "application/json") {
    return ErrorResponse(415, "unsupported_media_type",
                         fmt::format("Content-Type is \"{}\"; send application/json", request.Header("content-type")));
  }
  if (ingest == nullptr) return ErrorResponse(503, "unavailable", "this server does not accept events");
  std::string idempotency_key;
  if (auto header = request.headers.find("idempotency-key"); header != request.headers.end()) {
    auto key = ParseIdempotencyKey(header->second);
    if (!key.ok()) {
      return ErrorResponse(400, "invalid_argument", std::string(key.status().message()), "Idempotency-Key");
    }
    idempotency_key = *std::move(key);
  }
  std::vector<std::string> texts;
  bool batch = false;
  if (auto bad = SplitEvents(request.body, options.max_batch_events, texts, batch)) return *bad;
  std::vector<IngestOutcome> outcomes = ingest->Publish(texts, idempotency_key);

  auto item = [](const IngestOutcome& o) {
    Json out = Json::object();
    switch (o.state) {
      case IngestOutcome::State::kAccepted:
        out["status"] = "accepted";
        out["event_id"] = o.event_id;
        out["partition"] = o.partition;
        out["offset"] = o.offset;
        out["position"] = fmt::format("{}:{}", o.partition, o.offset);
        break;
      case IngestOutcome::State::kRejected: {
        out["status"] = "rejected";
        Json violations = Json::array();
        for (const auto& v : o.violations) violations.push_back({{"field", v.field}, {"message", v.reason}});
        Json error = {{"code", "invalid_event"}, {"message", o.violations.front().ToString()}};
        if (!o.violations.front().field.empty()) error["field"] = o.violations.front().field;
        error["violations"] = violations;
        out["error"] = error;
        break;
      }
      case IngestOutcome::State::kUndelivered:
        out["status"] = "undelivered";
        out["error"] = {{"code", "broker_unavailable"}, {"message", o.error}};
        break;
    }
    return out;
  };
  size_t accepted = 0, rejected = 0, undelivered = 0;
  for (const auto& o : outcomes) {
    accepted += o.state == IngestOutcome::State::kAccepted;
    rejected += o.state == IngestOutcome::State::kRejected;
    undelivered += o.state == IngestOutcome::State::kUndelivered;
  }
  auto status = [&] { return accepted > 0 ? 202 : undelivered > 0 ? 503 : 400; };
  if (!batch) {
    Json one = item(outcomes.front());
    if (outcomes.front().state != IngestOutcome::State::kAccepted) {
      return JsonResponse(status(), Json{{"error", one["error"]}}.dump());
    }
    one.erase("status");
    return JsonResponse(202, one.dump());
  }
  Json results = Json::array();
  std::map<int32_t, int64_t> highest;  // per partition: the token that covers the whole batch
  for (const auto& o : outcomes) {
    results.push_back(item(o));
    if (o.state == IngestOutcome::State::kAccepted) highest[o.partition] = std::max(highest[o.partition], o.offset);
  }
  std::string after;
  for (const auto& [p, offset] : highest) after += fmt::format("{}{}:{}", after.empty() ? "" : ",", p, offset);
  Json body = {{"accepted", accepted},
               {"rejected", rejected},
               {"undelivered", undelivered},
               {"after", after.empty() ? Json(nullptr) : Json(after)},
               {"results", results}};
  return JsonResponse(status(), body.dump());
}

}  // namespace rapport::api
