// Several instances, one API: a read for a customer whose partition another
// instance applies goes to that instance (its URL from the members topic),
// once, and comes back as it answered; GET /v1/cluster says who applies what.
#define CPPHTTPLIB_OPENSSL_SUPPORT  // as Debian's libcpp-httplib is built
#include <httplib.h>

#include <map>
#include <memory>
#include <set>

#include "rapport/kafka/partitioner.h"
#include "service_impl.h"

namespace rapport::api {
namespace {

// Set on a forwarded request: the instance that forwarded it. The receiver
// answers from its own store or says it cannot; it never forwards again.
constexpr char kForwardedBy[] = "rapport-forwarded-by";
constexpr char kServedBy[] = "Rapport-Served-By";

HttpResponse Unavailable(std::string_view code, const std::string& message, const std::vector<int32_t>& partitions) {
  HttpResponse response =
      JsonResponse(503, Json{{"error", {{"code", code}, {"message", message}, {"partitions", partitions}}}}.dump());
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

}  // namespace

bool ApiService::Impl::OwnedHere(int32_t partition) const {
  auto state = progress->Snapshot();
  auto it = state.find(partition);
  return it != state.end() && it->second.owned;
}

HttpResponse ApiService::Impl::ServeCustomer(const HttpRequest& request, const std::string& customer_id,
                                             const ViewRead& read) {
  if (!Clustered()) return Serve(request, read);
  auto partitions = PartitionCount();
  if (!partitions.ok()) return StatusResponse(partitions.status());
  const int32_t partition = kafka::PartitionForKey(customer_id, *partitions);
  if (OwnedHere(partition)) return Serve(request, read);
  return Forward(request, partition);
}

HttpResponse ApiService::Impl::Forward(const HttpRequest& request, int32_t partition) {
  if (!request.Header(kForwardedBy).empty()) {
    // Forwarded here by an instance whose directory says this one applies
    // the partition: it has just moved. The caller's client retries.
    return Unavailable("partition_moved",
                       fmt::format("partition {} is not applied by this instance (it moved); retry shortly", partition),
                       {partition});
  }
  // Not here, whatever this instance last published: its own claim is stale.
  auto owner = options.directory->OwnerOf(partition, options.instance_id);
  if (!owner) {
    return Unavailable("partition_unavailable",
                       fmt::format("no running instance applies partition {} now (it is moving between instances, "
                                   "or its instance stopped and the group has not yet given it to another); retry "
                                   "shortly",
                                   partition),
                       {partition});
  }
  if (owner->url.empty()) {
    return Unavailable(
        "partition_unavailable",
        fmt::format("instance {} applies partition {} but serves no API ([api] listen)", owner->instance_id, partition),
        {partition});
  }
  // One keep-alive connection per owner and worker thread: a forwarded read
  // then costs one round trip, not a TCP handshake too.
  thread_local std::map<std::string, std::unique_ptr<httplib::Client>> clients;
  std::unique_ptr<httplib::Client>& client = clients[owner->url];
  if (!client) {
    client = std::make_unique<httplib::Client>(owner->url);
    client->set_keep_alive(true);
  }
  const auto timeout = options.forward_timeout;
  client->set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
                                 static_cast<time_t>((timeout.count() % 1000) * 1000));
  // A forwarded ?after= waits on the owner as it would here.
  const auto read_timeout =
      timeout + (request.Param("after") ? options.consistency_wait : std::chrono::milliseconds(0));
  client->set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(read_timeout).count(),
                           static_cast<time_t>((read_timeout.count() % 1000) * 1000));
  httplib::Headers headers{{kForwardedBy, options.instance_id}};
  for (const char* name : {"authorization", "x-api-key"}) {
    if (std::string value = request.Header(name); !value.empty()) headers.emplace(name, value);
  }
  auto result = client->Get(request.target, headers);
  if (!result) {
    clients.erase(owner->url);  // a new connection next time
    return Unavailable("partition_unavailable",
                       fmt::format("instance {} applies partition {} but did not answer at {} ({})", owner->instance_id,
                                   partition, owner->url, httplib::to_string(result.error())),
                       {partition});
  }
  HttpResponse response;
  response.status = result->status;
  response.body = result->body;
  response.content_type = result->get_header_value("Content-Type");
  if (std::string retry = result->get_header_value("Retry-After"); !retry.empty()) {
    response.headers.emplace_back("Retry-After", retry);
  }
  response.headers.emplace_back(kServedBy, owner->instance_id);
  return response;
}

HttpResponse ApiService::Impl::ServeLookup(const HttpRequest& request, v1::IdentityKind kind,
                                           const std::string& value) {
  if (!Clustered()) {
    return Serve(request, [&](int32_t partitions) { return Reads(partitions).Lookup(kind, value); });
  }
  // The identity's index entry sits in its customer's partition, which the
  // identity does not tell: this instance's partitions first, then every
  // other live instance's (a forwarded lookup looks only here).
  HttpResponse here = Serve(request, [&](int32_t partitions) {
    return Reads(partitions).Lookup(kind, value, [this](int32_t p) { return OwnedHere(p); });
  });
  if (here.status != 404 || !request.Header(kForwardedBy).empty()) return here;
  std::vector<int32_t> unanswered;
  std::set<std::string> asked;
  auto count = PartitionCount();
  if (!count.ok()) return StatusResponse(count.status());
  for (int32_t p = 0; p < *count; ++p) {
    if (OwnedHere(p)) continue;
    auto owner = options.directory->OwnerOf(p, options.instance_id);
    if (!owner) {
      unanswered.push_back(p);
      continue;
    }
    if (!asked.insert(owner->instance_id).second) continue;
    HttpResponse there = Forward(request, p);
    if (there.status == 200) return there;
    if (there.status != 404) {
      for (const auto& [id, member] : options.directory->Members()) {
        if (id != owner->instance_id) continue;
        for (const auto& owned : member.member.owned()) unanswered.push_back(owned.partition());
      }
    }
  }
  if (unanswered.empty()) return here;
  std::sort(unanswered.begin(), unanswered.end());
  return Unavailable(
      "partition_unavailable",
      fmt::format("not found in the partitions that answered; {} partitions could not be asked", unanswered.size()),
      unanswered);
}

std::optional<HttpResponse> ApiService::Impl::NeedsEveryPartition() {
  if (!Clustered()) return std::nullopt;
  auto partitions = PartitionCount();
  if (!partitions.ok()) return StatusResponse(partitions.status());
  std::vector<int32_t> elsewhere;
  for (int32_t p = 0; p < *partitions; ++p) {
    if (!OwnedHere(p)) elsewhere.push_back(p);
  }
  if (elsewhere.empty()) return std::nullopt;
  return Unavailable("partial_population",
                     fmt::format("this instance applies {} of the {} partitions; a read of every customer needs them "
                                 "all, and is not yet gathered from the instances that apply the others: ask an "
                                 "instance that applies every partition",
                                 *partitions - static_cast<int32_t>(elsewhere.size()), *partitions),
                     elsewhere);
}

Json ApiService::Impl::ClusterJson() {
  Json instances = Json::array();
  auto heard = options.directory->Members();
  for (const auto& [id, member] : heard) {
    Json owned = Json::array();
    for (const auto& p : member.member.owned()) {
      owned.push_back({{"partition", p.partition()},
                       {"applied_offset", p.applied()},
                       {"lag_records", std::max<int64_t>(p.end() - p.applied(), 0)}});
    }
    instances.push_back({{"instance_id", id},
                         {"url", member.member.advertised_url()},
                         {"live", member.live},
                         {"leaving", member.member.leaving()},
                         {"last_heard_ms", member.since.count()},
                         {"version", member.member.version()},
                         {"owned", std::move(owned)}});
  }
  Json partitions = Json::array();
  std::vector<int32_t> unowned;
  if (auto count = PartitionCount(); count.ok()) {
    for (int32_t p = 0; p < *count; ++p) {
      auto owner = options.directory->OwnerOf(p);
      if (!owner) unowned.push_back(p);
      partitions.push_back(
          {{"partition", p},
           {"owner", owner ? Json(owner->instance_id) : Json(nullptr)},
           {"lag_records", owner ? Json(std::max<int64_t>(owner->end - owner->applied, 0)) : Json(nullptr)}});
    }
  }
  return {{"this_instance", options.instance_id},
          {"instances", std::move(instances)},
          {"partitions", std::move(partitions)},
          {"unowned_partitions", unowned}};
}

void ApiService::Impl::AddClusterRoutes() {
  Add("GET", "/v1/cluster", Scope::kRead, kQuick, [this](const HttpRequest&, const Params&) {
    if (options.directory == nullptr) {
      return ErrorResponse(404, "not_found", "this instance runs alone: it reads no members topic");
    }
    return JsonResponse(200, Json{{"data", ClusterJson()}}.dump());
  });
}

std::vector<int32_t> ApiService::Impl::PartitionsWithoutOwner() {
  std::vector<int32_t> missing;
  if (!Clustered()) return missing;
  auto count = PartitionCount();
  if (!count.ok()) return missing;
  for (int32_t p = 0; p < *count; ++p) {
    if (!OwnedHere(p) && !options.directory->OwnerOf(p, options.instance_id)) missing.push_back(p);
  }
  return missing;
}

}  // namespace rapport::api
