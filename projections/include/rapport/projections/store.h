#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rapport/events/status.h"

namespace rapport::projections {

struct StoreOptions {
  std::filesystem::path path;
  bool read_only = false;  // a consistent view as of opening; works beside a running writer
  // One memory budget for the whole process, however many column families:
  // a block cache shared by all of them, and write buffers charged to it.
  size_t block_cache_bytes = 256ull << 20;
  size_t write_buffer_bytes = 128ull << 20;
};

// The RocksDB database that holds projection state: one column family per
// projection version ("customer_profile@v1") and the "runner" family for
// stored offsets, de-duplication and the outbox. Write-ahead log on, so a
// crash never needs a rebuild. Thread-safe (RocksDB is); the handles live as
// long as the store.
class ProjectionStore {
 public:
  // Opens or creates the store with the column families `families` (plus any
  // it already has). Read-only opening needs the families to exist.
  static Result<std::unique_ptr<ProjectionStore>> Open(const StoreOptions& options,
                                                       const std::vector<std::string>& families);
  ~ProjectionStore();

  rocksdb::DB* db() { return db_.get(); }
  // The family's handle; nullptr when the store has no such family.
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const;
  std::vector<std::string> family_names() const;

  // Writes a batch atomically (WAL on).
  Status Write(rocksdb::WriteBatch& batch);
  // Reads one value; NotFound when absent.
  Result<std::string> Get(rocksdb::ColumnFamilyHandle* family, std::string_view key);

  // SHA-256, hex, over every key and value of `family` in key order: equal
  // digests mean equal state.
  Result<std::string> Digest(const std::string& family);

 private:
  ProjectionStore() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
  bool read_only_ = false;
};

// A RocksDB status as ours: corruption and I/O errors are kInternal (stop),
// busy/try-again kUnavailable, not-found kNotFound.
Status StoreStatus(const rocksdb::Status& status, std::string_view context);

// One page of a scan over the entries of one `kind` in every partition
// ([partition][kind]...), in key order, for paged API routes. `cursor` is a
// previous page's (empty: the first page); a cursor not made here is
// InvalidArgument "cursor: ...". `visit(value, keep)` says whether the entry
// matches and, when `keep`, the caller adds it to its page. Returns the next
// page's cursor, empty after the last match. Cost grows with the entries
// scanned from the cursor, not with the page.
using PageVisitor = std::function<Result<bool>(const rocksdb::Slice& value, bool keep)>;
Result<std::string> ScanPage(ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, int32_t partition_count,
                             char kind, const std::string& cursor, size_t limit, const PageVisitor& visit);

}  // namespace rapport::projections
