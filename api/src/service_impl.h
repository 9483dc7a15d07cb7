#pragma once

// ApiService's insides, shared by the files that hold its routes:
// service.cc (the route table, dispatch, health and metrics), read_routes.cc
// (every read: parse, wait for a position, the view, the answer with its
// freshness) and post_events.cc (ingest).

#include <atomic>
#include <charconv>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "rapport/api/reads.h"
#include "rapport/api/service.h"
#include "rapport/base/logging.h"
#include "rapport/events/time_text.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/customer_profile.h"
#include "rapport/projections/reviews.h"

namespace rapport::api {

using Json = nlohmann::ordered_json;
using projections::ChurnView;
using projections::CustomerProfileView;
using Params = std::map<std::string, std::string>;  // path parameters by name
using Clock = std::chrono::steady_clock;

inline constexpr size_t kDefaultPageSize = 50;
inline constexpr events::JsonStyle kCompact = events::JsonStyle::kOneLine;
inline constexpr size_t kMaxPageSize = 1000;

HttpResponse JsonResponse(int status, std::string body);
// A Status from a view as an HTTP error: NotFound 404, InvalidArgument 400
// (a "field: reason" message names the field), Unavailable 503, anything
// else 500.
HttpResponse StatusResponse(const Status& status);

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
std::string CursorJson(const std::string& cursor);

// Query parameters, checked: an error (400) names the parameter.
std::optional<HttpResponse> ParseLimit(const HttpRequest& request, size_t& limit, size_t fallback);
std::optional<HttpResponse> ParseAsOf(const HttpRequest& request, absl::Time& as_of);

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
  void Add(std::string method, std::string pattern, std::optional<Scope> scope, Cost cost, RouteHandler handle);

  // The events topic's partition count as the store was built under it: read
  // from the store until the runner has written it, then kept (a store's
  // count never changes: the runner stops rather than change it).
  std::atomic<int32_t> known_partition_count{0};
  Result<int32_t> PartitionCount();

  // The one path every read takes: the ?after= wait, the partition count,
  // the view's answer (`read`), and the answer with how fresh it is.
  using ViewRead = std::function<Result<Answer>(int32_t partitions)>;
  HttpResponse Serve(const HttpRequest& request, const ViewRead& read);
  StoreReads Reads(int32_t partitions) { return StoreReads(store, partitions, kCompact); }

  // How far the projections are applied: for one partition, or for all.
  Json Freshness(std::optional<int32_t> partition);
  // For the partitions `in` accepts (null: all).
  Json FreshnessOf(const std::function<bool(int32_t)>& in);
  std::map<int32_t, consumers::RunnerProgress::Partition> PartitionStates();

  // While a raised projection version is built, its queries read the version
  // it replaces (kept up to date): say so.
  void AddRebuild(Json& out);

  // {"data": <view JSON>, "freshness": {...}}
  HttpResponse Read(const std::string& data_json, std::optional<int32_t> partition);

  // Waits for ?after=PARTITION:OFFSET[,...] (positions POST /v1/events returned).
  std::optional<HttpResponse> WaitForAfter(const HttpRequest& request);

  // A position past the end of its partition's log was not returned by
  // POST /v1/events (or not yet seen by this server's consumer, whose view
  // of the log's end trails the broker by a fetch): after a short grace in
  // which the end does not reach it, a 400 at once rather than holding a
  // worker for consistency_wait_ms.
  std::optional<HttpResponse> PastTheEnd(int32_t partition, int64_t offset, Clock::time_point deadline);

  // cluster_routes.cc: several instances, one API.
  bool Clustered() const { return options.directory != nullptr && progress != nullptr; }
  bool OwnedHere(int32_t partition) const;
  // A standby here, caught up, that answers for the partition: while no
  // live instance owns it, or when another instance asks (`asked`: it found
  // this one as the partition's standby, or its owner just now).
  bool StandsInHere(int32_t partition, bool asked) const;
  // The partitions this instance answers for now (owned, or stood in for),
  // for a whole read at one look at the directory.
  std::function<bool(int32_t)> AnsweredHere();
  // Sent by another instance of the group (for a part of a read, or a read
  // forwarded once).
  bool AskedByAnotherInstance(const HttpRequest& request) const;
  // Sent by another instance with the token it publishes on the members topic.
  bool SentByAnInstance(const HttpRequest& request) const;
  // A read of one customer: here if this instance applies its partition,
  // otherwise forwarded to the instance that does.
  HttpResponse ServeCustomer(const HttpRequest& request, const std::string& customer_id, const ViewRead& read);
  HttpResponse ServeLookup(const HttpRequest& request, v1::IdentityKind kind, const std::string& value);
  // To the partition's owner; when it does not answer (it died a moment
  // ago), to a standby of the partition, here or on another instance.
  HttpResponse Forward(const HttpRequest& request, int32_t partition, const ViewRead& read);
  // 503 partition_catching_up: a read of partitions that moved here and are
  // not yet applied to where the log ended then (found or not).
  static HttpResponse CatchingUp(const std::vector<int32_t>& partitions);
  // GET `target` of `owner` on behalf of `request` (its key passed on);
  // nullopt when the owner did not answer.
  // `read_timeout`: how long to wait for the answer (0: the forward timeout).
  std::optional<HttpResponse> Ask(const cluster::Owner& owner, const std::string& target, const HttpRequest& request,
                                  std::chrono::milliseconds read_timeout = std::chrono::milliseconds(0));
  // The fit inputs of `partitions`, one per partition, as of `as_of_ms`:
  // from this store or asked of the instances that apply them.
  Result<std::map<int32_t, projections::FitInputs>> ClusterFitInputs(int64_t as_of_ms, projections::ModelPeriod period);
  // The partitions other live instances apply, by instance; Unavailable
  // naming those no live instance applies.
  Result<std::map<std::string, std::pair<cluster::Owner, std::vector<int32_t>>>> OthersPartitions();
  // Every partition's churn histograms: this instance's own partitions' and
  // each other instance's, asked for at most every 5 s.
  Result<projections::ChurnHistograms> ClusterHistograms(const HttpRequest& request);
  struct HistogramsCache {
    std::mutex mutex;
    std::optional<projections::ChurnHistograms> value;
    Clock::time_point at;
  } histograms_cache;
  // A 400 or 503 unless every partition asked for is applied here (and,
  // `caught_up`, none is still catching up after it moved here).
  std::optional<HttpResponse> NotAllHere(const std::set<int32_t>& partitions, bool caught_up = true);
  // The partitions `in` accepts that are catching up here.
  std::vector<int32_t> CatchingUpAmong(const std::function<bool(int32_t)>& in);
  // A read of every customer is made of parts that add up exactly:
  // `part(partitions, in)` is the data of the customers of the partitions
  // `in` accepts (null: all). Gather makes this instance's part and, with
  // several instances, asks each other instance for the part of the
  // partitions it applies (the request's own target, `extra` query
  // parameters and ?partitions=); asked so by another instance, it answers
  // its part alone. The route merges the parts into the answer.
  using In = std::function<bool(int32_t)>;
  using Part = std::function<Result<Json>(int32_t partitions, const In& in)>;
  struct Gathered {
    std::vector<Json> parts;  // this instance's first
    Json freshness;           // of every partition the parts cover
    // When set, the route answers this instead: an error (a 503 naming the
    // partitions no instance answered for), or the part another asked for.
    std::optional<HttpResponse> answer;
  };
  Gathered Gather(const HttpRequest& request, const Part& part, const std::string& extra = "");
  // {"data": data_json, "freshness": the parts' freshness}
  static HttpResponse GatheredRead(const Gathered& gathered, const std::string& data_json);
  // Every partition's churn histograms when several instances share them,
  // set on `view` (R, F and M are scored against every customer).
  Status UseClusterHistograms(ChurnView& view, const HttpRequest& request);
  // Partitions no live instance (this one included) applies.
  std::vector<int32_t> PartitionsWithoutOwner();
  Json ClusterJson();
  Json AloneJson();
  void AddClusterRoutes();

  void AddRoutes();
  void AddOperationsRoutes();
  void AddCustomerRoutes();
  void AddTargetingRoute();
  void AddSubjectRoutes();
  void AddPopulationRoutes();
  const Route* Match(const HttpRequest& request, Params& params, std::vector<std::string>& allowed) const;
  HttpResponse PostEvents(const HttpRequest& request);
};

}  // namespace rapport::api
