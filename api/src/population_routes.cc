// Reads of every customer (targeting, a subject's reviews, segments, their
// members, the customers most at risk, revenue concentration). Each is made
// of parts that add up exactly, one per set of partitions (Gather): on one
// instance a single part, on several one per instance, merged here into the
// answer a single instance gives.
#include <algorithm>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "service_impl.h"

namespace rapport::api {
namespace {

using projections::ReviewsView;

// A part of a page: its items (rendered), each item's cursor, and whether
// the part holds more after them.
Json PagePart(std::vector<std::string> items, const std::vector<std::string>& cursors, bool more) {
  return {{"items", std::move(items)}, {"cursors", cursors}, {"more", more}};
}

struct MergedPage {
  std::vector<std::string> items;
  std::string next_cursor;
};

// The first `limit` items of the parts' pages in cursor order (decoded:
// the keys or times they stand for), `larger_first` for newest-first pages.
// Each part holds its first `limit` after the same cursor, so the page's
// items are among them; there is more when a part said so or an item is left.
Result<MergedPage> MergePages(const std::vector<Json>& parts, size_t limit, bool larger_first) {
  struct Item {
    std::string order, cursor, text;
  };
  std::vector<Item> all;
  bool more = false;
  for (const Json& part : parts) {
    const Json& items = part["items"];
    const Json& cursors = part["cursors"];
    if (!items.is_array() || !cursors.is_array() || items.size() != cursors.size() || !part["more"].is_boolean()) {
      return absl::InternalError("a part of the page does not parse");
    }
    more = more || part["more"].get<bool>();
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string() || !cursors[i].is_string()) return absl::InternalError("a page item does not parse");
      Item item{"", cursors[i].get<std::string>(), items[i].get<std::string>()};
      if (!absl::WebSafeBase64Unescape(item.cursor, &item.order)) {
        return absl::InternalError("a page item's cursor does not parse");
      }
      all.push_back(std::move(item));
    }
  }
  std::sort(all.begin(), all.end(),
            [&](const Item& a, const Item& b) { return larger_first ? a.order > b.order : a.order < b.order; });
  MergedPage page;
  more = more || all.size() > limit;
  for (size_t i = 0; i < all.size() && i < limit; ++i) page.items.push_back(std::move(all[i].text));
  if (more && !page.items.empty()) page.next_cursor = all[std::min(limit, all.size()) - 1].cursor;
  return page;
}

std::string JoinItems(const std::vector<std::string>& items) { return "[" + absl::StrJoin(items, ",") + "]"; }

bool IsCount(const Json& value) { return value.is_number_integer() && value.get<int64_t>() >= 0; }

// Segments and revenue concentration: a PopulationTally in JSON and back.
Json TallyJson(const projections::PopulationTally& tally) {
  Json revenue = Json::object();
  for (const auto& [currency, r] : tally.revenue) {
    revenue[currency] = {
        {"customers", r.customers}, {"total_minor", r.total_minor}, {"largest_minor", r.largest_minor}};
  }
  return {{"customers", tally.customers}, {"segments", tally.customers_per_segment}, {"revenue", std::move(revenue)}};
}

Result<projections::PopulationTally> TallyFrom(const Json& json) {
  projections::PopulationTally tally;
  auto bad = [] { return absl::InternalError("a part of the population does not parse"); };
  if (!IsCount(json["customers"]) || !json["segments"].is_object() || !json["revenue"].is_object()) return bad();
  tally.customers = json["customers"].get<int64_t>();
  for (const auto& [name, n] : json["segments"].items()) {
    if (!IsCount(n)) return bad();
    tally.customers_per_segment[name] = n.get<int64_t>();
  }
  for (const auto& [currency, r] : json["revenue"].items()) {
    if (!IsCount(r["customers"]) || !IsCount(r["total_minor"]) || !r["largest_minor"].is_array()) return bad();
    auto& revenue = tally.revenue[currency];
    revenue.customers = r["customers"].get<int64_t>();
    revenue.total_minor = r["total_minor"].get<int64_t>();
    for (const Json& v : r["largest_minor"]) {
      if (!IsCount(v)) return bad();
      revenue.largest_minor.push_back(v.get<int64_t>());
    }
  }
  return tally;
}

// The sum of the parts, keeping the `revenue_values` largest spends.
Result<projections::PopulationTally> SumTallies(const std::vector<Json>& parts, size_t revenue_values) {
  projections::PopulationTally sum;
  for (const Json& part : parts) {
    ASSIGN_OR_RETURN(auto tally, TallyFrom(part));
    sum.Add(tally, revenue_values);
  }
  return sum;
}

}  // namespace

// Who to target: customers by spend on a category, paged in storage order.
void ApiService::Impl::AddTargetingRoute() {
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
    const std::string cursor = request.Param("cursor") ? *request.Param("cursor") : "";
    Gathered gathered = Gather(request, [&](int32_t partitions, const In& in) -> Result<Json> {
      ASSIGN_OR_RETURN(auto page, CustomerProfileView(store, partitions).Targeted(query, limit, cursor, in));
      std::vector<std::string> items;
      for (const auto& profile : page.customers) items.push_back(CustomerProfileView::ToJson(profile, kCompact));
      return PagePart(std::move(items), page.cursors, !page.next_cursor.empty());
    });
    if (gathered.answer) return *gathered.answer;
    auto page = MergePages(gathered.parts, limit, /*larger_first=*/false);
    if (!page.ok()) return StatusResponse(page.status());
    return GatheredRead(gathered, fmt::format("{{\"customers\":{},\"next_cursor\":{}}}", JoinItems(page->items),
                                              CursorJson(page->next_cursor)));
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
        const std::string& id = params.at("id");
        Gathered gathered = Gather(request, [&](int32_t partitions, const In& in) -> Result<Json> {
          ASSIGN_OR_RETURN(auto t, ReviewsView(store, partitions).Totals(type, id, as_of, in));
          return Json{{"count", t.count},           {"sum", t.sum},           {"histogram", t.histogram},
                      {"type_count", t.type_count}, {"type_sum", t.type_sum}, {"recent_count", t.recent_count},
                      {"recent_sum", t.recent_sum}};
        });
        if (gathered.answer) return *gathered.answer;
        projections::SubjectTotals sum;
        for (const Json& part : gathered.parts) {
          projections::SubjectTotals t;
          const Json& h = part["histogram"];
          bool ok = h.is_array() && h.size() == t.histogram.size();
          for (const char* field : {"count", "sum", "type_count", "type_sum", "recent_count", "recent_sum"}) {
            ok = ok && IsCount(part[field]);
          }
          for (size_t i = 0; ok && i < t.histogram.size(); ++i) ok = IsCount(h[i]);
          if (!ok) return ErrorResponse(500, "internal", "a part of the subject's totals does not parse");
          t = {.count = part["count"].get<int64_t>(),
               .sum = part["sum"].get<int64_t>(),
               .type_count = part["type_count"].get<int64_t>(),
               .type_sum = part["type_sum"].get<int64_t>(),
               .recent_count = part["recent_count"].get<int64_t>(),
               .recent_sum = part["recent_sum"].get<int64_t>()};
          for (size_t i = 0; i < t.histogram.size(); ++i) t.histogram[i] = h[i].get<int64_t>();
          sum.Add(t);
        }
        auto summary = ReviewsView::SummaryOf(type, id, sum);
        if (!summary.ok()) return StatusResponse(summary.status());
        return GatheredRead(gathered, ReviewsView::ToJson(*summary, kCompact));
      });

  Add("GET", "/v1/subjects/{type}/{id}/reviews/items", Scope::kRead, kQuick,
      [this, subject](const HttpRequest& request, const Params& params) {
        v1::SubjectType type;
        if (auto bad = subject(params, type)) return *bad;
        size_t limit = 0;
        if (auto bad = ParseLimit(request, limit, 20)) return *bad;
        const std::string cursor = request.Param("cursor") ? *request.Param("cursor") : "";
        // The parts' reviews travel as records, so the page renders them as
        // a single instance does.
        Gathered gathered = Gather(request, [&](int32_t partitions, const In& in) -> Result<Json> {
          ASSIGN_OR_RETURN(auto page, ReviewsView(store, partitions).Reviews(type, params.at("id"), limit, cursor, in));
          std::vector<std::string> items;
          for (const auto& review : page.reviews)
            items.push_back(absl::WebSafeBase64Escape(review.SerializeAsString()));
          return PagePart(std::move(items), page.cursors, !page.next_cursor.empty());
        });
        if (gathered.answer) return *gathered.answer;
        auto merged = MergePages(gathered.parts, limit, /*larger_first=*/true);
        if (!merged.ok()) return StatusResponse(merged.status());
        projections::ReviewPage page;
        page.next_cursor = merged->next_cursor;
        for (const std::string& item : merged->items) {
          std::string bytes;
          if (!absl::WebSafeBase64Unescape(item, &bytes) || !page.reviews.emplace_back().ParseFromString(bytes)) {
            return ErrorResponse(500, "internal", "a part's review does not parse");
          }
        }
        return GatheredRead(gathered, ReviewsView::ToJson(page, kCompact));
      });
}

// Scans of every customer as of a time: segments, revenue concentration,
// a segment's members, the customers most at risk.
void ApiService::Impl::AddPopulationRoutes() {
  // Segments and Pareto: a tally of every customer as of T. Pareto's top 20%
  // needs each part's largest spends: at most as many as a fifth of every
  // buyer (asked for as ?revenue_values=; a second round when the parts'
  // counts show more are needed, as when the histograms' count lags).
  using Render = std::function<void(const projections::PopulationView&, Json&)>;
  auto population = [this](const HttpRequest& request, bool revenue, const Render& render) {
    absl::Time as_of;
    if (auto bad = ParseAsOf(request, as_of)) return *bad;
    size_t values = 0;
    if (revenue && !Clustered()) values = std::numeric_limits<size_t>::max();
    if (const std::string* asked = request.Param("revenue_values");
        asked && revenue && AskedByAnotherInstance(request)) {
      auto [end, error] = std::from_chars(asked->data(), asked->data() + asked->size(), values);
      if (error != std::errc() || end != asked->data() + asked->size()) {
        return ErrorResponse(400, "invalid_argument", "revenue_values: a whole number", "revenue_values");
      }
    } else if (revenue && Clustered()) {
      auto histograms = ClusterHistograms(request);
      if (!histograms.ok()) return StatusResponse(histograms.status());
      values = projections::TopFifth(static_cast<size_t>(std::max<int64_t>(histograms->buyers, 0)));
    }
    auto tally = [&](int32_t partitions, const In& in) -> Result<Json> {
      ChurnView view(store, partitions);
      RETURN_IF_ERROR(UseClusterHistograms(view, request));
      ASSIGN_OR_RETURN(auto part, view.Tally(as_of, in, values));
      return TallyJson(part);
    };
    Gathered gathered = Gather(request, tally, fmt::format("&revenue_values={}", values));
    if (gathered.answer) return *gathered.answer;
    auto sum = SumTallies(gathered.parts, values);
    if (!sum.ok()) return StatusResponse(sum.status());
    if (revenue && sum->ValuesNeeded() > values) {
      values = sum->ValuesNeeded();
      gathered = Gather(request, tally, fmt::format("&revenue_values={}", values));
      if (gathered.answer) return *gathered.answer;
      sum = SumTallies(gathered.parts, values);
      if (!sum.ok()) return StatusResponse(sum.status());
    }
    const projections::PopulationView view = ChurnView::Summarize(*sum);
    Json data = {{"as_of", events::FormatTime(as_of)}, {"customers", view.customers}};
    render(view, data);
    return GatheredRead(gathered, data.dump());
  };
  Add("GET", "/v1/segments", Scope::kRead, kSlow, [population](const HttpRequest& request, const Params&) {
    return population(request, /*revenue=*/false, [](const projections::PopulationView& view, Json& data) {
      Json segments = Json::object();
      for (const auto& [name, count] : view.customers_per_segment) segments[name] = count;
      data["segments"] = std::move(segments);
    });
  });

  Add("GET", "/v1/insights/pareto", Scope::kRead, kSlow, [population](const HttpRequest& request, const Params&) {
    return population(request, /*revenue=*/true, [](const projections::PopulationView& view, Json& data) {
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
        const std::string cursor = request.Param("cursor") ? *request.Param("cursor") : "";
        Gathered gathered = Gather(request, [&](int32_t partitions, const In& in) -> Result<Json> {
          ChurnView view(store, partitions);
          RETURN_IF_ERROR(UseClusterHistograms(view, request));
          ASSIGN_OR_RETURN(auto page, view.Members(*segment, as_of, limit, cursor, in));
          std::vector<std::string> items;
          for (const auto& a : page.customers) items.push_back(ChurnView::ToJson(a, as_of, kCompact));
          return PagePart(std::move(items), page.cursors, !page.next_cursor.empty());
        });
        if (gathered.answer) return *gathered.answer;
        auto page = MergePages(gathered.parts, limit, /*larger_first=*/false);
        if (!page.ok()) return StatusResponse(page.status());
        return GatheredRead(gathered, fmt::format("{{\"segment\":{},\"customers\":{},\"next_cursor\":{}}}",
                                                  Json(std::string(projections::SegmentName(*segment))).dump(),
                                                  JoinItems(page->items), CursorJson(page->next_cursor)));
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
    // Each part: its customers per currency and its `limit` most at risk in
    // the currency it ranked, with what orders them.
    auto ranked = [&](int32_t partitions, const In& in) -> Result<Json> {
      ChurnView view(store, partitions);
      RETURN_IF_ERROR(UseClusterHistograms(view, request));
      ASSIGN_OR_RETURN(auto top, view.AtRisk(as_of, limit, currency, in));
      Json items = Json::array(), order = Json::array();
      for (const auto& a : top.customers) {
        items.push_back(ChurnView::ToJson(a, as_of, kCompact));
        order.push_back({a.value_at_risk, a.stats.customer_id()});
      }
      return Json{{"currency", top.currency},
                  {"customers_per_currency", top.customers_per_currency},
                  {"items", std::move(items)},
                  {"order", std::move(order)}};
    };
    Gathered gathered = Gather(request, ranked);
    if (gathered.answer) return *gathered.answer;
    std::map<std::string, int64_t> per_currency;
    for (const Json& part : gathered.parts) {
      if (!part["customers_per_currency"].is_object()) return ErrorResponse(500, "internal", "a part does not parse");
      for (const auto& [code, n] : part["customers_per_currency"].items()) {
        if (!IsCount(n)) return ErrorResponse(500, "internal", "a part does not parse");
        per_currency[code] += n.get<int64_t>();
      }
    }
    // Every customer's most common currency may not be each part's: those
    // parts rank it again.
    const std::string chosen = currency.empty() ? projections::MostCommonCurrency(per_currency) : currency;
    // (A code another instance sent goes into a request target: three letters only.)
    if (!chosen.empty() && (chosen.size() != 3 ||
                            !std::all_of(chosen.begin(), chosen.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))) {
      return ErrorResponse(500, "internal", "a part names a currency that is not an ISO 4217 code");
    }
    const bool all_chose_it = std::all_of(gathered.parts.begin(), gathered.parts.end(),
                                          [&](const Json& part) { return part["currency"] == chosen; });
    if (!all_chose_it) {
      currency = chosen;
      gathered = Gather(request, ranked, "&currency=" + chosen);
      if (gathered.answer) return *gathered.answer;
    }
    struct Ranked {
      double value_at_risk;
      std::string customer_id, text;
    };
    std::vector<Ranked> all;
    for (const Json& part : gathered.parts) {
      const Json &items = part["items"], &order = part["order"];
      if (!items.is_array() || !order.is_array() || items.size() != order.size()) {
        return ErrorResponse(500, "internal", "a part of the ranking does not parse");
      }
      for (size_t i = 0; i < items.size(); ++i) {
        const Json& o = order[i];
        if (!items[i].is_string() || !o.is_array() || o.size() != 2 || !o[0].is_number() || !o[1].is_string()) {
          return ErrorResponse(500, "internal", "a part of the ranking does not parse");
        }
        all.push_back({o[0].get<double>(), o[1].get<std::string>(), items[i].get<std::string>()});
      }
    }
    std::sort(all.begin(), all.end(), [](const Ranked& x, const Ranked& y) {  // as ChurnView::AtRisk ranks
      if (x.value_at_risk != y.value_at_risk) return x.value_at_risk > y.value_at_risk;
      return x.customer_id < y.customer_id;
    });
    std::vector<std::string> items;
    for (size_t i = 0; i < all.size() && i < limit; ++i) items.push_back(std::move(all[i].text));
    return GatheredRead(
        gathered, fmt::format("{{\"as_of\":\"{}\",\"currency\":{},\"customers_per_currency\":{},\"customers\":{}}}",
                              events::FormatTime(as_of), chosen.empty() ? "null" : Json(chosen).dump(),
                              Json(per_currency).dump(), JoinItems(items)));
  });
}

}  // namespace rapport::api
