// ApiService without a broker: readiness and ?after= follow the runner's
// progress.
#include "rapport/api/service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "nlohmann/json.hpp"
#include "rapport/projections/keys.h"
#include "rapport/projections/registry.h"
#include "rapport/testing/status.h"
#include "service_fixture.h"

namespace rapport::api {
namespace {

class Service : public ServiceFixture {
 protected:
  void SetUp() override {
    ServiceFixture::SetUp();
    ServiceOptions options;
    options.ready_max_lag = 3;
    options.consistency_wait = std::chrono::milliseconds(300);
    StartService(options);
  }
};

TEST_F(Service, ReadyOnlyOnceStartedAndWithinTheConfiguredLag) {
  EXPECT_EQ(Get("/readyz").status, 503);  // not started
  progress_.Update(0, 5, 10);
  progress_.Update(1, 0, 1000);  // another instance's partition: its lag is not this one's
  progress_.SetOwned(1, false);
  progress_.MarkStarted();
  EXPECT_EQ(Get("/readyz").status, 503) << "started, but the group has assigned nothing yet";
  progress_.MarkJoined();
  auto behind = Get("/readyz");
  EXPECT_EQ(behind.status, 503);
  EXPECT_EQ(nlohmann::json::parse(behind.body)["lag_records"], 5);
  progress_.Update(0, 8, 10);
  EXPECT_EQ(Get("/readyz").status, 200);
  EXPECT_EQ(Get("/healthz").status, 200);
}

TEST_F(Service, AReadAfterAPositionWaitsForItThenAnswers) {
  progress_.Update(0, 5, 10);
  progress_.MarkStarted();
  // Not applied within the wait: 503, saying where the partition is.
  auto early = Get("/v1/segments?after=0:7");
  EXPECT_EQ(early.status, 503);
  EXPECT_NE(early.body.find("applied up to offset 5, not yet past 7"), std::string::npos) << early.body;
  // Applied while the read waits: it goes on (here to "not started consuming": no partition count stored).
  std::thread applier([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    progress_.Update(0, 8, 10);
  });
  auto waited = Get("/v1/segments?after=0:7");
  applier.join();
  EXPECT_EQ(waited.status, 503);
  EXPECT_NE(waited.body.find("have not started consuming"), std::string::npos) << waited.body;
  EXPECT_NE(Get("/v1/segments?after=1:0").body.find("partition 1 is not applied by this server"), std::string::npos);
}

TEST_F(Service, WhileAVersionIsBuiltAnswersSaySo) {
  StorePartitionCount(1);
  progress_.Update(0, 10, 10);
  progress_.MarkStarted();
  progress_.SetRebuild({.families = "reviews@v2", .behind = 1234});
  auto building = Get("/v1/segments");
  ASSERT_EQ(building.status, 200) << building.body;
  auto rebuilding = nlohmann::json::parse(building.body)["freshness"]["rebuilding"];
  EXPECT_EQ(rebuilding["projections"], "reviews@v2");
  EXPECT_EQ(rebuilding["records_behind"], 1234);
  progress_.SetRebuild({});
  auto swapped = Get("/v1/segments");
  ASSERT_EQ(swapped.status, 200) << swapped.body;
  EXPECT_FALSE(nlohmann::json::parse(swapped.body)["freshness"].contains("rebuilding")) << swapped.body;
}

}  // namespace
}  // namespace rapport::api
