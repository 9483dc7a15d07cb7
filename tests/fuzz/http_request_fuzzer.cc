// Raw bytes as a connection of the API server reads them (Beast's parser
// with the server's limits, percent-decoding), then routed to the service
// over a store holding the examples: every route's parameter parsing.
#include <cstddef>
#include <cstdint>
#include <variant>

#include "fuzz_store.h"
#include "rapport/api/http_server.h"
#include "rapport/api/service.h"

namespace {

struct Api {
  rapport::fuzz::FuzzStore fuzz;
  rapport::consumers::RunnerProgress progress;
  rapport::Metrics metrics;
  std::unique_ptr<rapport::api::ApiService> service;
  rapport::api::ServerOptions limits;

  Api() {
    rapport::api::ServiceOptions options;
    options.events_topic = rapport::fuzz::kTopic;
    options.consistency_wait = std::chrono::milliseconds(1);  // a fuzzer must not wait
    options.auth.open_reads_on_loopback = true;
    limits.max_body_bytes = 64 << 10;
    for (int32_t p = 0; p < rapport::fuzz::kPartitions; ++p) progress.Update(p, 4, 4);
    progress.MarkStarted();
    service = std::make_unique<rapport::api::ApiService>(options, *fuzz.store, &progress, nullptr, metrics);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Api* api = new Api();
  auto parsed = rapport::api::ParseHttpRequest(std::string_view(reinterpret_cast<const char*>(data), size), api->limits,
                                               /*loopback=*/true);
  if (auto* request = std::get_if<rapport::api::HttpRequest>(&parsed)) {
    if (request->path == "/metrics") return 0;  // grows with every distinct route label: not a parser
    (void)api->service->Handle(*request);
  }
  return 0;
}
