#pragma once

// ApiService without a server or a runner, for unit tests: a store of its
// own with every projection's family, the progress a runner would report,
// and GET requests as the HTTP server hands them over, from this host.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "rapport/api/http_server.h"
#include "rapport/api/service.h"
#include "rapport/events/admission.h"
#include "rapport/projections/keys.h"
#include "rapport/projections/registry.h"
#include "rapport/testing/status.h"

namespace rapport::api {

// `target`: path and query ("/v1/customers/lookup?email=x"); query values
// are taken as they are (no percent-decoding).
inline HttpRequest LoopbackGet(const std::string& target) {
  HttpRequest request;
  request.method = "GET";
  request.target = target;
  request.from_loopback = true;
  const size_t question = target.find('?');
  request.path = target.substr(0, question);
  for (size_t at = 1; at <= request.path.size();) {
    size_t slash = request.path.find('/', at);
    request.segments.push_back(request.path.substr(at, slash - at));
    at = slash == std::string::npos ? request.path.size() + 1 : slash + 1;
  }
  for (size_t at = question; at != std::string::npos && at < target.size();) {
    const size_t amp = target.find('&', at + 1);
    const std::string pair = target.substr(at + 1, amp == std::string::npos ? std::string::npos : amp - at - 1);
    const size_t eq = pair.find('=');
    request.query.emplace(pair.substr(0, eq), eq == std::string::npos ? "" : pair.substr(eq + 1));
    at = amp;
  }
  return request;
}

class ServiceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("rapport-service-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    projections::RegisterProjections(registry_);
    auto families = registry_.families();
    families.push_back(consumers::ProjectionRunner::kFamily);
    auto store = projections::ProjectionStore::Open({.path = path_}, families);
    ASSERT_OK(store);
    store_ = std::move(store).value();
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(path_);
  }
  void StartService(ServiceOptions options) {
    options.auth.open_reads_on_loopback = true;
    service_ = std::make_unique<ApiService>(std::move(options), *store_, &progress_, nullptr, metrics_);
  }
  // What the runner stores when it starts: the partition count of cx.events.
  void StorePartitionCount(uint32_t partitions) {
    std::string count;
    projections::AppendU32(count, partitions);
    rocksdb::WriteBatch batch;
    batch.Put(store_->family(consumers::ProjectionRunner::kFamily), "ccx.events", count).PermitUncheckedError();
    ASSERT_OK(store_->Write(batch));
  }
  HttpResponse Get(const std::string& target) { return service_->Handle(LoopbackGet(target)); }
  // Admits each JSON event and folds it into every projection as the runner
  // would, as read from `partition` (offsets counted from 0 per fixture).
  void ApplyEvents(const std::vector<std::string>& lines, int32_t partition) {
    events::EventAdmission admission;
    rocksdb::WriteBatch batch;
    for (projections::Projection* projection : registry_.all()) {
      projections::StateBatch state(*store_, store_->family(projection->Family()));
      std::vector<projections::OutboxRecord> outbox;
      int64_t offset = applied_;
      for (const auto& line : lines) {
        auto admitted = admission.AdmitJson(line, absl::Now());
        ASSERT_TRUE(admitted.accepted()) << line;
        ASSERT_OK(projection->Apply(admitted.event.envelope, {partition, offset++}, state, outbox));
      }
      state.CommitTo(batch);
    }
    applied_ += static_cast<int64_t>(lines.size());
    ASSERT_OK(store_->Write(batch));
  }

  std::filesystem::path path_;
  projections::ProjectionRegistry registry_;
  std::unique_ptr<projections::ProjectionStore> store_;
  consumers::RunnerProgress progress_;
  Metrics metrics_;
  std::unique_ptr<ApiService> service_;
  int64_t applied_ = 0;
};

}  // namespace rapport::api
