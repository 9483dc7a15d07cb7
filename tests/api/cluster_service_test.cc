// ApiService with several instances, against librdkafka's mock cluster (the
// members topic) and no runner: what it answers for a partition that moved
// here and is still catching up (the same across real processes:
// tests/integration/cluster_test.cc).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "nlohmann/json.hpp"
#include "rapport/api/service.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/keys.h"
#include "rapport/projections/registry.h"
#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"
#include "service_fixture.h"

namespace rapport::api {
namespace {

class ClusterService : public ServiceFixture {
 protected:
  void SetUp() override {
    ServiceFixture::SetUp();
    cluster_.CreateTopic("cx.members", 1);
    auto directory = cluster::Directory::Start(cluster_.settings(), "cx.members", "platform");
    ASSERT_OK(directory);
    directory_ = std::move(*directory);
    directory_->WaitCaughtUp(std::chrono::seconds(10));
    StorePartitionCount(2);
    ServiceOptions options;
    options.directory = directory_.get();
    options.instance_id = "a";
    StartService(options);
  }
  void TearDown() override {
    ServiceFixture::TearDown();
    directory_.reset();
  }
  static std::string CustomerOf(int32_t partition) {
    for (int n = 0;; ++n) {
      std::string id = "c-" + std::to_string(n);
      if (kafka::PartitionForKey(id, 2) == partition) return id;
    }
  }
  static std::string Code(const HttpResponse& response) {
    auto body = nlohmann::json::parse(response.body, nullptr, false);
    return body.is_object() && body.contains("error") ? body["error"]["code"].get<std::string>() : "";
  }

  testing::MockCluster cluster_;
  std::unique_ptr<cluster::Directory> directory_;
};

TEST_F(ClusterService, NotFoundInAPartitionStillCatchingUpIsNotAnAnswerYet) {
  // Both partitions here; partition 1 just came, its store 5 records behind
  // where the log ended then.
  progress_.Update(0, 10, 10);
  progress_.SetOwned(0, true);
  progress_.Update(1, 5, 10);
  progress_.SetOwned(1, true, /*catch_up_to=*/10);
  progress_.MarkStarted();
  progress_.MarkJoined();

  EXPECT_EQ(Get("/v1/customers/" + CustomerOf(0)).status, 404) << "partition 0 is caught up: not there";
  const HttpResponse unsure = Get("/v1/customers/" + CustomerOf(1));
  EXPECT_EQ(unsure.status, 503) << unsure.body;
  EXPECT_EQ(Code(unsure), "partition_catching_up");
  EXPECT_EQ(nlohmann::json::parse(unsure.body)["error"]["partitions"], nlohmann::json::array({1}));
  EXPECT_EQ(Code(Get("/v1/customers/" + CustomerOf(1) + "/churn")), "partition_catching_up");
  EXPECT_EQ(Code(Get("/v1/customers/lookup?email=nobody@mail.example")), "partition_catching_up")
      << "an identity not found anywhere may yet be in partition 1";

  progress_.Update(1, 10, 12);  // where the log ended at the assignment: caught up
  EXPECT_EQ(Get("/v1/customers/" + CustomerOf(1)).status, 404);
  EXPECT_EQ(Get("/v1/customers/lookup?email=nobody@mail.example").status, 404);
}

TEST_F(ClusterService, ACustomerFoundInAPartitionStillCatchingUpIsNotAnsweredWithPartOfTheirHistory) {
  // What this store has of partition 1's customer: one of their events; the
  // rest sits in the log beyond it, not yet applied.
  const std::string customer = CustomerOf(1);
  ApplyEvents({nlohmann::json{{"customer_id", customer},
                              {"occurred_at", "2026-11-01T10:00:00Z"},
                              {"source", "web/shop"},
                              {"channel", "CHANNEL_WEB"},
                              {"profile_updated", {{"traits", {{"tier", "gold"}}}}}}
                   .dump()},
              1);
  progress_.Update(0, 10, 10);
  progress_.SetOwned(0, true);
  progress_.Update(1, 1, 10);
  progress_.SetOwned(1, true, /*catch_up_to=*/10);
  progress_.MarkStarted();
  progress_.MarkJoined();

  for (const std::string& target : {"/v1/customers/" + customer, "/v1/customers/" + customer + "/churn",
                                    "/v1/customers/" + customer + "/reviews"}) {
    const HttpResponse partial = Get(target);
    EXPECT_EQ(partial.status, 503) << target << ": " << partial.body;
    EXPECT_EQ(Code(partial), "partition_catching_up") << target;
  }

  progress_.Update(1, 10, 10);  // caught up: the whole history is applied
  const HttpResponse whole = Get("/v1/customers/" + customer);
  EXPECT_EQ(whole.status, 200) << whole.body;
}

}  // namespace
}  // namespace rapport::api
