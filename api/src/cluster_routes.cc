// Several instances, one API: a read for a customer whose partition another
// instance applies goes to that instance (its URL from the members topic),
// once, and comes back as it answered; GET /v1/cluster says who applies what.
#define CPPHTTPLIB_OPENSSL_SUPPORT  // as Debian's libcpp-httplib is built
#include <httplib.h>
#include <openssl/crypto.h>

#include <future>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "rapport/kafka/partitioner.h"
#include "service_impl.h"

namespace rapport::api {
namespace {

// Set on a forwarded request: the instance that forwarded it. The receiver
// answers from its own store or says it cannot; it never forwards again.
constexpr char kForwardedBy[] = "rapport-forwarded-by";
constexpr char kServedBy[] = "Rapport-Served-By";
// The sender's token, as it publishes it on the members topic.
constexpr char kInstanceToken[] = "rapport-instance-token";

// "0,3,5"
std::string PartitionList(const std::vector<int32_t>& partitions) { return absl::StrJoin(partitions, ","); }

HttpResponse Unavailable(std::string_view code, const std::string& message, const std::vector<int32_t>& partitions) {
  HttpResponse response =
      JsonResponse(503, Json{{"error", {{"code", code}, {"message", message}, {"partitions", partitions}}}}.dump());
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

}  // namespace

bool ApiService::Impl::OwnedHere(int32_t partition) const { return progress->Owned(partition); }

bool ApiService::Impl::StandsInHere(int32_t partition, bool asked) const {
  if (!progress->Standby(partition) || progress->CatchingUp(partition)) return false;
  if (asked) return true;
  auto owner = options.directory->OwnerOf(partition, options.instance_id);
  return !owner || owner->standby;
}

std::function<bool(int32_t)> ApiService::Impl::AnsweredHere() {
  auto here = std::make_shared<std::set<int32_t>>();
  if (auto count = PartitionCount(); count.ok()) {
    const auto owners = options.directory->Owners(*count, options.instance_id);
    for (int32_t p = 0; p < *count; ++p) {
      auto owner = owners.find(p);
      const bool no_live_owner = owner == owners.end() || owner->second.standby;
      if (OwnedHere(p) || (no_live_owner && progress->Standby(p) && !progress->CatchingUp(p))) here->insert(p);
    }
  }
  return [here](int32_t p) { return here->contains(p); };
}

bool ApiService::Impl::AskedByAnotherInstance(const HttpRequest& request) const {
  return Clustered() && !request.Header(kForwardedBy).empty();
}

bool ApiService::Impl::SentByAnInstance(const HttpRequest& request) const {
  if (!AskedByAnotherInstance(request)) return false;
  const std::string token = request.Header(kInstanceToken);
  if (token.empty()) return false;
  const auto members = options.directory->Members();
  auto sender = members.find(request.Header(kForwardedBy));
  if (sender == members.end() || !sender->second.live) return false;
  const std::string& known = sender->second.member.instance_token();
  // Compared in constant time, as API keys are.
  return known.size() == token.size() && CRYPTO_memcmp(known.data(), token.data(), token.size()) == 0;
}

HttpResponse ApiService::Impl::ServeCustomer(const HttpRequest& request, const std::string& customer_id,
                                             const ViewRead& read) {
  if (!Clustered()) return Serve(request, read);
  auto partitions = PartitionCount();
  if (!partitions.ok()) return StatusResponse(partitions.status());
  const int32_t partition = kafka::PartitionForKey(customer_id, *partitions);
  if (!OwnedHere(partition) && !StandsInHere(partition, AskedByAnotherInstance(request))) {
    return Forward(request, partition, read);
  }
  HttpResponse here = Serve(request, read);
  if (here.status == 404 && progress->CatchingUp(partition)) return CatchingUp({partition});
  return here;
}

HttpResponse ApiService::Impl::CatchingUp(const std::vector<int32_t>& partitions) {
  return Unavailable("partition_catching_up",
                     fmt::format("partitions {} moved to this instance and are still being applied up to where the "
                                 "log ended then: their customers' state here is not complete yet; retry shortly",
                                 PartitionList(partitions)),
                     partitions);
}

HttpResponse ApiService::Impl::Forward(const HttpRequest& request, int32_t partition, const ViewRead& read) {
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
  auto answer = Ask(*owner, request.target, request);
  if (!answer && !owner->standby) {
    // The owner died a moment ago (the directory does not know it yet): a
    // standby of the partition answers, this one or another.
    if (progress->Standby(partition) && !progress->CatchingUp(partition)) return Serve(request, read);
    if (auto standby = options.directory->StandbyOf(partition, options.instance_id)) {
      if ((answer = Ask(*standby, request.target, request))) owner = standby;
    }
  }
  if (!answer) {
    return Unavailable("partition_unavailable",
                       fmt::format("instance {} {} partition {} but did not answer at {}", owner->instance_id,
                                   owner->standby ? "stands by for" : "applies", partition, owner->url),
                       {partition});
  }
  answer->headers.emplace_back(kServedBy, owner->instance_id);
  return *answer;
}

std::optional<HttpResponse> ApiService::Impl::Ask(const cluster::Owner& owner, const std::string& target,
                                                  const HttpRequest& request, std::chrono::milliseconds wait) {
  if (owner.url.empty()) return std::nullopt;
  // One keep-alive connection per owner and worker thread: a forwarded read
  // then costs one round trip, not a TCP handshake too.
  thread_local std::map<std::string, std::unique_ptr<httplib::Client>> clients;
  std::unique_ptr<httplib::Client>& client = clients[owner.url];
  if (!client) {
    client = std::make_unique<httplib::Client>(owner.url);
    client->set_keep_alive(true);
  }
  const auto timeout = options.forward_timeout;
  client->set_connection_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
                                 static_cast<time_t>((timeout.count() % 1000) * 1000));
  // A forwarded ?after= waits on the owner as it would here.
  const auto read_timeout = (wait.count() > 0 ? wait : timeout) +
                            (request.Param("after") ? options.consistency_wait : std::chrono::milliseconds(0));
  client->set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(read_timeout).count(),
                           static_cast<time_t>((read_timeout.count() % 1000) * 1000));
  httplib::Headers headers{{kForwardedBy, options.instance_id}, {kInstanceToken, options.instance_token}};
  for (const char* name : {"authorization", "x-api-key"}) {
    if (std::string value = request.Header(name); !value.empty()) headers.emplace(name, value);
  }
  auto result = client->Get(target, headers);
  if (!result) {
    log->warn("asking instance {} at {}: {}", owner.instance_id, owner.url, httplib::to_string(result.error()));
    clients.erase(owner.url);  // a new connection next time
    return std::nullopt;
  }
  HttpResponse response;
  response.status = result->status;
  response.body = result->body;
  response.content_type = result->get_header_value("Content-Type");
  if (std::string retry = result->get_header_value("Retry-After"); !retry.empty()) {
    response.headers.emplace_back("Retry-After", retry);
  }
  return response;
}

Result<std::map<std::string, std::pair<cluster::Owner, std::vector<int32_t>>>> ApiService::Impl::OthersPartitions() {
  ASSIGN_OR_RETURN(int32_t count, PartitionCount());
  std::map<std::string, std::pair<cluster::Owner, std::vector<int32_t>>> others;
  std::vector<int32_t> missing;
  const auto owners = options.directory->Owners(count, options.instance_id);
  const auto here = AnsweredHere();
  for (int32_t p = 0; p < count; ++p) {
    if (here(p)) continue;
    auto owner = owners.find(p);
    if (owner == owners.end() || owner->second.url.empty()) {
      missing.push_back(p);
      continue;
    }
    auto& [who, partitions] = others[owner->second.instance_id];
    who = owner->second;
    partitions.push_back(p);
  }
  if (!missing.empty()) {
    return absl::UnavailableError(absl::StrCat("no running instance with an API applies partitions ",
                                               absl::StrJoin(missing, ","), " now; retry shortly"));
  }
  return others;
}

namespace {

Json HistogramJson(const std::map<int32_t, int64_t>& histogram) {
  Json out = Json::object();
  for (const auto& [key, count] : histogram) out[std::to_string(key)] = count;
  return out;
}

bool ReadHistogram(const nlohmann::json& in, std::map<int32_t, int64_t>& out) {
  if (!in.is_object()) return false;
  for (const auto& [key, count] : in.items()) {
    int32_t bucket = 0;
    auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), bucket);
    if (error != std::errc() || end != key.data() + key.size() || !count.is_number_integer()) return false;
    out[bucket] += count.get<int64_t>();
  }
  return true;
}

// ?partitions=0,3,5 of a request forwarded for a part of a population read
// (repeats count once); {-1} when it is not such a list.
std::optional<std::set<int32_t>> PartitionsParam(const HttpRequest& request) {
  const std::string* text = request.Param("partitions");
  if (text == nullptr) return std::nullopt;
  std::set<int32_t> partitions;
  for (absl::string_view item : absl::StrSplit(*text, ',')) {
    int32_t p = -1;
    auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), p);
    if (error != std::errc() || end != item.data() + item.size() || p < 0) return std::set<int32_t>{-1};
    partitions.insert(p);
  }
  return partitions;
}

}  // namespace

Result<projections::ChurnHistograms> ApiService::Impl::ClusterHistograms(const HttpRequest& request) {
  {
    std::lock_guard lock(histograms_cache.mutex);
    if (histograms_cache.value && Clock::now() - histograms_cache.at < std::chrono::seconds(5)) {
      return *histograms_cache.value;
    }
  }
  ASSIGN_OR_RETURN(int32_t count, PartitionCount());
  ASSIGN_OR_RETURN(auto histograms, ChurnView(store, count).HistogramsOf(AnsweredHere()));
  ASSIGN_OR_RETURN(auto others, OthersPartitions());
  for (const auto& [id, owned] : others) {
    const auto& [owner, partitions] = owned;
    auto answer = Ask(owner, "/v1/internal/churn/histograms?partitions=" + PartitionList(partitions), request);
    if (!answer || answer->status != 200) {
      return absl::UnavailableError(absl::StrCat("instance ", id, " did not give the histograms of partitions ",
                                                 PartitionList(partitions), "; retry shortly"));
    }
    auto body = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
    const auto& data = body.is_object() ? body["data"] : body;
    projections::ChurnHistograms theirs;
    bool ok = data.is_object() && ReadHistogram(data["last_purchase_day"], theirs.last_purchase_day) &&
              ReadHistogram(data["purchase_days"], theirs.purchase_days) && data["monetary"].is_object() &&
              data["buyers"].is_number_integer();
    if (ok) {
      for (const auto& [currency, histogram] : data["monetary"].items()) {
        ok = ok && ReadHistogram(histogram, theirs.monetary[currency]);
      }
      theirs.buyers = data["buyers"].get<int64_t>();
    }
    if (!ok) return absl::InternalError(absl::StrCat("instance ", id, " answered histograms that do not parse"));
    histograms.Add(theirs);
  }
  std::lock_guard lock(histograms_cache.mutex);
  histograms_cache.value = histograms;
  histograms_cache.at = Clock::now();
  return histograms;
}

std::optional<HttpResponse> ApiService::Impl::NotAllHere(const std::set<int32_t>& partitions, bool caught_up) {
  auto count = PartitionCount();
  if (!count.ok()) return StatusResponse(count.status());
  for (int32_t p : partitions) {
    if (p < 0) {
      return ErrorResponse(400, "invalid_argument", "partitions: a comma-separated list such as 0,3,5", "partitions");
    }
    if (p >= *count) {
      return ErrorResponse(400, "invalid_argument",
                           fmt::format("partitions: partition {} does not exist; {} has {} (0 to {})", p,
                                       options.events_topic, *count, *count - 1),
                           "partitions");
    }
    if (!OwnedHere(p) && !StandsInHere(p, /*asked=*/true)) {
      return Unavailable("partition_moved",
                         fmt::format("partition {} is not applied by this instance (it moved); retry shortly", p), {p});
    }
  }
  if (!caught_up) return std::nullopt;
  const std::vector<int32_t> catching = CatchingUpAmong([&](int32_t p) { return partitions.contains(p); });
  if (!catching.empty()) return CatchingUp(catching);
  return std::nullopt;
}

std::vector<int32_t> ApiService::Impl::CatchingUpAmong(const std::function<bool(int32_t)>& in) {
  std::vector<int32_t> catching;
  auto count = PartitionCount();
  for (int32_t p = 0; count.ok() && p < *count; ++p) {
    if (in(p) && progress->CatchingUp(p)) catching.push_back(p);
  }
  return catching;
}

ApiService::Impl::Gathered ApiService::Impl::Gather(const HttpRequest& request, const Part& part,
                                                    const std::string& extra) {
  Gathered out;
  if (auto wait = WaitForAfter(request)) {
    out.answer = *wait;
    return out;
  }
  auto count = PartitionCount();
  if (!count.ok()) {
    out.answer = StatusResponse(count.status());
    return out;
  }
  auto fail = [&](const Status& status) {
    out.answer = StatusResponse(status);
    return out;
  };
  // Another instance asks for the part of the partitions it names.
  if (AskedByAnotherInstance(request)) {
    if (auto asked = PartitionsParam(request)) {
      if (auto bad = NotAllHere(*asked)) {
        out.answer = *bad;
        return out;
      }
      auto mine = part(*count, [&](int32_t p) { return asked->contains(p); });
      if (!mine.ok()) return fail(mine.status());
      out.answer = JsonResponse(
          200, Json{{"data", *mine}, {"freshness", FreshnessOf([&](int32_t p) { return asked->contains(p); })}}.dump());
      return out;
    }
  }
  if (!Clustered()) {
    auto all = part(*count, nullptr);
    if (!all.ok()) return fail(all.status());
    out.parts.push_back(std::move(*all));
    out.freshness = Freshness(std::nullopt);
    return out;
  }
  auto others = OthersPartitions();
  if (!others.ok()) {
    out.answer = Unavailable("partition_unavailable", std::string(others.status().message()), PartitionsWithoutOwner());
    return out;
  }
  // A partition that moved here and is still being applied would make this
  // part less than its partitions' whole: no answer rather than a wrong one
  // (the others say the same of theirs).
  const auto here = AnsweredHere();
  if (const auto catching = CatchingUpAmong(here); !catching.empty()) {
    out.answer = CatchingUp(catching);
    return out;
  }
  // The others are asked at once, each on a thread of its own, while this
  // instance makes its part: the read takes as long as the slowest part,
  // not their sum.
  std::vector<std::future<std::optional<HttpResponse>>> asked;
  for (const auto& [id, owned] : *others) {
    const auto& [owner, partitions] = owned;
    // Its parameters first: a parameter's first value is the one read, so
    // the caller's own ?partitions= (or any) cannot stand for them.
    const size_t question = request.target.find('?');
    std::string target = request.target.substr(0, question) + "?partitions=" + PartitionList(partitions) + extra +
                         (question == std::string::npos ? "" : "&" + request.target.substr(question + 1));
    asked.push_back(std::async(std::launch::async, [this, &owner = owner, target = std::move(target), &request] {
      return Ask(owner, target, request);
    }));
  }
  auto mine = part(*count, here);
  std::vector<std::optional<HttpResponse>> answers;
  for (auto& answer : asked) answers.push_back(answer.get());  // all of them, before anything returns
  if (!mine.ok()) return fail(mine.status());
  out.parts.push_back(std::move(*mine));
  out.freshness = FreshnessOf(here);
  size_t next = 0;
  for (const auto& [id, owned] : *others) {
    const auto& partitions = owned.second;
    std::optional<HttpResponse>& answer = answers[next++];
    if (!answer) {
      out.answer = Unavailable(
          "partition_unavailable",
          fmt::format("instance {} did not answer for partitions {}; retry shortly", id, PartitionList(partitions)),
          partitions);
      return out;
    }
    if (answer->status != 200) {  // moved since (503), or what it says is wrong with the request
      out.answer = std::move(*answer);
      return out;
    }
    Json body = Json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body["data"].is_object() || !body["freshness"].is_object()) {
      out.answer = ErrorResponse(500, "internal", fmt::format("instance {} answered a part that does not parse", id));
      return out;
    }
    out.parts.push_back(std::move(body["data"]));
    const Json& theirs = body["freshness"];
    if (theirs["applied_offsets"].is_object()) {
      for (const auto& [p, offset] : theirs["applied_offsets"].items()) out.freshness["applied_offsets"][p] = offset;
    }
    if (theirs["lag_records"].is_number_integer() && out.freshness["lag_records"].is_number_integer()) {
      out.freshness["lag_records"] = out.freshness["lag_records"].get<int64_t>() + theirs["lag_records"].get<int64_t>();
    } else {
      out.freshness["lag_records"] = nullptr;  // unknown somewhere: unknown
    }
  }
  // The partitions in order, whoever applies them.
  Json ordered = Json::object();
  std::map<int32_t, Json> by_partition;
  for (const auto& [key, offset] : out.freshness["applied_offsets"].items()) {
    int32_t p = -1;
    auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), p);
    if (error == std::errc() && end == key.data() + key.size()) by_partition[p] = offset;
  }
  for (const auto& [p, offset] : by_partition) ordered[std::to_string(p)] = offset;
  out.freshness["applied_offsets"] = std::move(ordered);
  return out;
}

HttpResponse ApiService::Impl::GatheredRead(const Gathered& gathered, const std::string& data_json) {
  return JsonResponse(200, fmt::format("{{\"data\":{},\"freshness\":{}}}", data_json, gathered.freshness.dump()));
}

HttpResponse ApiService::Impl::ServeLookup(const HttpRequest& request, v1::IdentityKind kind,
                                           const std::string& value) {
  if (!Clustered()) {
    return Serve(request, [&](int32_t partitions) { return Reads(partitions).Lookup(kind, value); });
  }
  // The identity's index entry sits in its customer's partition, which the
  // identity does not tell: this instance's partitions first, then every
  // other live instance's (a forwarded lookup looks only here).
  // (A standby answers for partitions with no live owner, and, asked by
  // another instance, for those it stands by.)
  const auto answered = AnsweredHere();
  const bool asked = AskedByAnotherInstance(request);
  HttpResponse here = Serve(request, [&](int32_t partitions) {
    return Reads(partitions).Lookup(kind, value, [&](int32_t p) {
      return answered(p) || (asked && StandsInHere(p, true));
    });
  });
  if (here.status != 404 || !request.Header(kForwardedBy).empty()) return here;
  std::vector<int32_t> unanswered;
  auto others = OthersPartitions();
  if (!others.ok()) {
    // Some partitions have no live owner: ask those that have one, and say
    // which could not be asked if none knows the identity.
    auto count = PartitionCount();
    if (!count.ok()) return StatusResponse(count.status());
    const auto owners = options.directory->Owners(*count, options.instance_id);
    std::map<std::string, std::pair<cluster::Owner, std::vector<int32_t>>> reachable;
    for (int32_t p = 0; p < *count; ++p) {
      if (answered(p)) continue;
      auto owner = owners.find(p);
      if (owner == owners.end() || owner->second.url.empty()) {
        unanswered.push_back(p);
      } else {
        auto& [who, partitions] = reachable[owner->second.instance_id];
        who = owner->second;
        partitions.push_back(p);
      }
    }
    others = std::move(reachable);
  }
  for (const auto& [id, owned] : *others) {
    const auto& [owner, partitions] = owned;
    auto there = Ask(owner, request.target, request);
    if (there && there->status == 200) {
      there->headers.emplace_back(kServedBy, id);
      return *there;
    }
    if (!there || there->status != 404) unanswered.insert(unanswered.end(), partitions.begin(), partitions.end());
  }
  if (unanswered.empty()) {
    // Not found anywhere: certain unless a partition here is still catching up.
    const auto catching_up = CatchingUpAmong([](int32_t) { return true; });
    return catching_up.empty() ? here : CatchingUp(catching_up);
  }
  std::sort(unanswered.begin(), unanswered.end());
  return Unavailable(
      "partition_unavailable",
      fmt::format("not found in the partitions that answered; {} partitions could not be asked", unanswered.size()),
      unanswered);
}

namespace {

// One partition's fit inputs, as the fit-inputs route renders them.
bool ReadFitInputs(const Json& in, projections::FitInputs& out) {
  if (!in.is_object() || !in["latest_purchase_ms"].is_number_integer() || !in["later"].is_number_integer() ||
      !in["histories"].is_array() || !in["spend"].is_object()) {
    return false;
  }
  out.latest_purchase_ms = in["latest_purchase_ms"].get<int64_t>();
  out.later = in["later"].get<int64_t>();
  auto numbers = [](const Json& row, size_t n) {
    return row.is_array() && row.size() == n &&
           std::all_of(row.begin(), row.end(), [](const Json& v) { return v.is_number(); });
  };
  for (const Json& h : in["histories"]) {
    if (!numbers(h, 3)) return false;
    out.histories.push_back({h[0].get<double>(), h[1].get<double>(), h[2].get<double>()});
  }
  for (const auto& [currency, repeat] : in["spend"].items()) {
    if (!repeat.is_array()) return false;
    for (const Json& r : repeat) {
      if (!numbers(r, 2)) return false;
      out.spend[currency].push_back({r[0].get<double>(), r[1].get<double>()});
    }
  }
  return true;
}

}  // namespace

Result<std::map<int32_t, projections::FitInputs>> ApiService::Impl::ClusterFitInputs(int64_t as_of_ms,
                                                                                     projections::ModelPeriod period) {
  ASSIGN_OR_RETURN(int32_t count, PartitionCount());
  std::map<int32_t, projections::FitInputs> inputs;
  const auto here = AnsweredHere();
  if (const auto catching = CatchingUpAmong(here); !catching.empty()) {
    return absl::UnavailableError(absl::StrCat("partitions ", absl::StrJoin(catching, ","),
                                               " moved here and are still being applied; the fit waits for them"));
  }
  for (int32_t p = 0; p < count; ++p) {
    if (!here(p)) continue;
    ASSIGN_OR_RETURN(inputs[p],
                     ChurnView(store, count).FitInputsOf(as_of_ms, period, [p](int32_t q) { return q == p; }));
  }
  ASSIGN_OR_RETURN(auto others, OthersPartitions());
  const HttpRequest none;  // asked for no caller: the instance token admits it
  for (const auto& [id, owned] : others) {
    const auto& [owner, partitions] = owned;
    const std::string target = fmt::format("/v1/internal/churn/fit-inputs?partitions={}&as_of_ms={}&period={}",
                                           PartitionList(partitions), as_of_ms, projections::ModelPeriodName(period));
    auto answer = Ask(owner, target, none, options.fit_inputs_timeout);
    if (!answer || answer->status != 200) {
      return absl::UnavailableError(absl::StrCat("instance ", id, " did not give the fit inputs of partitions ",
                                                 PartitionList(partitions),
                                                 answer ? absl::StrCat(" (HTTP ", answer->status, ")") : ""));
    }
    Json body = Json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
    for (int32_t p : partitions) {
      const Json* part = nullptr;
      if (body.is_object() && body["data"].is_object() && body["data"]["partitions"].is_object()) {
        auto it = body["data"]["partitions"].find(std::to_string(p));
        if (it != body["data"]["partitions"].end()) part = &*it;
      }
      if (part == nullptr || !ReadFitInputs(*part, inputs[p])) {
        return absl::InternalError(
            absl::StrCat("instance ", id, " answered fit inputs of partition ", p, " that do not parse"));
      }
    }
  }
  return inputs;
}

Result<state::v1::ChurnModel> ApiService::FitChurnModels(const projections::ChurnModelOptions& options) {
  Impl& s = *impl_;
  ASSIGN_OR_RETURN(int32_t count, s.PartitionCount());
  if (!s.Clustered()) return ChurnView(s.store, count).Fit(absl::InfiniteFuture(), options);
  // As Fit: as of now, or of the latest purchase when a clock is ahead (then
  // a second round as of it).
  int64_t as_of_ms = absl::ToUnixMillis(absl::Now());
  for (int round = 0;; ++round) {
    ASSIGN_OR_RETURN(auto parts, s.ClusterFitInputs(as_of_ms, options.period));
    projections::FitInputs all;
    for (const auto& [p, inputs] : parts) all.Append(inputs);  // in partition order, as one store scans
    if (all.latest_purchase_ms > as_of_ms && round == 0) {
      as_of_ms = all.latest_purchase_ms;
      continue;
    }
    return ChurnView::FitOn(all, as_of_ms, options);
  }
}

Status ApiService::Impl::UseClusterHistograms(ChurnView& view, const HttpRequest& request) {
  if (!Clustered()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto histograms, ClusterHistograms(request));
  view.UseHistograms(std::move(histograms));
  return absl::OkStatus();
}

Json ApiService::Impl::ClusterJson() {
  Json instances = Json::array();
  auto heard = options.directory->Members();
  for (const auto& [id, member] : heard) {
    auto listed = [](const auto& states) {
      Json out = Json::array();
      for (const auto& p : states) {
        out.push_back({{"partition", p.partition()},
                       {"applied_offset", p.applied()},
                       {"lag_records", std::max<int64_t>(p.end() - p.applied(), 0)}});
      }
      return out;
    };
    instances.push_back({{"instance_id", id},
                         {"url", member.member.advertised_url()},
                         {"live", member.live},
                         {"leaving", member.member.leaving()},
                         {"last_heard_ms", member.since.count()},
                         {"version", member.member.version()},
                         {"owned", listed(member.member.owned())},
                         {"standby", listed(member.member.standby())}});
  }
  Json partitions = Json::array();
  std::vector<int32_t> unowned;
  if (auto count = PartitionCount(); count.ok()) {
    const auto owners = options.directory->Owners(*count);
    for (int32_t p = 0; p < *count; ++p) {
      auto owner = owners.find(p);
      const bool owned = owner != owners.end();
      if (!owned) unowned.push_back(p);
      partitions.push_back(
          {{"partition", p},
           {"owner", owned ? Json(owner->second.instance_id) : Json(nullptr)},
           {"by_standby", owned && owner->second.standby},
           {"lag_records",
            owned ? Json(std::max<int64_t>(owner->second.end - owner->second.applied, 0)) : Json(nullptr)}});
    }
  }
  return {{"this_instance", options.instance_id},
          {"instances", std::move(instances)},
          {"partitions", std::move(partitions)},
          {"unowned_partitions", unowned}};
}

// With no members topic: this instance alone, and what it applies.
Json ApiService::Impl::AloneJson() {
  Json owned = Json::array(), partitions = Json::array();
  std::vector<int32_t> unowned;
  if (progress != nullptr) {
    for (const auto& [p, state] : progress->Snapshot()) {
      const int64_t lag = std::max<int64_t>(state.end - state.applied, 0);
      if (state.owned) owned.push_back({{"partition", p}, {"applied_offset", state.applied}, {"lag_records", lag}});
      if (!state.owned) unowned.push_back(p);
      partitions.push_back({{"partition", p},
                            {"owner", state.owned ? Json(options.instance_id) : Json(nullptr)},
                            {"lag_records", state.owned ? Json(lag) : Json(nullptr)}});
    }
  }
  Json instances = Json::array();
  if (progress != nullptr) {
    instances.push_back({{"instance_id", options.instance_id},
                         {"url", ""},
                         {"live", true},
                         {"leaving", false},
                         {"last_heard_ms", 0},
                         {"version", ""},
                         {"owned", std::move(owned)}});
  }
  return {{"this_instance", options.instance_id},
          {"instances", std::move(instances)},
          {"partitions", std::move(partitions)},
          {"unowned_partitions", unowned}};
}

void ApiService::Impl::AddClusterRoutes() {
  // Between instances: the churn histograms of the partitions asked for,
  // for a population's R, F and M quintiles (ClusterHistograms).
  Add("GET", "/v1/internal/churn/histograms", Scope::kRead, kQuick, [this](const HttpRequest& request, const Params&) {
    auto asked = PartitionsParam(request);
    if (request.Header(kForwardedBy).empty() || !asked || !Clustered()) {
      return ErrorResponse(404, "not_found", "a route between instances of one group");
    }
    if (auto bad = NotAllHere(*asked, /*caught_up=*/false)) return *bad;
    auto count = PartitionCount();
    if (!count.ok()) return StatusResponse(count.status());
    auto h = ChurnView(store, *count).HistogramsOf([&](int32_t p) { return asked->contains(p); });
    if (!h.ok()) return StatusResponse(h.status());
    Json monetary = Json::object();
    for (const auto& [currency, histogram] : h->monetary) monetary[currency] = HistogramJson(histogram);
    return JsonResponse(200, Json{{"data",
                                   {{"last_purchase_day", HistogramJson(h->last_purchase_day)},
                                    {"purchase_days", HistogramJson(h->purchase_days)},
                                    {"monetary", std::move(monetary)},
                                    {"buyers", h->buyers}}}}
                                 .dump());
  });

  // Between instances: the churn models' fit inputs of the partitions asked
  // for, one per partition (ClusterFitInputs).
  Add("GET", "/v1/internal/churn/fit-inputs", Scope::kRead, kSlow, [this](const HttpRequest& request, const Params&) {
    auto asked = PartitionsParam(request);
    if (request.Header(kForwardedBy).empty() || !asked || !Clustered()) {
      return ErrorResponse(404, "not_found", "a route between instances of one group");
    }
    if (auto bad = NotAllHere(*asked)) return *bad;
    int64_t as_of_ms = 0;
    const std::string* as_of = request.Param("as_of_ms");
    if (as_of == nullptr) return ErrorResponse(400, "invalid_argument", "as_of_ms: required", "as_of_ms");
    // (from_chars leaves ptr past the digits of a number too large: ec says so.)
    if (auto [end, error] = std::from_chars(as_of->data(), as_of->data() + as_of->size(), as_of_ms);
        error != std::errc() || end != as_of->data() + as_of->size()) {
      return ErrorResponse(400, "invalid_argument", fmt::format("as_of_ms: \"{}\" is not unix milliseconds", *as_of),
                           "as_of_ms");
    }
    auto period = projections::ModelPeriodNamed(request.Param("period") ? *request.Param("period") : "");
    if (!period) return ErrorResponse(400, "invalid_argument", "period: day or week", "period");
    auto count = PartitionCount();
    if (!count.ok()) return StatusResponse(count.status());
    Json partitions = Json::object();
    for (int32_t p : *asked) {
      auto inputs = ChurnView(store, *count).FitInputsOf(as_of_ms, *period, [p](int32_t q) { return q == p; });
      if (!inputs.ok()) return StatusResponse(inputs.status());
      Json histories = Json::array();
      for (const auto& h : inputs->histories) histories.push_back({h.frequency, h.recency, h.age});
      Json spend = Json::object();
      for (const auto& [currency, repeat] : inputs->spend) {
        Json values = Json::array();
        for (const auto& r : repeat) values.push_back({r.frequency, r.mean_value});
        spend[currency] = std::move(values);
      }
      partitions[std::to_string(p)] = {{"latest_purchase_ms", inputs->latest_purchase_ms},
                                       {"later", inputs->later},
                                       {"histories", std::move(histories)},
                                       {"spend", std::move(spend)}};
    }
    return JsonResponse(200, Json{{"data", {{"partitions", std::move(partitions)}}}}.dump());
  });

  Add("GET", "/v1/cluster", Scope::kRead, kQuick, [this](const HttpRequest&, const Params&) {
    return JsonResponse(200, Json{{"data", options.directory ? ClusterJson() : AloneJson()}}.dump());
  });
}

std::vector<int32_t> ApiService::Impl::PartitionsWithoutOwner() {
  std::vector<int32_t> missing;
  if (!Clustered()) return missing;
  auto count = PartitionCount();
  if (!count.ok()) return missing;
  const auto owners = options.directory->Owners(*count, options.instance_id);
  const auto here = AnsweredHere();
  for (int32_t p = 0; p < *count; ++p) {
    if (!here(p) && !owners.contains(p)) missing.push_back(p);
  }
  return missing;
}

}  // namespace rapport::api
