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
  return Read(answer->json, answer->partition);
}

Json ApiService::Impl::Freshness(std::optional<int32_t> partition) {
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
    if (auto partial = NeedsEveryPartition()) return *partial;
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
        if (auto partial = NeedsEveryPartition()) return *partial;
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
        if (auto partial = NeedsEveryPartition()) return *partial;
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
    if (auto partial = NeedsEveryPartition()) return *partial;
    return Serve(request, [&](int32_t partitions) -> Result<Answer> {
      ASSIGN_OR_RETURN(auto view, ChurnView(store, partitions).Population(as_of));
      Json data = {{"as_of", events::FormatTime(as_of)}, {"customers", view.customers}};
      render(view, data);
      return Answer{data.dump(), std::nullopt};
    });
  };
  Add("GET", "/v1/segments", Scope::kRead, kSlow, [this, population](const HttpRequest& request, const Params&) {
    if (Clustered()) {  // gathered from every instance
      absl::Time as_of;
      if (auto bad = ParseAsOf(request, as_of)) return *bad;
      if (auto wait = WaitForAfter(request)) return *wait;
      return ServeSegments(request, as_of);
    }
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
        if (auto partial = NeedsEveryPartition()) return *partial;
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
    if (auto partial = NeedsEveryPartition()) return *partial;
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

}  // namespace rapport::api
