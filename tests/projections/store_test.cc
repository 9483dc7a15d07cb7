// ProjectionStore's disk use: a family that is written little or once (the
// marks of which versions are live, written when a build is swapped in)
// must not keep every write-ahead log file since then alive.
#include "rapport/projections/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "rapport/testing/status.h"

namespace rapport::projections {
namespace {

int64_t LogBytes(const std::filesystem::path& dir) {
  int64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log") bytes += static_cast<int64_t>(entry.file_size());
  }
  return bytes;
}

TEST(ProjectionStore, AFamilyWrittenLittleDoesNotKeepTheWriteAheadLogAlive) {
  const auto path = std::filesystem::path(::testing::TempDir()) / ("store-wal-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  StoreOptions options{.path = path};  // the default budget: 128 MiB of write buffers
  {
    auto store = ProjectionStore::Open(options, {"busy@v1", "quiet"});
    ASSERT_OK(store);
    auto* busy = (*store)->family("busy@v1");
    auto* quiet = (*store)->family("quiet");
    rocksdb::WriteBatch once;
    ASSERT_TRUE(once.Put((*store)->db()->DefaultColumnFamily(), "mark", "written once").ok());
    ASSERT_OK((*store)->Write(once));
    // 320 MiB into the busy family, a few bytes into the quiet one with each
    // batch (as the runner writes its offsets with each batch of state).
    const std::string value(2048, 'v');
    int64_t written = 0;
    for (int batch = 0; written < (320ll << 20); ++batch) {
      rocksdb::WriteBatch write;
      for (int n = 0; n < 1000; ++n) {
        ASSERT_TRUE(write.Put(busy, std::to_string(batch) + "/" + std::to_string(n), value).ok());
        written += static_cast<int64_t>(value.size());
      }
      ASSERT_TRUE(write.Put(quiet, "offset", std::to_string(batch)).ok());
      ASSERT_OK((*store)->Write(write));
    }
    EXPECT_LT(LogBytes(path), static_cast<int64_t>(2 * options.write_buffer_bytes))
        << "write-ahead log files kept, after writing " << written << " bytes";
  }
  std::filesystem::remove_all(path);
}

// RocksDB keeps every table file open by default: a large store would take
// every descriptor the process has. The store bounds it.
TEST(ProjectionStore, KeepsAtMostTheConfiguredTableFilesOpen) {
  const auto path = std::filesystem::path(::testing::TempDir()) / ("store-files-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  for (int limit : {StoreOptions{}.max_open_files, 64}) {
    auto store = ProjectionStore::Open({.path = path, .max_open_files = limit}, {"a@v1"});
    ASSERT_OK(store);
    EXPECT_EQ((*store)->db()->GetDBOptions().max_open_files, limit);
  }
  EXPECT_EQ(StoreOptions{}.max_open_files, 1024) << "the default the README and examples/rapport.toml name";
  std::filesystem::remove_all(path);
}

// A scan that meets a damaged table file says so: a bare iterator loop that
// forgets status() ends there as if the data had ended, and a view would
// answer from half its state.
TEST(ProjectionStore, AScanThatMeetsADamagedFileFailsInsteadOfEnding) {
  const auto path = std::filesystem::path(::testing::TempDir()) / ("store-damaged-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  {
    auto store = ProjectionStore::Open({.path = path}, {"a@v1"});
    ASSERT_OK(store);
    rocksdb::WriteBatch batch;
    for (int n = 0; n < 20000; ++n) {
      char key[16];
      std::snprintf(key, sizeof(key), "k%08d", n);
      ASSERT_TRUE(batch.Put((*store)->family("a@v1"), key, std::string(100, static_cast<char>('a' + n % 26))).ok());
    }
    ASSERT_OK((*store)->Write(batch));
    ASSERT_TRUE((*store)->db()->Flush(rocksdb::FlushOptions(), (*store)->family("a@v1")).ok());
    int entries = 0;
    ASSERT_OK((*store)->Scan((*store)->family("a@v1"), "k", [&](std::string_view, std::string_view) -> Result<bool> {
      ++entries;
      return true;
    }));
    EXPECT_EQ(entries, 20000);
  }
  // Damage the middle of the table file (its index and footer at the end stay whole).
  std::filesystem::path table;
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    if (entry.path().extension() == ".sst") table = entry.path();
  }
  ASSERT_FALSE(table.empty());
  {
    std::fstream file(table, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(std::filesystem::file_size(table) / 3));
    file << std::string(4096, '\x5a');
  }
  auto store = ProjectionStore::Open({.path = path}, {"a@v1"});
  ASSERT_OK(store);
  int entries = 0;
  Status scanned =
      (*store)->Scan((*store)->family("a@v1"), "k", [&](std::string_view, std::string_view) -> Result<bool> {
        ++entries;
        return true;
      });
  EXPECT_EQ(scanned.code(), absl::StatusCode::kInternal) << scanned << " after " << entries << " entries";
  EXPECT_LT(entries, 20000);
  std::filesystem::remove_all(path);
}

// A build that starts over clears its family in the same write as the rest
// of its start; other families keep their state.
TEST(ProjectionStore, StageClearEmptiesOneFamilyInTheBatchItIsGiven) {
  const auto path = std::filesystem::path(::testing::TempDir()) / ("store-clear-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  auto store = ProjectionStore::Open({.path = path}, {"a@v2", "b@v1"});
  ASSERT_OK(store);
  rocksdb::WriteBatch fill;
  for (const char* key : {"k1", "k2", "\xff\xff"}) {
    ASSERT_TRUE(fill.Put((*store)->family("a@v2"), key, "v").ok());
    ASSERT_TRUE(fill.Put((*store)->family("b@v1"), key, "v").ok());
  }
  ASSERT_OK((*store)->Write(fill));
  EXPECT_GT((*store)->sizes().memtable_bytes, 0u);
  rocksdb::WriteBatch clear;
  ASSERT_OK((*store)->StageClear("a@v2", clear));
  auto count = [&](const char* family) {
    int n = 0;
    EXPECT_OK((*store)->Scan((*store)->family(family), "", [&](std::string_view, std::string_view) -> Result<bool> {
      ++n;
      return true;
    }));
    return n;
  };
  EXPECT_EQ(count("a@v2"), 3) << "staged, not yet written";
  ASSERT_OK((*store)->Write(clear));
  EXPECT_EQ(count("a@v2"), 0);
  EXPECT_EQ(count("b@v1"), 3);
  EXPECT_EQ((*store)->StageClear("c@v1", clear).code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(path);
}

}  // namespace
}  // namespace rapport::projections
