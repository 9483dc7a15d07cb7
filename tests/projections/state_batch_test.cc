// StateBatch and the StateCache it reads through: a batch sees its own
// writes; with a cache, the next batch finds what the last one wrote without
// the store, and a cache out of budget falls back to the store, never to a
// stale value.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "rapport/projections/keys.h"
#include "rapport/projections/projection.h"
#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

class StateBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::path(::testing::TempDir()) / ("state-batch-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    auto store = ProjectionStore::Open({.path = path_}, {"p@v1"});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    family_ = store_->family("p@v1");
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(path_);
  }
  // Commits `state` and, with `write`, writes it to the store.
  void Commit(StateBatch& state, bool write = true) {
    rocksdb::WriteBatch batch;
    state.CommitTo(batch);
    if (write) EXPECT_OK(store_->Write(batch));
  }
  std::string Read(StateBatch& state, const std::string& key) {
    auto value = state.Find(key);
    EXPECT_OK(value);
    return value.ok() && *value != nullptr ? **value : "<none>";
  }

  std::filesystem::path path_;
  std::unique_ptr<ProjectionStore> store_;
  rocksdb::ColumnFamilyHandle* family_ = nullptr;
};

TEST_F(StateBatchTest, ABatchReadsItsOwnWritesAndTheStore) {
  StateBatch first(*store_, family_);
  first.Put(PartitionKey(0, 'c', "a"), "1");
  EXPECT_EQ(Read(first, PartitionKey(0, 'c', "a")), "1");
  Commit(first);
  StateBatch second(*store_, family_);
  EXPECT_EQ(Read(second, PartitionKey(0, 'c', "a")), "1");
  second.Delete(PartitionKey(0, 'c', "a"));
  EXPECT_EQ(Read(second, PartitionKey(0, 'c', "a")), "<none>");
  Commit(second);
  EXPECT_EQ(store_->Get(family_, PartitionKey(0, 'c', "a")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StateBatchTest, TheCacheKeepsWhatABatchWroteForTheNext) {
  auto budget = std::make_shared<std::atomic<int64_t>>(1 << 20);
  StateCache cache(4, budget);
  StateBatch first(*store_, family_, &cache);
  first.Put(PartitionKey(1, 'c', "a"), "1");
  first.Put(PartitionKey(2, 'c', "b"), "2");
  // Not written to the store: what the next batch reads can only come from
  // the cache (the runner writes every commit; this shows the cache is read).
  Commit(first, /*write=*/false);
  EXPECT_LT(budget->load(), 1 << 20) << "cached entries take from the budget";
  StateBatch second(*store_, family_, &cache);
  EXPECT_EQ(Read(second, PartitionKey(1, 'c', "a")), "1");
  EXPECT_EQ(Read(second, PartitionKey(2, 'c', "b")), "2");
  second.Delete(PartitionKey(1, 'c', "a"));
  Commit(second, false);
  StateBatch third(*store_, family_, &cache);
  EXPECT_EQ(Read(third, PartitionKey(1, 'c', "a")), "<none>") << "a deletion is cached too";

  cache.Clear();
  EXPECT_EQ(budget->load(), 1 << 20) << "clearing gives every byte back";
  StateBatch fourth(*store_, family_, &cache);
  EXPECT_EQ(Read(fourth, PartitionKey(2, 'c', "b")), "<none>") << "after Clear, reads go to the store";
}

TEST_F(StateBatchTest, ACacheOutOfBudgetReadsTheStore) {
  auto budget = std::make_shared<std::atomic<int64_t>>(300);  // room for about two entries
  StateCache cache(1, budget);
  for (int round = 0; round < 3; ++round) {
    StateBatch state(*store_, family_, &cache);
    for (int n = 0; n < 10; ++n) {
      std::string key = PartitionKey(0, 'c', std::to_string(n));
      EXPECT_EQ(Read(state, key), round == 0 ? "<none>" : std::to_string(round - 1) + "-" + std::to_string(n)) << key;
      state.Put(key, std::to_string(round) + "-" + std::to_string(n));
    }
    Commit(state);
    EXPECT_GE(budget->load(), 0) << "the cache keeps within its budget";
  }
}

TEST_F(StateBatchTest, KeysOfAPartitionTheCacheHasNoPartForAreNotCached) {
  auto budget = std::make_shared<std::atomic<int64_t>>(1 << 20);
  StateCache cache(2, budget);
  StateBatch first(*store_, family_, &cache);
  first.Put(PartitionKey(7, 'c', "a"), "1");
  Commit(first, false);
  EXPECT_EQ(budget->load(), 1 << 20);
  StateBatch second(*store_, family_, &cache);
  EXPECT_EQ(Read(second, PartitionKey(7, 'c', "a")), "<none>");
}

}  // namespace
}  // namespace rapport::projections
