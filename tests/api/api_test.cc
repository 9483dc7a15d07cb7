// The HTTP API of `rapport run --http`, route by route, against the real
// broker: what each route answers, auth, bad input, read-your-writes,
// metrics, keep-alive, limits and graceful shutdown.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "api_instance.h"
#include "rapport/api/ingest.h"
#include "rapport/testing/command.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/status.h"

namespace rapport {
namespace {

using nlohmann::json;
using testing::ApiKeys;
using testing::JsonOf;

// A valid purchase by `customer` of `amount` EUR in `category`.
std::string Purchase(const std::string& customer, const std::string& amount, const std::string& category) {
  return json{{"customer_id", customer},
              {"occurred_at", "2026-11-01T10:00:00Z"},
              {"source", "web/shop"},
              {"channel", "CHANNEL_WEB"},
              {"purchase_completed",
               {{"order_id", "o-" + customer + "-" + amount},
                {"total", {{"currency", "EUR"}, {"amount", amount}}},
                {"items",
                 {{{"sku", "sku-1"},
                   {"category", category},
                   {"quantity", 1},
                   {"unit_price", {{"currency", "EUR"}, {"amount", amount}}}}}}}}}
      .dump();
}

std::string Review(const std::string& customer, const std::string& hotel, int rating, int minute) {
  return json{{"customer_id", customer},
              {"occurred_at", "2026-11-01T10:" + std::string(minute < 10 ? "0" : "") + std::to_string(minute) + ":00Z"},
              {"source", "web/reviews"},
              {"channel", "CHANNEL_WEB"},
              {"review_submitted",
               {{"review_id", "r-" + customer + "-" + std::to_string(minute)},
                {"subject_type", "SUBJECT_TYPE_HOTEL"},
                {"subject_id", hotel},
                {"rating", rating}}}}
      .dump();
}

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_OK(testing::CheckBrokerAnswers(testing::TestBroker()));
    api_ = new testing::ApiInstance("routes", "max_in_flight = 4\n");
    ASSERT_TRUE(api_->Start());
  }
  static void TearDownTestSuite() {
    delete api_;
    api_ = nullptr;
  }
  static testing::ApiInstance* api_;
};
testing::ApiInstance* Api::api_ = nullptr;

TEST_F(Api, ProfileLookupChurnAndReviewsOfACustomer) {
  auto profile = api_->Get("/v1/customers/c-1001");
  ASSERT_TRUE(profile);
  ASSERT_EQ(profile->status, 200) << profile->body;
  json p = JsonOf(profile);
  EXPECT_EQ(p["data"]["customer_id"], "c-1001");
  EXPECT_EQ(p["data"]["orders"]["revenue"]["EUR"], "141.30");
  EXPECT_EQ(p["data"]["identities"][0]["value"], "LC-7781-0042");
  // Freshness of the customer's own partition.
  EXPECT_TRUE(p["freshness"]["partition"].is_number());
  EXPECT_EQ(p["freshness"]["lag_records"], 0);

  for (const std::string query : {"email=alice.martin%40example.com", "card=LC-7781-0042"}) {
    auto found = api_->Get("/v1/customers/lookup?" + query);
    ASSERT_EQ(found->status, 200) << query << ": " << found->body;
    EXPECT_EQ(JsonOf(found)["data"]["customer_id"], "c-1001");
  }

  auto churn = api_->Get("/v1/customers/c-1001/churn?as_of=2026-06-01");
  ASSERT_EQ(churn->status, 200) << churn->body;
  json c = JsonOf(churn)["data"];
  EXPECT_EQ(c["as_of"], "2026-06-01T00:00:00.000Z");
  EXPECT_EQ(c["purchases"], 2);
  EXPECT_EQ(c["monetary"]["total"], "123.80");
  EXPECT_TRUE(c["segment"].is_string());

  auto written = api_->Get("/v1/customers/c-1003/reviews");
  ASSERT_EQ(written->status, 200) << written->body;
  ASSERT_EQ(JsonOf(written)["data"]["reviews"].size(), 1u);

  EXPECT_EQ(api_->Get("/v1/customers/nobody")->status, 404);
  EXPECT_EQ(JsonOf(api_->Get("/v1/customers/nobody"))["error"]["code"], "not_found");
  EXPECT_EQ(api_->Get("/v1/customers/lookup?email=nobody%40example.com")->status, 404);
}

TEST_F(Api, PopulationRoutesSegmentsParetoAtRiskAndTargeting) {
  auto segments = api_->Get("/v1/segments?as_of=2026-06-01");
  ASSERT_EQ(segments->status, 200) << segments->body;
  json s = JsonOf(segments)["data"];
  int64_t total = 0;
  for (const auto& [name, count] : s["segments"].items()) total += count.get<int64_t>();
  EXPECT_EQ(total, s["customers"].get<int64_t>());
  EXPECT_TRUE(JsonOf(segments)["freshness"]["applied_offsets"].is_object());

  // Every member of every segment, page by page (1 per page), adds up to the counts.
  int64_t listed = 0;
  for (const auto& [name, count] : s["segments"].items()) {
    std::string cursor;
    std::set<std::string> seen;
    for (int page = 0; page < 100; ++page) {
      std::string escaped;  // segment names have spaces
      for (char ch : name) escaped += ch == ' ' ? std::string("%20") : std::string(1, ch);
      std::string path = "/v1/segments/" + escaped + "/customers?as_of=2026-06-01&limit=1";
      if (!cursor.empty()) path += "&cursor=" + cursor;
      auto members = api_->Get(path);
      ASSERT_EQ(members->status, 200) << path << ": " << members->body;
      json m = JsonOf(members)["data"];
      for (const auto& customer : m["customers"]) {
        EXPECT_EQ(customer["segment"], name);
        EXPECT_TRUE(seen.insert(customer["customer_id"]).second) << "listed twice";
      }
      if (m["next_cursor"].is_null()) break;
      cursor = m["next_cursor"];
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), count.get<int64_t>()) << name;
    listed += static_cast<int64_t>(seen.size());
  }
  EXPECT_EQ(listed, total);
  EXPECT_EQ(api_->Get("/v1/segments/at-risk/customers?as_of=2026-06-01")->status, 200);  // '-' for ' '
  EXPECT_EQ(api_->Get("/v1/segments/no-such-segment/customers")->status, 404);

  auto pareto = api_->Get("/v1/insights/pareto?as_of=2026-06-01");
  ASSERT_EQ(pareto->status, 200) << pareto->body;
  EXPECT_TRUE(JsonOf(pareto)["data"]["top_20_percent_revenue_share"].contains("EUR"));

  auto at_risk = api_->Get("/v1/churn/at-risk?as_of=2026-12-31&limit=10");
  ASSERT_EQ(at_risk->status, 200) << at_risk->body;
  json risky = JsonOf(at_risk)["data"]["customers"];
  const std::string ranked = JsonOf(at_risk)["data"]["currency"];
  ASSERT_GE(risky.size(), 1u);
  for (size_t i = 0; i < risky.size(); ++i) {
    EXPECT_EQ(risky[i]["value_at_risk"]["currency"], ranked);  // amounts in different currencies do not compare
    if (i == 0) continue;
    EXPECT_GE(std::stod(risky[i - 1]["value_at_risk"]["amount"].get<std::string>()),
              std::stod(risky[i]["value_at_risk"]["amount"].get<std::string>()));
  }
  EXPECT_GE(JsonOf(at_risk)["data"]["customers_per_currency"][ranked].get<int64_t>(), 1);
  EXPECT_EQ(api_->Get("/v1/churn/at-risk?currency=euro")->status, 400);
  json in_nok = JsonOf(api_->Get("/v1/churn/at-risk?as_of=2026-12-31&currency=NOK"))["data"];
  EXPECT_EQ(in_nok["currency"], "NOK");
  EXPECT_EQ(in_nok["customers"].size(), 0u);

  auto restaurants = api_->Get("/v1/customers?category=restaurants&min_spend=50&currency=EUR");
  ASSERT_EQ(restaurants->status, 200) << restaurants->body;
  json r = JsonOf(restaurants)["data"];
  ASSERT_EQ(r["customers"].size(), 1u);
  EXPECT_EQ(r["customers"][0]["customer_id"], "c-1001");
  EXPECT_TRUE(r["next_cursor"].is_null());
  EXPECT_EQ(JsonOf(api_->Get("/v1/customers?category=restaurants&min_spend=100"))["data"]["customers"].size(), 0u);
}

TEST_F(Api, PostedEventsAreReadableAfterTheirPosition) {
  // One event: 202 with its position once the broker acknowledged it.
  auto posted = api_->Post("/v1/events", Purchase("c-ryw-1", "80.00", "dining"));
  ASSERT_EQ(posted->status, 202) << posted->body;
  json accepted = JsonOf(posted);
  ASSERT_TRUE(accepted["position"].is_string());
  EXPECT_EQ(accepted["position"],
            std::to_string(accepted["partition"].get<int>()) + ":" + std::to_string(accepted["offset"].get<int64_t>()));
  auto read = api_->Get("/v1/customers/c-ryw-1?after=" + accepted["position"].get<std::string>());
  ASSERT_EQ(read->status, 200) << read->body;
  EXPECT_EQ(JsonOf(read)["data"]["spend_by_category"]["dining"]["EUR"], "80.00");
  EXPECT_GT(JsonOf(read)["freshness"]["applied_offset"].get<int64_t>(), accepted["offset"].get<int64_t>());

  // A batch: per-item results, one token covering every accepted item.
  std::string batch = "[" + Review("c-ryw-2", "hotel-paging", 5, 1) + "," + Review("c-ryw-3", "hotel-paging", 4, 2) +
                      "," + Review("c-ryw-4", "hotel-paging", 1, 3) + ",{\"customer_id\":\"c-ryw-5\"}," +
                      Review("c-ryw-5", "hotel-paging", 3, 4) + "," + Review("c-ryw-6", "hotel-paging", 2, 5) + "]";
  auto batch_posted = api_->Post("/v1/events", batch);
  ASSERT_EQ(batch_posted->status, 202) << batch_posted->body;
  json b = JsonOf(batch_posted);
  EXPECT_EQ(b["accepted"], 5);
  EXPECT_EQ(b["rejected"], 1);
  EXPECT_EQ(b["results"][3]["status"], "rejected");
  EXPECT_EQ(b["results"][3]["error"]["field"], "occurred_at");
  const std::string after = b["after"];

  auto summary = api_->Get("/v1/subjects/hotel/hotel-paging/reviews?as_of=2026-11-15&after=" + after);
  ASSERT_EQ(summary->status, 200) << summary->body;
  EXPECT_EQ(JsonOf(summary)["data"]["count"], 5);
  // Paged newest first, 2 at a time, each review once.
  std::vector<std::string> order;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto items = api_->Get("/v1/subjects/hotel/hotel-paging/reviews/items?limit=2" +
                           (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(items->status, 200) << items->body;
    json d = JsonOf(items)["data"];
    EXPECT_LE(d["reviews"].size(), 2u);
    for (const auto& review : d["reviews"]) order.push_back(review["customer_id"]);
    if (!d.contains("next_cursor")) break;
    cursor = d["next_cursor"];
  }
  EXPECT_EQ(order, (std::vector<std::string>{"c-ryw-6", "c-ryw-5", "c-ryw-4", "c-ryw-3", "c-ryw-2"}));

  // Targeting pages through every match, each once, whatever the page size.
  std::string buyers = "[";
  for (int i = 1; i <= 5; ++i) buyers += (i > 1 ? "," : "") + Purchase("c-tgt-" + std::to_string(i), "30.00", "opera");
  auto bought = api_->Post("/v1/events", buyers + "," + Purchase("c-tgt-6", "5.00", "opera") + "]");
  ASSERT_EQ(bought->status, 202) << bought->body;
  const std::string bought_after = JsonOf(bought)["after"];
  std::set<std::string> targeted;
  cursor.clear();
  for (int page = 0; page < 10; ++page) {
    auto found = api_->Get("/v1/customers?category=opera&min_spend=10&limit=2&after=" + bought_after +
                           (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(found->status, 200) << found->body;
    json d = JsonOf(found)["data"];
    EXPECT_LE(d["customers"].size(), 2u);
    for (const auto& c : d["customers"]) EXPECT_TRUE(targeted.insert(c["customer_id"]).second);
    if (d["next_cursor"].is_null()) break;
    cursor = d["next_cursor"];
  }
  EXPECT_EQ(targeted, (std::set<std::string>{"c-tgt-1", "c-tgt-2", "c-tgt-3", "c-tgt-4", "c-tgt-5"}));

  // A position past the end of the log, which POST /v1/events never
  // returned: 400 after a short grace (the consumer's view of the end may
  // trail the broker's), not a worker held for the whole wait.
  auto unreachable = api_->Get("/v1/customers/c-ryw-1?after=0:999999999");
  ASSERT_EQ(unreachable->status, 400) << unreachable->body;
  EXPECT_EQ(JsonOf(unreachable)["error"]["code"], "invalid_argument");
  EXPECT_NE(JsonOf(unreachable)["error"]["message"].get<std::string>().find("past the end of partition 0"),
            std::string::npos)
      << unreachable->body;
  auto bad = api_->Get("/v1/customers/c-ryw-1?after=zero");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(JsonOf(bad)["error"]["field"], "after");
}

// One series of /metrics.
double MetricValue(testing::ApiInstance& api, const std::string& series) {
  auto scraped = api.Get("/metrics", ApiKeys::kAdmin);
  if (!scraped || scraped->status != 200) return -1;
  for (const auto& line : testing::Lines(scraped->body)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// A client whose answer was cut (its own timeout, a proxy's) sends the
// request again. Events without an event_id get a new id each time, so
// without a key the retry is a second purchase; under the same
// Idempotency-Key the retry's events get the same ids, and the projections
// apply each once, whichever copy arrives first.
TEST_F(Api, ARetryUnderTheSameIdempotencyKeyIsAppliedOnce) {
  const std::string body =
      "[" + Purchase("c-idem-1", "12.00", "books") + "," + Purchase("c-idem-1", "3.00", "books") + "]";
  const std::string key = "6f1c1f43-3f5e-4f7a-9d0c-idempotent01";
  const double duplicates_before = MetricValue(*api_, "rapport_events_duplicate_total");
  {  // the first attempt: sent whole, the connection closed before the answer
    httplib::Client client("127.0.0.1", api_->port());
    client.set_read_timeout(std::chrono::milliseconds(1));
    (void)client.Post("/v1/events", {{"X-API-Key", ApiKeys::kIngest}, {"Idempotency-Key", key}}, body,
                      "application/json");
  }
  auto retried = api_->Client().Post("/v1/events", {{"X-API-Key", ApiKeys::kIngest}, {"Idempotency-Key", key}}, body,
                                     "application/json");
  ASSERT_TRUE(retried);
  ASSERT_EQ(retried->status, 202) << retried->body;
  json answer = JsonOf(retried);
  EXPECT_EQ(answer["accepted"], 2) << retried->body;
  EXPECT_EQ(answer["results"][0]["event_id"], api::IdempotentEventId(key, 0, json::parse(body)[0].dump()));
  // Both copies applied: the second of each pair is a duplicate.
  for (int waited = 0; waited < 100; ++waited) {
    if (MetricValue(*api_, "rapport_events_duplicate_total") >= duplicates_before + 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(MetricValue(*api_, "rapport_events_duplicate_total"), duplicates_before + 2);
  auto profile = api_->Get("/v1/customers/c-idem-1?after=" + answer["after"].get<std::string>());
  ASSERT_EQ(profile->status, 200) << profile->body;
  EXPECT_EQ(JsonOf(profile)["data"]["orders"]["count"], 2);
  EXPECT_EQ(JsonOf(profile)["data"]["spend_by_category"]["books"]["EUR"], "15.00");

  // Without a key, the same body twice is two purchases each.
  const std::string unkeyed = Purchase("c-idem-2", "5.00", "books");
  ASSERT_EQ(api_->Post("/v1/events", unkeyed)->status, 202);
  auto again = api_->Post("/v1/events", unkeyed);
  ASSERT_EQ(again->status, 202);
  auto doubled = api_->Get("/v1/customers/c-idem-2?after=" + JsonOf(again)["position"].get<std::string>());
  EXPECT_EQ(JsonOf(doubled)["data"]["orders"]["count"], 2);

  auto bad = api_->Client().Post("/v1/events", {{"X-API-Key", ApiKeys::kIngest}, {"Idempotency-Key", "two words"}},
                                 unkeyed, "application/json");
  ASSERT_EQ(bad->status, 400);
  EXPECT_EQ(JsonOf(bad)["error"]["field"], "Idempotency-Key");
}

TEST_F(Api, KeysAndScopes) {
  auto none = api_->Get("/v1/customers/c-1001", nullptr);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(JsonOf(none)["error"]["code"], "unauthenticated");
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(api_->Get("/v1/customers/c-1001", "not-a-key-at-all-000000000")->status, 401);
  // X-API-Key works as well as Authorization: Bearer.
  httplib::Headers x_api_key{{"X-API-Key", ApiKeys::kRead}};
  EXPECT_EQ(api_->Client().Get("/v1/customers/c-1001", x_api_key)->status, 200);

  auto read_posts = api_->Post("/v1/events", Purchase("c-auth", "1.00", "x"), ApiKeys::kRead);
  EXPECT_EQ(read_posts->status, 403);
  EXPECT_EQ(JsonOf(read_posts)["error"]["code"], "forbidden");
  EXPECT_EQ(api_->Get("/metrics", ApiKeys::kRead)->status, 403);
  EXPECT_EQ(api_->Get("/metrics", ApiKeys::kAdmin)->status, 200);
  EXPECT_EQ(api_->Get("/v1/customers/c-1001", ApiKeys::kAdmin)->status, 200);  // admin includes read
  // Open to all: health, readiness and the API description.
  EXPECT_EQ(api_->Get("/healthz", nullptr)->status, 200);
  EXPECT_EQ(api_->Get("/readyz", nullptr)->status, 200);
  EXPECT_EQ(api_->Get("/openapi.json", nullptr)->status, 200);
  // Keys never reach the log.
  std::string log = testing::ReadFile(api_->log_path());
  for (const char* key : {ApiKeys::kRead, ApiKeys::kIngest, ApiKeys::kAdmin}) {
    EXPECT_EQ(log.find(key), std::string::npos);
  }
}

TEST_F(Api, BadInputGetsASpecificClientError) {
  auto expect = [](const httplib::Result& r, int status, const std::string& code, const std::string& field = "") {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    json e = JsonOf(r)["error"];
    EXPECT_EQ(e["code"], code) << r->body;
    EXPECT_FALSE(e["message"].get<std::string>().empty());
    if (!field.empty()) {
      EXPECT_EQ(e["field"], field) << r->body;
    }
  };
  expect(api_->Post("/v1/events", "{\"customer_id\": "), 400, "malformed_json");
  expect(api_->Post("/v1/events", "42"), 400, "invalid_body");
  expect(api_->Post("/v1/events", "[]"), 400, "invalid_body");
  auto wrong_type = api_->Post(
      "/v1/events",
      R"({"customer_id":"c-1","occurred_at":"2026-11-01T10:00:00Z","source":"s","channel":"CHANNEL_WEB","review_submitted":{"subject_type":"SUBJECT_TYPE_PRODUCT","subject_id":"p","rating":"five"}})");
  expect(wrong_type, 400, "invalid_event", "review_submitted.rating");
  expect(api_->Post("/v1/events", Purchase("c-1", "1.00", "x"), ApiKeys::kIngest, "text/plain"), 415,
         "unsupported_media_type");
  expect(api_->Post("/v1/events", std::string(70000, ' ')), 413, "payload_too_large");
  std::string too_many = "[";
  for (int i = 0; i < 1001; ++i) too_many += (i ? "," : "") + std::string("{}");
  expect(api_->Post("/v1/events", too_many + "]"), 413, "payload_too_large");

  // Sent raw: an HTTP client library would escape the '%' itself.
  auto raw = testing::RunProgram(
      {"bash", "-c",
       "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(api_->port()) +
           "; printf 'GET /v1/churn/at-risk?limit=%%zz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3; "
           "cat <&3"});
  EXPECT_NE(raw.out.find("HTTP/1.1 400"), std::string::npos) << raw.out;
  EXPECT_NE(raw.out.find("\"malformed_request\""), std::string::npos) << raw.out;
  expect(api_->Get("/v1/subjects/hotel/hotel-paging/reviews/items?cursor=not-a-cursor"), 400, "invalid_argument",
         "cursor");
  expect(api_->Get("/v1/customers?category=dining&cursor=AAAA"), 400, "invalid_argument", "cursor");
  expect(api_->Get("/v1/customers/c-1001/churn?as_of=2026-13-45"), 400, "invalid_argument", "as_of");
  expect(api_->Get("/v1/churn/at-risk?limit=0"), 400, "invalid_argument", "limit");
  expect(api_->Get("/v1/churn/at-risk?limit=ten"), 400, "invalid_argument", "limit");
  expect(api_->Get("/v1/customers?min_spend=-5&category=x"), 400, "invalid_argument", "min_spend");
  expect(api_->Get("/v1/customers"), 400, "invalid_argument", "category");
  expect(api_->Get("/v1/customers/lookup"), 400, "invalid_argument");
  expect(api_->Get("/v1/subjects/planet/earth/reviews"), 404, "not_found", "type");
  expect(api_->Get("/v1/no/such/route"), 404, "not_found");

  auto wrong_method = api_->Client().Delete("/v1/customers/c-1001");
  expect(wrong_method, 405, "method_not_allowed");
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "GET");
  expect(api_->Client().Get("/v1/events"), 405, "method_not_allowed");

  httplib::Headers huge{{"X-Padding", std::string(5000, 'x')}};
  expect(api_->Client().Get("/healthz", huge), 431, "headers_too_large");
  // The server is still well after all that.
  EXPECT_EQ(api_->Get("/healthz")->status, 200);
}

TEST_F(Api, HostileRequestsAreAnsweredAtOnceAndTheServerStaysUp) {
  // Each of these once crashed the process or held a worker: a client that
  // gives up after a few seconds sees the difference.
  httplib::Client client = api_->Client();
  client.set_read_timeout(5, 0);
  httplib::Headers read{{"Authorization", std::string("Bearer ") + ApiKeys::kRead}};
  httplib::Headers ingest{{"Authorization", std::string("Bearer ") + ApiKeys::kIngest}};
  auto error_of = [](const httplib::Result& r) -> json {
    if (!r) return json{{"status", "no answer"}};
    return json{{"status", r->status}, {"error", JsonOf(r)["error"]}};
  };

  // A body nested 30,000 levels deep (within the body limit): the recursive
  // JSON parser would overflow its stack and take the consumer down with it.
  auto deep = error_of(
      client.Post("/v1/events", ingest, std::string(30000, '[') + std::string(30000, ']'), "application/json"));
  EXPECT_EQ(deep["status"], 400) << deep;
  EXPECT_EQ(deep["error"]["code"], "malformed_json") << deep;
  EXPECT_NE(deep["error"]["message"].get<std::string>().find("nested more than 64 levels"), std::string::npos) << deep;

  // A cursor naming partition 2^31 (base64url of 80 00 00 00 'c'): it once
  // made the scan walk two billion partitions.
  auto cursor = error_of(client.Get("/v1/customers?category=restaurants&cursor=gAAAAGM", read));
  EXPECT_EQ(cursor["status"], 400) << cursor;
  EXPECT_EQ(cursor["error"]["field"], "cursor") << cursor;

  // Positions that can never be reached: no such partition, or far past the
  // end of the log (they held a worker for consistency_wait_ms).
  auto partition = error_of(client.Get("/v1/customers/c-1001?after=2147483647:0", read));
  EXPECT_EQ(partition["status"], 400) << partition;
  EXPECT_NE(partition["error"]["message"].get<std::string>().find("does not exist"), std::string::npos) << partition;
  auto past_end = error_of(client.Get("/v1/customers/c-1001?after=0:9000000000000000000", read));
  EXPECT_EQ(past_end["status"], 400) << past_end;
  EXPECT_NE(past_end["error"]["message"].get<std::string>().find("past the end"), std::string::npos) << past_end;
  for (const char* bad : {"-1:0", "0:-5", "99999999999:0", "0:99999999999999999999"}) {
    auto r = error_of(client.Get(std::string("/v1/customers/c-1001?after=") + bad, read));
    EXPECT_EQ(r["status"], 400) << bad << " " << r;
  }

  // Still serving, and still applying what is posted.
  EXPECT_EQ(api_->Get("/healthz")->status, 200);
  auto posted = api_->Post("/v1/events", Purchase("c-hostile", "0.00", "promo"));
  ASSERT_TRUE(posted);
  ASSERT_EQ(posted->status, 202) << posted->body;
  auto read_back = api_->Get("/v1/customers/c-hostile?after=" + JsonOf(posted)["position"].get<std::string>());
  ASSERT_TRUE(read_back);
  EXPECT_EQ(read_back->status, 200) << read_back->body;
  EXPECT_EQ(JsonOf(read_back)["data"]["orders"]["count"], 1) << "a free purchase counts as an order";
}

TEST_F(Api, MetricsCountEventsRequestsLagAndStore) {
  ASSERT_EQ(api_->Get("/v1/customers/c-1001")->status, 200);
  auto scraped = api_->Get("/metrics", ApiKeys::kAdmin);
  ASSERT_EQ(scraped->status, 200);
  EXPECT_EQ(scraped->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  // Series name (with labels) -> value, from the exposition text.
  std::map<std::string, double> series;
  for (const auto& line : testing::Lines(scraped->body)) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    series[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  auto value = [&](const std::string& name) {
    EXPECT_TRUE(series.count(name)) << "missing: " << name << "\n" << scraped->body;
    return series.count(name) ? series[name] : -1;
  };
  // The example log holds 16 valid events; every one reaches the profile; 3 are reviews or ratings.
  EXPECT_GE(value("rapport_events_applied_total{projection=\"customer_profile@v1\"}"), 16);
  EXPECT_GE(value("rapport_events_applied_total{projection=\"reviews@v1\"}"), 3);
  EXPECT_GE(value("rapport_alerts_emitted_total"), 1);  // the example's 2-star review
  EXPECT_EQ(value("rapport_events_dead_lettered_total"), 0);
  EXPECT_GE(value("rapport_events_duplicate_total"), 0);
  EXPECT_GE(value("rapport_http_requests_total{route=\"/v1/customers/{id}\",status=\"200\"}"), 1);
  EXPECT_GE(value("rapport_http_request_seconds_bucket{route=\"/v1/customers/{id}\",le=\"+Inf\"}"), 1);
  EXPECT_GE(value("rapport_batch_apply_seconds_count"), 1);
  EXPECT_EQ(value("rapport_consumer_lag_records{topic=\"" + api_->events_topic() + "\",partition=\"0\"}"), 0);
  EXPECT_GE(value("rapport_store_live_sst_bytes"), 0);
  EXPECT_GT(value("rapport_store_memtable_bytes"), 0);
}

TEST_F(Api, EveryDocumentedRouteAnswersAsDocumented) {
  auto document = api_->Get("/openapi.json", nullptr);
  ASSERT_EQ(document->status, 200);
  json doc = JsonOf(document);
  EXPECT_EQ(doc, json::parse(testing::ReadFile(testing::SourceDir() + "/api/openapi.json")));
  // Each documented operation with concrete parameters answers a documented status.
  const std::map<std::string, std::string> concrete = {
      {"/v1/customers/{id}", "/v1/customers/c-1001"},
      {"/v1/customers/{id}/churn", "/v1/customers/c-1001/churn"},
      {"/v1/customers/{id}/reviews", "/v1/customers/c-1003/reviews"},
      {"/v1/customers/lookup", "/v1/customers/lookup?card=LC-7781-0042"},
      {"/v1/customers", "/v1/customers?category=restaurants"},
      {"/v1/subjects/{type}/{id}/reviews", "/v1/subjects/hotel/hotel-berlin-mitte/reviews"},
      {"/v1/subjects/{type}/{id}/reviews/items", "/v1/subjects/hotel/hotel-berlin-mitte/reviews/items"},
      {"/v1/segments/{name}/customers", "/v1/segments/at-risk/customers"},
  };
  for (const auto& [path, operations] : doc["paths"].items()) {
    for (const auto& [method, operation] : operations.items()) {
      if (method != "get") continue;
      std::string target = concrete.count(path) ? concrete.at(path) : path;
      auto response = api_->Get(target, ApiKeys::kAdmin);
      ASSERT_TRUE(response) << target;
      EXPECT_EQ(response->status, 200) << target << ": " << response->body;
      EXPECT_TRUE(operation["responses"].contains(std::to_string(response->status))) << target;
    }
  }
}

TEST_F(Api, KeepAliveServesManyRequestsOnOneConnection) {
  httplib::Client client = api_->Client();
  httplib::Headers key{{"Authorization", std::string("Bearer ") + ApiKeys::kRead}};
  for (int i = 0; i < 20; ++i) {
    auto r = client.Get("/v1/customers/c-1001", key);
    ASSERT_EQ(r->status, 200);
    EXPECT_NE(r->get_header_value("Connection"), "close");
  }
  // Two requests pipelined on one raw connection get two answers, in order.
  auto raw = testing::RunProgram(
      {"bash", "-c",
       "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(api_->port()) +
           "; printf 'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /nope HTTP/1.1\\r\\nHost: x\\r\\nConnection: "
           "close\\r\\n\\r\\n' >&3; cat <&3"});
  size_t first = raw.out.find("HTTP/1.1 200");
  size_t second = raw.out.find("HTTP/1.1 404");
  EXPECT_NE(first, std::string::npos) << raw.out;
  EXPECT_NE(second, std::string::npos) << raw.out;
  EXPECT_LT(first, second);
}

TEST_F(Api, RequestsBeyondTheInFlightLimitAre429) {
  // max_in_flight = 4: four reads waiting on a position past the end hold
  // the slots for the grace (a second) before their 400;
  // a fifth request meanwhile is turned away at once.
  std::vector<std::future<int>> waiting;
  for (int i = 0; i < 4; ++i) {
    waiting.push_back(std::async(std::launch::async, [] {
      auto r = api_->Get("/v1/customers/c-1001?after=0:999999999");
      return r ? r->status : -1;
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto turned_away = api_->Get("/v1/customers/c-1001");
  ASSERT_TRUE(turned_away);
  EXPECT_EQ(turned_away->status, 429) << turned_away->body;
  EXPECT_EQ(JsonOf(turned_away)["error"]["code"], "too_many_requests");
  for (auto& w : waiting) EXPECT_EQ(w.get(), 400);
  EXPECT_EQ(api_->Get("/v1/customers/c-1001")->status, 200);  // slots free again
}

TEST(ApiStartup, APortInUseIsAClearErrorAndTheProcessExits) {
  ASSERT_OK(testing::CheckBrokerAnswers(testing::TestBroker()));
  testing::ApiInstance api("busy");
  ASSERT_TRUE(api.Prepare());
  httplib::Server squatter;  // holds the port
  ASSERT_TRUE(squatter.bind_to_port("127.0.0.1", api.port()));
  const auto started = std::chrono::steady_clock::now();
  auto run =
      testing::RunRapport({"--config", api.config(), "run", "--http", "127.0.0.1:" + std::to_string(api.port())});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(
      run.err.find("run: api: cannot listen on 127.0.0.1:" + std::to_string(api.port()) + ": Address already in use"),
      std::string::npos)
      << run.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));  // it leaves its group and exits
  auto bad_address = testing::RunRapport({"--config", api.config(), "run", "--http", "localhost:80800"});
  EXPECT_EQ(bad_address.exit_code, 2);
  EXPECT_NE(bad_address.err.find("--http: \"localhost:80800\" is not HOST:PORT"), std::string::npos) << bad_address.err;
}

// Freshness: a poll waits up to batch_wait_ms for a batch's first record
// only; once records arrive they are applied, not held until the batch fills
// or the wait ends. With a 2-minute batch wait, an event must still be
// readable within the 5 s consistency wait of ?after=.
TEST(ApiFreshness, AnEventIsAppliedWhenItArrivesNotWhenTheBatchWaitEnds) {
  ASSERT_OK(testing::CheckBrokerAnswers(testing::TestBroker()));
  testing::ApiInstance api("fresh", "", /*consistency_wait_ms=*/5000, /*batch_wait_ms=*/120000);
  ASSERT_TRUE(api.Start());
  for (int i = 0; i < 3; ++i) {
    auto posted = api.Post("/v1/events", Purchase("c-fresh-" + std::to_string(i), "12.50", "dining"));
    ASSERT_EQ(posted->status, 202) << posted->body;
    auto read = api.Get("/v1/customers/c-fresh-" + std::to_string(i) +
                        "?after=" + JsonOf(posted)["position"].get<std::string>());
    ASSERT_EQ(read->status, 200) << read->body;
    EXPECT_EQ(JsonOf(read)["data"]["orders"]["count"], 1);
  }
}

TEST(ApiShutdown, SigtermAnswersRequestsInFlightThenExitsCleanly) {
  ASSERT_OK(testing::CheckBrokerAnswers(testing::TestBroker()));
  testing::ApiInstance api("shutdown");
  ASSERT_TRUE(api.Start());
  // A read waiting (a second's grace) on a position past the end is in flight when SIGTERM comes.
  auto in_flight = std::async(std::launch::async, [&] { return api.Get("/v1/customers/c-1001?after=0:999999999"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int status = api.Stop();
  auto answered = in_flight.get();
  ASSERT_TRUE(answered) << "the request in flight got no answer: " << httplib::to_string(answered.error());
  EXPECT_EQ(answered->status, 400) << answered->body;
  EXPECT_EQ(answered->get_header_value("Connection"), "close");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFile(api.log_path());
  EXPECT_FALSE(api.Client().Get("/healthz")) << "still serving after shutdown";
}

}  // namespace
}  // namespace rapport
