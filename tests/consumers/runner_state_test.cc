// RunnerState, what the runner keeps about its reading of a topic: the
// partition count a store was built under (a change stops the run), each
// lane's offsets apart from the other's, and a store id that never changes.
#include "runner_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "rapport/consumers/projection_runner.h"
#include "rapport/testing/status.h"
#include "runner_keys.h"

namespace rapport::consumers {
namespace {

class RunnerStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ =
        std::filesystem::path(::testing::TempDir()) / ("runner-state-" + std::to_string(::getpid()) + "-" +
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(path_);
  }
  void Reopen() {
    store_.reset();
    auto opened = projections::ProjectionStore::Open({.path = path_}, {ProjectionRunner::kFamily});
    ASSERT_OK(opened);
    store_ = std::move(*opened);
  }
  RunnerState State(const std::string& topic = "cx.events") {
    return RunnerState(*store_, store_->family(ProjectionRunner::kFamily), topic);
  }

  std::filesystem::path path_;
  std::unique_ptr<projections::ProjectionStore> store_;
};

TEST_F(RunnerStateTest, RecordsThePartitionCountOnceAndRefusesAnother) {
  EXPECT_EQ(State().PartitionCount().status().code(), absl::StatusCode::kNotFound);
  ASSERT_OK(State().CheckPartitionCount(6));
  Reopen();
  auto count = State().PartitionCount();
  ASSERT_OK(count);
  EXPECT_EQ(*count, 6);
  ASSERT_OK(State().CheckPartitionCount(6));
  Status changed = State().CheckPartitionCount(8);
  EXPECT_EQ(changed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(changed.message()).find("has 8 partitions now, but this store was built when it had 6"),
            std::string::npos)
      << changed;
  // Another topic's count is its own.
  ASSERT_OK(State("other").CheckPartitionCount(3));
  EXPECT_EQ(*State().PartitionCount(), 6);
}

TEST_F(RunnerStateTest, KeepsEachLanesOffsetsApart) {
  rocksdb::WriteBatch batch;
  State().StageOffset(batch, "", 0, 41);
  State().StageOffset(batch, "", 5, 7);
  State().StageOffset(batch, runner_keys::kRebuildPrefix, 0, 3);
  State("cx.events2").StageOffset(batch, "", 1, 99);  // a topic whose name extends this one's
  ASSERT_OK(store_->Write(batch));
  Reopen();
  auto live = State().Offsets();
  ASSERT_OK(live);
  EXPECT_EQ(*live, (std::map<int32_t, int64_t>{{0, 41}, {5, 7}}));
  auto rebuild = State().Offsets(runner_keys::kRebuildPrefix);
  ASSERT_OK(rebuild);
  EXPECT_EQ(*rebuild, (std::map<int32_t, int64_t>{{0, 3}}));
  // The public reading of the same keys (what `rapport status` shows).
  auto stored = StoredOffsets(*store_, "cx.events");
  ASSERT_OK(stored);
  EXPECT_EQ(*stored, *live);
}

TEST_F(RunnerStateTest, ADamagedOffsetIsAnErrorNotAPosition) {
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(
      batch.Put(store_->family(ProjectionRunner::kFamily), runner_keys::OffsetKey("", "cx.events", 2), "short").ok());
  ASSERT_OK(store_->Write(batch));
  auto offsets = State().Offsets();
  EXPECT_EQ(offsets.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(offsets.status().message()).find("damaged"), std::string::npos);
}

TEST_F(RunnerStateTest, ADamagedPartitionCountOrStoreIdIsAnErrorNotAValue) {
  rocksdb::WriteBatch batch;
  auto* family = store_->family(ProjectionRunner::kFamily);
  ASSERT_TRUE(batch.Put(family, runner_keys::PartitionCountKey("cx.events"), "12345678").ok());
  ASSERT_TRUE(batch.Put(family, runner_keys::kStoreIdKey, "short").ok());
  ASSERT_OK(store_->Write(batch));
  auto count = State().PartitionCount();
  EXPECT_EQ(count.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(count.status().message()).find("partition count of cx.events is damaged"), std::string::npos)
      << count.status();
  EXPECT_EQ(State().CheckPartitionCount(4).code(), absl::StatusCode::kInternal) << "never overwritten";
  auto id = State().StoreId();
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(id.status().message()).find("store's id is damaged"), std::string::npos) << id.status();
}

TEST_F(RunnerStateTest, TheStoreIdIsMadeOnceAndKept) {
  auto first = State().StoreId();
  ASSERT_OK(first);
  EXPECT_EQ(first->size(), 16u);
  Reopen();
  auto again = State().StoreId();
  ASSERT_OK(again);
  EXPECT_EQ(*again, *first);
  // Another store gets another id: its relayed records are not this one's.
  const auto other_path = path_.string() + "-other";
  std::filesystem::remove_all(other_path);
  {
    auto other = projections::ProjectionStore::Open({.path = other_path}, {ProjectionRunner::kFamily});
    ASSERT_OK(other);
    auto other_id = RunnerState(**other, (*other)->family(ProjectionRunner::kFamily), "cx.events").StoreId();
    ASSERT_OK(other_id);
    EXPECT_NE(*other_id, *first);
  }
  std::filesystem::remove_all(other_path);
}

}  // namespace
}  // namespace rapport::consumers
