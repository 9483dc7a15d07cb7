// ProjectionStore's disk use: a family that is written little or once (the
// marks of which versions are live, written when a build is swapped in)
// must not keep every write-ahead log file since then alive.
#include "rapport/projections/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

}  // namespace
}  // namespace rapport::projections
