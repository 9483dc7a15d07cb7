#include "rapport/api/service.h"

#include "rapport/kafka/partitioner.h"
#include "service_impl.h"

namespace rapport::api {
namespace {

// Splits a route pattern "/a/{b}/c" into {"a","{b}","c"}. (Requests arrive
// split already: HttpRequest::segments.)
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') return out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse StatusResponse(const Status& status) {
  std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrorResponse(404, "not_found", message);
    case absl::StatusCode::kInvalidArgument: {
      size_t colon = message.find(": ");
      std::string field = colon != std::string::npos && message.find(' ') > colon ? message.substr(0, colon) : "";
      return ErrorResponse(400, "invalid_argument", message, field);
    }
    case absl::StatusCode::kUnavailable:
      return ErrorResponse(503, "unavailable", message);
    default:
      return ErrorResponse(500, "internal", message);
  }
}

std::string CursorJson(const std::string& cursor) { return cursor.empty() ? "null" : nlohmann::json(cursor).dump(); }

std::optional<HttpResponse> ParseLimit(const HttpRequest& request, size_t& limit, size_t fallback) {
  limit = fallback;
  const std::string* text = request.Param("limit");
  if (text == nullptr) return std::nullopt;
  size_t value = 0;
  auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (error != std::errc() || end != text->data() + text->size() || value < 1 || value > kMaxPageSize) {
    return ErrorResponse(400, "invalid_argument",
                         fmt::format("limit: \"{}\" is not a whole number from 1 to {}", *text, kMaxPageSize), "limit");
  }
  limit = value;
  return std::nullopt;
}

std::optional<HttpResponse> ParseAsOf(const HttpRequest& request, absl::Time& as_of) {
  as_of = absl::Now();
  const std::string* text = request.Param("as_of");
  if (text == nullptr) return std::nullopt;
  auto parsed = events::ParseDateOrTime(*text);
  if (!parsed) {
    return ErrorResponse(400, "invalid_argument",
                         fmt::format("as_of: \"{}\" is not a date such as 2026-01-31 or an RFC 3339 time such as "
                                     "2026-01-31T09:30:00Z",
                                     *text),
                         "as_of");
  }
  as_of = *parsed;
  return std::nullopt;
}

void ApiService::Impl::Add(std::string method, std::string pattern, std::optional<Scope> scope, Cost cost,
                           RouteHandler handle) {
  Route route{std::move(method), std::move(pattern), scope, cost == kQuick, std::move(handle), {}};
  for (auto s : Segments(route.pattern)) route.segments.emplace_back(s);
  AddMeters(route.pattern);
  routes.push_back(std::move(route));
}

void ApiService::Impl::AddRoutes() {
  AddOperationsRoutes();
  AddCustomerRoutes();
  AddTargetingRoute();
  AddSubjectRoutes();
  AddPopulationRoutes();
  AddClusterRoutes();
  Add("POST", "/v1/events", Scope::kIngest, kSlow,
      [this](const HttpRequest& request, const Params&) { return PostEvents(request); });
}

// Health, readiness, the API's description, metrics.
void ApiService::Impl::AddOperationsRoutes() {
  Add("GET", "/healthz", std::nullopt, kQuick,
      [](const HttpRequest&, const Params&) { return JsonResponse(200, R"({"status":"ok"})"); });
  Add("GET", "/readyz", std::nullopt, kQuick, [this](const HttpRequest&, const Params&) {
    // A store nobody applies to (run --read-only) is as ready as it will be.
    // Before the group's first assignment nothing is owned here yet.
    const bool started = progress != nullptr && progress->started() && progress->joined();
    const int64_t lag = started ? progress->TotalLag() : -1;
    // With several instances: ready when every partition is answered for,
    // here or by the instance that applies it.
    const std::vector<int32_t> without_owner = PartitionsWithoutOwner();
    const bool ready = progress == nullptr || (started && lag <= options.ready_max_lag && without_owner.empty());
    Json body = {{"ready", ready},
                 {"lag_records", started ? Json(lag) : Json(nullptr)},
                 {"max_lag_records", options.ready_max_lag}};
    if (Clustered()) body["partitions_without_owner"] = without_owner;
    return JsonResponse(ready ? 200 : 503, body.dump());
  });
  Add("GET", "/openapi.json", std::nullopt, kQuick,
      [this](const HttpRequest&, const Params&) { return JsonResponse(200, options.openapi_json); });
  Add("GET", "/metrics", Scope::kAdmin, kSlow, [this](const HttpRequest&, const Params&) {
    HttpResponse response = JsonResponse(200, metrics.Render());
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return response;
  });
}

ApiService::ApiService(ServiceOptions options, projections::ProjectionStore& store,
                       const consumers::RunnerProgress* progress, api::Ingest* ingest, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), store, progress, ingest, metrics)) {
  impl_->AddRoutes();
  impl_->AddMeters("unmatched");
  metrics.AddCollector([&store, &metrics] {
    const projections::ProjectionStore::Sizes sizes = store.sizes();
    metrics.gauge("rapport_store_live_sst_bytes", "Bytes of live SST files in the projection store.")
        .Set(static_cast<double>(sizes.live_sst_bytes));
    metrics.gauge("rapport_store_memtable_bytes", "Bytes in the projection store's memtables.")
        .Set(static_cast<double>(sizes.memtable_bytes));
  });
}

ApiService::~ApiService() = default;

bool ApiService::Quick(const HttpRequest& request) const {
  if (request.Param("after") != nullptr) return false;  // may wait
  std::vector<std::string> allowed;
  Params params;
  const auto* route = impl_->Match(request, params, allowed);
  if (route == nullptr || !route->quick) return false;
  // A read gathered from other instances waits on the network: not on an I/O thread.
  if (impl_->Clustered() && route->pattern.starts_with("/v1/subjects/")) return false;
  // A read another instance answers waits on the network: not on an I/O thread.
  if (impl_->Clustered() && route->pattern.starts_with("/v1/customers/")) {
    auto id = params.find("id");
    auto count = impl_->PartitionCount();
    return id != params.end() && count.ok() && impl_->OwnedHere(kafka::PartitionForKey(id->second, *count));
  }
  return true;
}

const ApiService::Impl::Route* ApiService::Impl::Match(const HttpRequest& request, Params& params,
                                                       std::vector<std::string>& allowed) const {
  const auto& segments = request.segments;
  for (const auto& route : routes) {
    if (route.segments.size() != segments.size()) continue;
    Params captured;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const std::string& want = route.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        match = !segments[i].empty();
        captured[want.substr(1, want.size() - 2)] = segments[i];
      } else {
        match = want == segments[i];
      }
    }
    if (!match) continue;
    if (route.method != request.method && !(route.method == "GET" && request.method == "HEAD")) {
      allowed.push_back(route.method);
      continue;
    }
    params = std::move(captured);
    return &route;
  }
  return nullptr;
}

HttpResponse ApiService::Handle(const HttpRequest& request) {
  Impl& s = *impl_;
  const auto started = Clock::now();
  std::vector<std::string> allowed;
  Params params;
  const Impl::Route* matched = s.Match(request, params, allowed);
  HttpResponse response;
  if (matched == nullptr && !allowed.empty()) {
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    response = ErrorResponse(405, "method_not_allowed",
                             fmt::format("{} {}: allowed: {}", request.method, request.path, allow));
    response.headers.emplace_back("Allow", allow);
  } else if (matched == nullptr) {
    response = ErrorResponse(404, "not_found", fmt::format("no route {} (GET /openapi.json lists them)", request.path));
  } else if (matched->scope) {
    // The routes only instances ask each other also admit another
    // instance's own token (its background work has no caller's key).
    const bool from_an_instance = matched->pattern.starts_with("/v1/internal/") && s.SentByAnInstance(request);
    AuthDecision decision = from_an_instance ? AuthDecision{.allowed = true, .key_name = "", .denial = {}}
                                             : s.auth.Check(request, *matched->scope);
    response = decision.allowed ? matched->handle(request, params) : decision.denial;
  } else {
    response = matched->handle(request, params);
  }
  if (request.method == "HEAD") response.body.clear();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  s.Count(matched ? matched->pattern : "unmatched", response.status, seconds);
  if (response.status == 500) {
    s.log->error("{} {} -> {}: {}", request.method, request.path, response.status, response.body);
  } else {
    s.log->debug("{} {} -> {}", request.method, request.path, response.status);
  }
  return response;
}

}  // namespace rapport::api
