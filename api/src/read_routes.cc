// Every read the API serves takes one path (Serve): its parameters parsed
// and checked, the ?after= wait for a position, the partition count, the
// view's answer (StoreReads, shared with `rapport query`), and the answer
// with how fresh it is.
#include "service_impl.h"

namespace rapport::api {

Result<int32_t> ApiService::Impl::PartitionCount() {
  if (int32_t known = known_partition_count.load(std::memory_order_relaxed); known > 0) return known;
  auto count = consumers::StoredPartitionCount(store, options.events_topic);
  if (!count.ok() && count.status().code() == absl::StatusCode::kNotFound) {
    return absl::UnavailableError("the projections have not started consuming yet");
  }
  if (count.ok()) known_partition_count.store(*count, std::memory_order_relaxed);
  return count;
}

HttpResponse ApiService::Impl::Serve(const HttpRequest& request, const ViewRead& read) {
  if (auto wait = WaitForAfter(request)) return *wait;
  auto partitions = PartitionCount();
  if (!partitions.ok()) return StatusResponse(partitions.status());
  auto answer = read(*partitions);
  if (!answer.ok()) return StatusResponse(answer.status());
  // A customer whose partition moved here and is still being applied has
  // only part of their history here yet: no answer rather than a wrong one.
  if (Clustered() && answer->partition && progress != nullptr && progress->CatchingUp(*answer->partition)) {
    return CatchingUp({*answer->partition});
  }
  return Read(answer->json, answer->partition);
}

std::map<int32_t, consumers::RunnerProgress::Partition> ApiService::Impl::PartitionStates() {
  std::map<int32_t, consumers::RunnerProgress::Partition> state;
  if (progress != nullptr) {
    state = progress->Snapshot();
  } else if (auto stored = consumers::StoredOffsets(store, options.events_topic); stored.ok()) {
    for (const auto& [p, offset] : *stored) state[p] = {offset, -1};
  }
  return state;
}

Json ApiService::Impl::Freshness(std::optional<int32_t> partition) {
  if (!partition) return FreshnessOf(nullptr);
  Json out = Json::object();
  const auto state = PartitionStates();
  auto lag = [](const consumers::RunnerProgress::Partition& p) -> Json {
    return p.end < 0 ? Json(nullptr) : Json(std::max<int64_t>(p.end - p.applied, 0));
  };
  auto it = state.find(*partition);
  out["partition"] = *partition;
  out["applied_offset"] = it == state.end() ? Json(nullptr) : Json(it->second.applied);
  out["lag_records"] = it == state.end() ? Json(nullptr) : lag(it->second);
  // Answered by a standby (its owner is gone, or did not answer).
  if (it != state.end() && !it->second.owned && it->second.standby) out["standby"] = true;
  AddRebuild(out);
  return out;
}

Json ApiService::Impl::FreshnessOf(const std::function<bool(int32_t)>& in) {
  Json out = Json::object();
  int64_t total = 0;
  bool known = progress != nullptr;
  Json applied = Json::object();
  for (const auto& [p, s] : PartitionStates()) {
    if (in && !in(p)) continue;
    applied[std::to_string(p)] = s.applied;
    if (s.end >= 0) total += std::max<int64_t>(s.end - s.applied, 0);
  }
  out["applied_offsets"] = applied;
  out["lag_records"] = known ? Json(total) : Json(nullptr);
  AddRebuild(out);
  return out;
}

void ApiService::Impl::AddRebuild(Json& out) {
  if (progress == nullptr) return;
  auto rebuild = progress->rebuild();
  if (rebuild.families.empty()) return;
  out["rebuilding"] = {{"projections", rebuild.families}, {"records_behind", rebuild.behind}};
}

HttpResponse ApiService::Impl::Read(const std::string& data_json, std::optional<int32_t> partition) {
  return JsonResponse(200, fmt::format("{{\"data\":{},\"freshness\":{}}}", data_json, Freshness(partition).dump()));
}

std::optional<HttpResponse> ApiService::Impl::WaitForAfter(const HttpRequest& request) {
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
    // Another instance's partition: its owner waits, asked with the same ?after=.
    if (Clustered() && !OwnedHere(partition) && !progress->Standby(partition)) continue;
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

std::optional<HttpResponse> ApiService::Impl::PastTheEnd(int32_t partition, int64_t offset,
                                                         Clock::time_point deadline) {
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
    return ServeLookup(request, kind->second, *request.Param(std::string(kind->first)));
  });

  Add("GET", "/v1/customers/{id}", Scope::kRead, kQuick, [this](const HttpRequest& request, const Params& params) {
    return ServeCustomer(request, params.at("id"),
                         [&](int32_t partitions) { return Reads(partitions).Profile(params.at("id")); });
  });

  Add("GET", "/v1/customers/{id}/churn", Scope::kRead, kQuick,
      [this](const HttpRequest& request, const Params& params) {
        absl::Time as_of;
        if (auto bad = ParseAsOf(request, as_of)) return *bad;
        return ServeCustomer(request, params.at("id"), [&](int32_t partitions) -> Result<Answer> {
          if (!Clustered()) return Reads(partitions).Churn(params.at("id"), as_of);
          // The R, F and M quintiles against every partition's customers.
          ASSIGN_OR_RETURN(auto histograms, ClusterHistograms(request));
          return Reads(partitions).Churn(params.at("id"), as_of, &histograms);
        });
      });

  Add("GET", "/v1/customers/{id}/reviews", Scope::kRead, kQuick,
      [this](const HttpRequest& request, const Params& params) {
        return ServeCustomer(request, params.at("id"),
                             [&](int32_t partitions) { return Reads(partitions).CustomerReviews(params.at("id")); });
      });
}

}  // namespace rapport::api
