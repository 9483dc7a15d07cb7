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
  // One event of `customer`'s, applied as read from `partition`: their tier
  // trait is "gold".
  void ApplyGoldTier(const std::string& customer, int32_t partition) {
    ApplyEvents({nlohmann::json{{"customer_id", customer},
                                {"occurred_at", "2026-11-01T10:00:00Z"},
                                {"source", "web/shop"},
                                {"channel", "CHANNEL_WEB"},
                                {"profile_updated", {{"traits", {{"tier", "gold"}}}}}}
                     .dump()},
                partition);
  }
  // Both partitions owned here: 0 caught up at 10; 1 just came, applied up
  // to `applied` of the 10 records the log held then.
  void BothHereWithPartition1CatchingUpFrom(int64_t applied) {
    progress_.Update(0, 10, 10);
    progress_.SetOwned(0, true);
    progress_.Update(1, applied, 10);
    progress_.SetOwned(1, true, /*catch_up_to=*/10);
    progress_.MarkStarted();
    progress_.MarkJoined();
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
  BothHereWithPartition1CatchingUpFrom(5);

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
  ApplyGoldTier(customer, 1);
  BothHereWithPartition1CatchingUpFrom(1);

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

TEST_F(ClusterService, AReadOfEveryCustomerWaitsForAPartitionStillCatchingUp) {
  ApplyGoldTier(CustomerOf(0), 0);
  BothHereWithPartition1CatchingUpFrom(5);
  for (const std::string target :
       {"/v1/segments", "/v1/churn/at-risk", "/v1/insights/pareto", "/v1/customers?category=books",
        "/v1/subjects/hotel/h-1/reviews", "/v1/segments/champions/customers"}) {
    const HttpResponse partial = Get(target);
    EXPECT_EQ(partial.status, 503) << target << ": " << partial.body;
    EXPECT_EQ(Code(partial), "partition_catching_up") << target;
  }
  // Asked by another instance for partition 1's part: the same.
  HttpRequest asked = LoopbackGet("/v1/segments?partitions=1");
  asked.headers.emplace("rapport-forwarded-by", "b");
  EXPECT_EQ(Code(service_->Handle(asked)), "partition_catching_up");

  progress_.Update(1, 10, 10);
  const HttpResponse whole = Get("/v1/segments");
  EXPECT_EQ(whole.status, 200) << whole.body;
}

TEST_F(ClusterService, AStandbyAnswersForAPartitionWithNoLiveOwnerOnceItHasCaughtUp) {
  const std::string customer = CustomerOf(1);
  ApplyGoldTier(customer, 1);
  // Partition 0 is owned here; partition 1 is a standby here, and no live
  // instance owns it (the members topic is empty).
  progress_.Update(0, 10, 10);
  progress_.SetOwned(0, true);
  progress_.SetOwned(1, false);
  progress_.Update(1, 0, 1);
  progress_.SetStandby(1, true, /*catch_up_to=*/1);
  progress_.MarkStarted();
  progress_.MarkJoined();

  const HttpResponse cold = Get("/v1/customers/" + customer);
  EXPECT_EQ(cold.status, 503) << cold.body;
  EXPECT_EQ(Code(cold), "partition_unavailable") << "a standby not yet caught up answers nothing";

  progress_.Update(1, 1, 1);
  const HttpResponse warm = Get("/v1/customers/" + customer);
  ASSERT_EQ(warm.status, 200) << warm.body;
  auto body = nlohmann::json::parse(warm.body);
  EXPECT_EQ(body["data"]["traits"]["tier"], "gold") << warm.body;
  EXPECT_EQ(body["freshness"]["standby"], true) << "the answer says a standby gave it";
  EXPECT_EQ(Get("/v1/customers/" + CustomerOf(0)).status, 404) << "partition 0 is owned here, and caught up";

  progress_.SetStandby(1, false);  // the placement moved it elsewhere
  EXPECT_EQ(Code(Get("/v1/customers/" + customer)), "partition_unavailable");
}

}  // namespace
}  // namespace rapport::api
