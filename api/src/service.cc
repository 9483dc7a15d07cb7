#include "rapport/api/service.h"

#include <atomic>
#include <charconv>
#include <functional>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/api/reads.h"
#include "rapport/base/logging.h"
#include "rapport/events/time_text.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/reviews.h"

namespace rapport::api {
namespace {

using Json = nlohmann::ordered_json;
using projections::ChurnView;
using projections::CustomerProfileView;
using Clock = std::chrono::steady_clock;
using Params = std::map<std::string, std::string>;  // path parameters by name

constexpr size_t kDefaultPageSize = 50;
constexpr events::JsonStyle kCompact = events::JsonStyle::kOneLine;
constexpr size_t kMaxPageSize = 1000;

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

// A Status from a view as an HTTP error: NotFound 404, InvalidArgument 400
// (a "field: reason" message names the field), Unavailable 503, anything
// else 500.
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

// "[a,b,...]" from each item's JSON text.
template <class T, class Render>
std::string JsonArray(const std::vector<T>& items, Render render) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += render(items[i]);
  }
  return out + "]";
}

// A page's next_cursor: the string, or null on the last page.
std::string CursorJson(const std::string& cursor) { return cursor.empty() ? "null" : nlohmann::json(cursor).dump(); }

// Query parameters, checked: an error (400) names the parameter.
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

struct ApiService::Impl {
  using RouteHandler = std::function<HttpResponse(const HttpRequest&, const Params&)>;
  struct Route {
    std::string method;
    std::string pattern;
    std::optional<Scope> scope;  // nullopt: open to all (health, the API description)
    bool quick;                  // a point read that never scans: may run on the I/O thread
    RouteHandler handle;
    std::vector<std::string> segments;
  };

  // Per-route metrics, found once rather than by name and labels on every
  // request: the latency histogram, and request counters by status (filled
  // on first use; registering the same series twice gives the same object,
  // so a race to fill a slot is harmless).
  struct RouteMeters {
    Histogram* latency = nullptr;
    std::unique_ptr<std::atomic<Counter*>[]> by_status { new std::atomic<Counter*>[ 600 ]() };
  };
  std::map<std::string, RouteMeters> meters;  // by route pattern ("unmatched" too); fixed after AddRoutes

  void Count(const std::string& route, int status, double seconds) {
    RouteMeters& m = meters.at(route);
    m.latency->Observe(seconds);
    const int slot = status >= 100 && status < 600 ? status : 599;
    Counter* counter = m.by_status[slot].load(std::memory_order_acquire);
    if (counter == nullptr) {
      counter = &metrics.counter("rapport_http_requests_total", "HTTP requests by route and status.",
                                 {{"route", route}, {"status", std::to_string(status)}});
      m.by_status[slot].store(counter, std::memory_order_release);
    }
    counter->Add();
  }

  void AddMeters(const std::string& route) {
    meters[route].latency = &metrics.histogram("rapport_http_request_seconds",
                                               "Time to handle an HTTP request, by route.", {{"route", route}});
  }

  Impl(ServiceOptions o, projections::ProjectionStore& s, const consumers::RunnerProgress* p, api::Ingest* i,
       Metrics& m)
      : options(std::move(o)), auth(options.auth), store(s), progress(p), ingest(i), metrics(m) {}

  ServiceOptions options;
  Authenticator auth;
  projections::ProjectionStore& store;
  const consumers::RunnerProgress* progress;
  api::Ingest* ingest;
  Metrics& metrics;
  std::vector<Route> routes;
  std::shared_ptr<spdlog::logger> log = ModuleLogger("api");

  enum Cost { kQuick, kSlow };
  void Add(std::string method, std::string pattern, std::optional<Scope> scope, Cost cost, RouteHandler handle) {
    Route route{std::move(method), std::move(pattern), scope, cost == kQuick, std::move(handle), {}};
    for (auto s : Segments(route.pattern)) route.segments.emplace_back(s);
    AddMeters(route.pattern);
    routes.push_back(std::move(route));
  }

  // The events topic's partition count as the store was built under it: read
  // from the store until the runner has written it, then kept (a store's
  // count never changes: the runner stops rather than change it).
  std::atomic<int32_t> known_partition_count{0};
  Result<int32_t> PartitionCount() {
    if (int32_t known = known_partition_count.load(std::memory_order_relaxed); known > 0) return known;
    auto count = consumers::StoredPartitionCount(store, options.events_topic);
    if (!count.ok() && count.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnavailableError("the projections have not started consuming yet");
    }
    if (count.ok()) known_partition_count.store(*count, std::memory_order_relaxed);
    return count;
  }

  // The one path every read takes: the ?after= wait, the partition count,
  // the view's answer (`read`), and the answer with how fresh it is.
  using ViewRead = std::function<Result<Answer>(int32_t partitions)>;
  HttpResponse Serve(const HttpRequest& request, const ViewRead& read) {
    if (auto wait = WaitForAfter(request)) return *wait;
    auto partitions = PartitionCount();
    if (!partitions.ok()) return StatusResponse(partitions.status());
    auto answer = read(*partitions);
    if (!answer.ok()) return StatusResponse(answer.status());
    return Read(answer->json, answer->partition);
  }
  StoreReads Reads(int32_t partitions) { return StoreReads(store, partitions, kCompact); }

  // How far the projections are applied: for one partition, or for all.
  Json Freshness(std::optional<int32_t> partition) {
    Json out = Json::object();
    std::map<int32_t, consumers::RunnerProgress::Partition> state;
    if (progress != nullptr) {
      state = progress->Snapshot();
    } else if (auto stored = consumers::StoredOffsets(store, options.events_topic); stored.ok()) {
      for (const auto& [p, offset] : *stored) state[p] = {offset, -1};
    }
    auto lag = [](const consumers::RunnerProgress::Partition& p) -> Json {
      return p.end < 0 ? Json(nullptr) : Json(std::max<int64_t>(p.end - p.applied, 0));
    };
    if (partition) {
      auto it = state.find(*partition);
      out["partition"] = *partition;
      out["applied_offset"] = it == state.end() ? Json(nullptr) : Json(it->second.applied);
      out["lag_records"] = it == state.end() ? Json(nullptr) : lag(it->second);
      AddRebuild(out);
      return out;
    }
    int64_t total = 0;
    bool known = progress != nullptr;
    Json applied = Json::object();
    for (const auto& [p, s] : state) {
      applied[std::to_string(p)] = s.applied;
      if (s.end >= 0) total += std::max<int64_t>(s.end - s.applied, 0);
    }
    out["applied_offsets"] = applied;
    out["lag_records"] = known ? Json(total) : Json(nullptr);
    AddRebuild(out);
    return out;
  }

  // While a raised projection version is built, its queries read the version
  // it replaces (kept up to date): say so.
  void AddRebuild(Json& out) {
    if (progress == nullptr) return;
    auto rebuild = progress->rebuild();
    if (rebuild.families.empty()) return;
    out["rebuilding"] = {{"projections", rebuild.families}, {"records_behind", rebuild.behind}};
  }

  // {"data": <view JSON>, "freshness": {...}}
  HttpResponse Read(const std::string& data_json, std::optional<int32_t> partition) {
    return JsonResponse(200, fmt::format("{{\"data\":{},\"freshness\":{}}}", data_json, Freshness(partition).dump()));
  }

  // Waits for ?after=PARTITION:OFFSET[,...] (positions POST /v1/events returned).
  std::optional<HttpResponse> WaitForAfter(const HttpRequest& request) {
    const std::string* text = request.Param("after");
    if (text == nullptr) return std::nullopt;
    std::vector<std::pair<int32_t, int64_t>> positions;
    std::string_view rest = *text;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      size_t colon = item.find(':');
      int32_t partition = -1;
      int64_t offset = -1;
      bool ok = colon != std::string_view::npos;
      if (ok) {
        auto a = std::from_chars(item.data(), item.data() + colon, partition);
        auto b = std::from_chars(item.data() + colon + 1, item.data() + item.size(), offset);
        ok = a.ec == std::errc() && a.ptr == item.data() + colon && b.ec == std::errc() &&
             b.ptr == item.data() + item.size() && partition >= 0 && offset >= 0;
      }
      if (!ok) {
        return ErrorResponse(400, "invalid_argument",
                             fmt::format("after: \"{}\" is not a position such as 3:1200 (partition:offset, as "
                                         "POST /v1/events returns), or a comma-separated list of them",
                                         *text),
                             "after");
      }
      positions.emplace_back(partition, offset);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    if (progress == nullptr) {
      return ErrorResponse(503, "not_yet_applied", "after: this server does not apply events, so it cannot wait");
    }
    if (auto count = PartitionCount(); count.ok()) {
      for (const auto& [partition, offset] : positions) {
        if (partition >= *count) {
          return ErrorResponse(400, "invalid_argument",
                               fmt::format("after: partition {} does not exist; {} has {} partitions (0 to {})",
                                           partition, options.events_topic, *count, *count - 1),
                               "after");
        }
      }
    }
    const auto deadline = Clock::now() + options.consistency_wait;
    for (const auto& [partition, offset] : positions) {
      if (auto never = PastTheEnd(partition, offset, deadline)) return *never;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (!progress->WaitApplied(partition, offset, std::max(left, std::chrono::milliseconds(0)))) {
        auto state = progress->Snapshot();
        auto it = state.find(partition);
        HttpResponse response = ErrorResponse(
            503, "not_yet_applied",
            it == state.end()
                ? fmt::format("after: partition {} is not applied by this server", partition)
                : fmt::format("after: partition {} is applied up to offset {}, not yet past {}, after waiting {} ms; "
                              "retry shortly",
                              partition, it->second.applied, offset, options.consistency_wait.count()),
            "after");
        response.headers.emplace_back("Retry-After", "1");
        return response;
      }
    }
    return std::nullopt;
  }

  // A position past the end of its partition's log was not returned by
  // POST /v1/events (or not yet seen by this server's consumer, whose view
  // of the log's end trails the broker by a fetch): after a short grace in
  // which the end does not reach it, a 400 at once rather than holding a
  // worker for consistency_wait_ms.
  std::optional<HttpResponse> PastTheEnd(int32_t partition, int64_t offset, Clock::time_point deadline) {
    const auto grace = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000), options.consistency_wait);
    const auto grace_end = Clock::now() + grace;
    for (;;) {
      auto state = progress->Snapshot();
      auto it = state.find(partition);
      if (it == state.end() || offset < it->second.end || it->second.applied > offset) return std::nullopt;
      if (Clock::now() >= deadline) return std::nullopt;  // the caller answers 503 as for any wait
      if (Clock::now() >= grace_end) {
        return ErrorResponse(400, "invalid_argument",
                             fmt::format("after: position {}:{} is past the end of partition {}, which ends at offset "
                                         "{}; use a position POST /v1/events returned",
                                         partition, offset, partition, it->second.end),
                             "after");
      }
      progress->WaitApplied(partition, offset, std::chrono::milliseconds(50));
    }
  }

  void AddRoutes();
  void AddOperationsRoutes();
  void AddCustomerRoutes();
  void AddSubjectRoutes();
  void AddPopulationRoutes();
  const Route* Match(const HttpRequest& request, Params& params, std::vector<std::string>& allowed) const;
  HttpResponse PostEvents(const HttpRequest& request);
};

void ApiService::Impl::AddRoutes() {
  AddOperationsRoutes();
  AddCustomerRoutes();
  AddSubjectRoutes();
  AddPopulationRoutes();
  Add("POST", "/v1/events", Scope::kIngest, kSlow,
      [this](const HttpRequest& request, const Params&) { return PostEvents(request); });
}

// Health, readiness, the API's description, metrics.
void ApiService::Impl::AddOperationsRoutes() {
  Add("GET", "/healthz", std::nullopt, kQuick,
      [](const HttpRequest&, const Params&) { return JsonResponse(200, R"({"status":"ok"})"); });
  Add("GET", "/readyz", std::nullopt, kQuick, [this](const HttpRequest&, const Params&) {
    // A store nobody applies to (run --read-only) is as ready as it will be.
    const bool started = progress != nullptr && progress->started();
    const int64_t lag = started ? progress->TotalLag() : -1;
    const bool ready = progress == nullptr || (started && lag <= options.ready_max_lag);
    Json body = {{"ready", ready},
                 {"lag_records", started ? Json(lag) : Json(nullptr)},
                 {"max_lag_records", options.ready_max_lag}};
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

// One customer's views, by id or by an identity.
void ApiService::Impl::AddCustomerRoutes() {
  Add("GET", "/v1/customers/lookup", Scope::kRead, kQuick, [this](const HttpRequest& request, const Params&) {
    const std::pair<std::string_view, v1::IdentityKind>* kind = nullptr;
    for (const auto& k : projections::kLookupKinds) {
      if (request.Param(std::string(k.first)) != nullptr) {
        if (kind != nullptr) {
          return ErrorResponse(400, "invalid_argument", "give exactly one of email, phone, card, device, external_id");
        }
        kind = &k;
      }
    }
    if (kind == nullptr || request.Param(std::string(kind->first))->empty()) {
      return ErrorResponse(400, "invalid_argument",
                           "give one identity to look up: email, phone, card, device or external_id");
    }
    const std::string& value = *request.Param(std::string(kind->first));
    return Serve(request, [&](int32_t partitions) { return Reads(partitions).Lookup(kind->second, value); });
  });

  Add("GET", "/v1/customers/{id}", Scope::kRead, kQuick, [this](const HttpRequest& request, const Params& params) {
    return Serve(request, [&](int32_t partitions) { return Reads(partitions).Profile(params.at("id")); });
  });

  Add("GET", "/v1/customers/{id}/churn", Scope::kRead, kQuick,
      [this](const HttpRequest& request, const Params& params) {
        absl::Time as_of;
        if (auto bad = ParseAsOf(request, as_of)) return *bad;
        return Serve(request, [&](int32_t partitions) { return Reads(partitions).Churn(params.at("id"), as_of); });
      });

  Add("GET", "/v1/customers/{id}/reviews", Scope::kRead, kQuick,
      [this](const HttpRequest& request, const Params& params) {
        return Serve(request, [&](int32_t partitions) { return Reads(partitions).CustomerReviews(params.at("id")); });
      });

  Add("GET", "/v1/customers", Scope::kRead, kSlow, [this](const HttpRequest& request, const Params&) {
    projections::TargetQuery query;
    if (const std::string* category = request.Param("category"); category != nullptr && !category->empty()) {
      query.category = *category;
    } else {
      return ErrorResponse(400, "invalid_argument", "category: required, e.g. ?category=dining", "category");
    }
    if (const std::string* currency = request.Param("currency")) query.currency = *currency;
    if (const std::string* min_spend = request.Param("min_spend")) {
      double value = -1;
      auto [end, error] = std::from_chars(min_spend->data(), min_spend->data() + min_spend->size(), value);
      if (error != std::errc() || end != min_spend->data() + min_spend->size() || !(value >= 0) || value > 1e15) {
        return ErrorResponse(400, "invalid_argument",
                             fmt::format("min_spend: \"{}\" is not an amount such as 250 or 99.50", *min_spend),
                             "min_spend");
      }
      query.min_spend = value;
    }
    size_t limit = 0;
    if (auto bad = ParseLimit(request, limit, kDefaultPageSize)) return *bad;
    const std::string* cursor = request.Param("cursor");
    return Serve(request, [&](int32_t partitions) -> Result<Answer> {
      ASSIGN_OR_RETURN(auto page, CustomerProfileView(store, partitions).Targeted(query, limit, cursor ? *cursor : ""));
      const std::string items =
          JsonArray(page.customers, [](const auto& profile) { return CustomerProfileView::ToJson(profile, kCompact); });
      return Answer{fmt::format("{{\"customers\":{},\"next_cursor\":{}}}", items, CursorJson(page.next_cursor)),
                    std::nullopt};
    });
  });
}

// What customers say about a subject (a hotel, a product, an agent, ...).
void ApiService::Impl::AddSubjectRoutes() {
  auto subject = [](const Params& params, v1::SubjectType& type) -> std::optional<HttpResponse> {
    if (auto named = SubjectTypeNamed(params.at("type"))) {
      type = *named;
      return std::nullopt;
    }
    return ErrorResponse(404, "not_found",
                         fmt::format("\"{}\" is not a subject type (hotel, product, store, agent, route, restaurant, "
                                     "service, other)",
                                     params.at("type")),
                         "type");
  };

  Add("GET", "/v1/subjects/{type}/{id}/reviews", Scope::kRead, kQuick,
      [this, subject](const HttpRequest& request, const Params& params) {
        v1::SubjectType type;
        if (auto bad = subject(params, type)) return *bad;
        absl::Time as_of;
        if (auto bad = ParseAsOf(request, as_of)) return *bad;
        return Serve(request, [&](int32_t partitions) {
          return Reads(partitions).SubjectSummary(type, params.at("id"), as_of);
        });
      });

  Add("GET", "/v1/subjects/{type}/{id}/reviews/items", Scope::kRead, kQuick,
      [this, subject](const HttpRequest& request, const Params& params) {
        v1::SubjectType type;
        if (auto bad = subject(params, type)) return *bad;
        size_t limit = 0;
        if (auto bad = ParseLimit(request, limit, 20)) return *bad;
        const std::string* cursor = request.Param("cursor");
        return Serve(request, [&](int32_t partitions) {
          return Reads(partitions).SubjectReviews(type, params.at("id"), limit, cursor ? *cursor : "");
        });
      });
}

// Scans of every customer as of a time: segments, revenue concentration,
// a segment's members, the customers most at risk.
void ApiService::Impl::AddPopulationRoutes() {
  // Segments and pareto: one scan of every customer as of T, rendered into `data`.
  using Render = std::function<void(const projections::PopulationView&, Json&)>;
  auto population = [this](const HttpRequest& request, const Render& render) {
    absl::Time as_of;
    if (auto bad = ParseAsOf(request, as_of)) return *bad;
    return Serve(request, [&](int32_t partitions) -> Result<Answer> {
      ASSIGN_OR_RETURN(auto view, ChurnView(store, partitions).Population(as_of));
      Json data = {{"as_of", events::FormatTime(as_of)}, {"customers", view.customers}};
      render(view, data);
      return Answer{data.dump(), std::nullopt};
    });
  };
  Add("GET", "/v1/segments", Scope::kRead, kSlow, [population](const HttpRequest& request, const Params&) {
    return population(request, [](const projections::PopulationView& view, Json& data) {
      Json segments = Json::object();
      for (const auto& [name, count] : view.customers_per_segment) segments[name] = count;
      data["segments"] = std::move(segments);
    });
  });

  Add("GET", "/v1/insights/pareto", Scope::kRead, kSlow, [population](const HttpRequest& request, const Params&) {
    return population(request, [](const projections::PopulationView& view, Json& data) {
      Json shares = Json::object();
      for (const auto& [currency, share] : view.top_20_percent_revenue_share) {
        shares[currency] = std::round(share * 1000) / 1000;
      }
      data["top_20_percent_revenue_share"] = std::move(shares);
    });
  });

  Add("GET", "/v1/segments/{name}/customers", Scope::kRead, kSlow,
      [this](const HttpRequest& request, const Params& params) {
        auto segment = projections::SegmentNamed(params.at("name"));
        if (!segment) {
          return ErrorResponse(404, "not_found",
                               fmt::format("\"{}\" is not a segment (GET /v1/segments lists them)", params.at("name")),
                               "name");
        }
        absl::Time as_of;
        if (auto bad = ParseAsOf(request, as_of)) return *bad;
        size_t limit = 0;
        if (auto bad = ParseLimit(request, limit, kDefaultPageSize)) return *bad;
        const std::string* cursor = request.Param("cursor");
        return Serve(request, [&](int32_t partitions) -> Result<Answer> {
          ASSIGN_OR_RETURN(auto page,
                           ChurnView(store, partitions).Members(*segment, as_of, limit, cursor ? *cursor : ""));
          const std::string items =
              JsonArray(page.customers, [&](const auto& a) { return ChurnView::ToJson(a, as_of, kCompact); });
          return Answer{fmt::format("{{\"segment\":{},\"customers\":{},\"next_cursor\":{}}}",
                                    Json(std::string(projections::SegmentName(*segment))).dump(), items,
                                    CursorJson(page.next_cursor)),
                        std::nullopt};
        });
      });

  Add("GET", "/v1/churn/at-risk", Scope::kRead, kSlow, [this](const HttpRequest& request, const Params&) {
    absl::Time as_of;
    if (auto bad = ParseAsOf(request, as_of)) return *bad;
    size_t limit = 0;
    if (auto bad = ParseLimit(request, limit, kDefaultPageSize)) return *bad;
    std::string currency;
    if (const std::string* code = request.Param("currency")) {
      if (code->size() != 3 || !std::all_of(code->begin(), code->end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return ErrorResponse(400, "invalid_argument",
                             fmt::format("currency: \"{}\" is not an ISO 4217 code such as EUR", *code), "currency");
      }
      currency = *code;
    }
    return Serve(request, [&](int32_t partitions) -> Result<Answer> {
      ASSIGN_OR_RETURN(auto top, ChurnView(store, partitions).AtRisk(as_of, limit, currency));
      const std::string items =
          JsonArray(top.customers, [&](const auto& a) { return ChurnView::ToJson(a, as_of, kCompact); });
      return Answer{fmt::format("{{\"as_of\":\"{}\",\"currency\":{},\"customers_per_currency\":{},\"customers\":{}}}",
                                events::FormatTime(as_of), top.currency.empty() ? "null" : Json(top.currency).dump(),
                                Json(top.customers_per_currency).dump(), items),
                    std::nullopt};
    });
  });
}

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
  return route != nullptr && route->quick;
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
    AuthDecision decision = s.auth.Check(request, *matched->scope);
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
