#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "rapport/api/auth.h"
#include "rapport/api/http_server.h"
#include "rapport/api/ingest.h"
#include "rapport/base/metrics.h"
#include "rapport/cluster/membership.h"
#include "rapport/consumers/projection_runner.h"
#include "rapport/projections/churn.h"
#include "rapport/projections/store.h"

namespace rapport::api {

struct ServiceOptions {
  AuthOptions auth;
  std::string events_topic = "cx.events";  // whose stored partition count routes customers
  // How long a read with ?after= waits for the projections to apply that position.
  std::chrono::milliseconds consistency_wait{5000};
  // /readyz answers 200 once the records not yet applied are at most this.
  int64_t ready_max_lag = 1000;
  size_t max_batch_events = 1000;  // events in one POST /v1/events
  std::string openapi_json;        // served at /openapi.json
  // Several instances in one group: who applies which partition (the
  // members topic). A read for a customer whose partition another instance
  // applies is forwarded to it, once (a forwarded request is answered here
  // or not at all). Null: this instance answers from its store alone.
  const cluster::Directory* directory = nullptr;
  std::string instance_id;  // this instance's, as on the members topic
  // Sent with each request to another instance (published on the members
  // topic): admits this instance to the routes only instances ask each
  // other, for work no caller asked for (the churn models' fit).
  std::string instance_token;
  std::chrono::milliseconds forward_timeout{2000};
  std::chrono::milliseconds fit_inputs_timeout{60000};  // another instance's scan of its customers
};

// The query API: routes every request (see api/openapi.json) to the
// projections' views, the ingest, metrics and health. Reads come from the
// live store while the runner writes to it (RocksDB allows both); each read
// says how fresh it is. Thread-safe: Handle runs on many workers at once.
class ApiService {
 public:
  // `progress` may be null (a store nobody is applying to: freshness comes
  // from the stored offsets and ?after= waits fail at once); `ingest` may be
  // null (POST /v1/events answers 503).
  ApiService(ServiceOptions options, projections::ProjectionStore& store, const consumers::RunnerProgress* progress,
             Ingest* ingest, Metrics& metrics);
  ~ApiService();

  HttpResponse Handle(const HttpRequest& request);
  // Whether Handle answers `request` without waiting or scanning (point
  // reads): the server may then run it on an I/O thread.
  bool Quick(const HttpRequest& request) const;

  // Fits the churn models over every partition's customers as of now: this
  // instance's partitions from its store, the others' fit inputs asked of
  // the instances that apply them, appended in partition order, so the
  // models equal a single instance's over the same state. Without other
  // instances: the store's own fit. Unavailable when an instance does not
  // answer for its partitions.
  Result<state::v1::ChurnModel> FitChurnModels(const projections::ChurnModelOptions& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport::api
