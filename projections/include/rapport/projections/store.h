#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "rapport/base/status.h"

namespace rapport::projections {

struct StoreOptions {
  std::filesystem::path path;
  bool read_only = false;  // a consistent view as of opening; works beside a running writer
  // One memory budget for the whole process, however many column families:
  // a block cache shared by all of them, and write buffers charged to it.
  size_t block_cache_bytes = 256ull << 20;
  size_t write_buffer_bytes = 128ull << 20;
  // Table files kept open (RocksDB's table cache); more are opened per read
  // and closed. Bounded so that a store of many files cannot take every
  // descriptor the process has (connections, Kafka sockets).
  int max_open_files = 1024;
};

// The RocksDB database that holds projection state: one column family per
// projection version ("customer_profile@v1") and the "runner" family for
// stored offsets, de-duplication and the outbox. Write-ahead log on, so a
// crash never needs a rebuild. Thread-safe (RocksDB is, and the family maps
// are guarded).
//
// Versions (ARCHITECTURE 6): of the families of one projection, the *live*
// one holds the state that queries read. A raised version is built beside it
// and then made live in the same write that finishes the build; the family it
// replaces is dropped, its files freed once the last query reading it ends.
// Which family is live is recorded in the default family ("live/NAME@vN").
class ProjectionStore {
 public:
  // Opens or creates the store with the column families `families` (plus any
  // it already has). Read-only opening needs each family, or another version
  // of its projection, to exist.
  static Result<std::unique_ptr<ProjectionStore>> Open(const StoreOptions& options,
                                                       const std::vector<std::string>& families);
  ~ProjectionStore();

  rocksdb::DB* db() { return db_.get(); }
  // The family's handle; nullptr when the store has no such family. Valid
  // until the family is dropped (the runner's own families never are).
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const;
  std::vector<std::string> family_names() const;
  // Whether `name` was created by this Open (it did not exist before).
  bool created(const std::string& name) const;

  // The family queries of a projection read: the live version of the
  // projection of `family` ("churn@v3" -> "churn@v2" while v3 is built), or
  // `family` itself in a store that marks nothing live (written before
  // versions were tracked). Null when there is none: a projection new to the
  // store is not served until its first build is swapped in. The handle
  // stays usable while held, even if the family is swapped out meanwhile.
  std::shared_ptr<rocksdb::ColumnFamilyHandle> ServingFamily(const std::string& family) const;
  // Whether `family` is its projection's live version.
  bool IsLive(const std::string& family) const;
  // Writes `batch` together with marks that make each of `families` its
  // projection's live version, then serves them and drops the versions they
  // replace.
  Status WriteAndMakeLive(rocksdb::WriteBatch& batch, const std::vector<std::string>& families);
  // Drops a family that is not live (an abandoned or replaced version).
  Status DropFamily(const std::string& name);

  // Writes a batch atomically (WAL on).
  Status Write(rocksdb::WriteBatch& batch);
  // Reads one value; NotFound when absent.
  Result<std::string> Get(rocksdb::ColumnFamilyHandle* family, std::string_view key);

  // Visits, in key order, the entries of `family` whose keys start with
  // `prefix`, from `from` on (empty: the first of them), until `visit`
  // answers false or an error. A read error comes back as an error, never as
  // the end of the data (which a bare iterator loop that forgets status()
  // makes of it). `snapshot` (see Snapshot) reads one state across scans.
  using ScanVisitor = absl::FunctionRef<Result<bool>(std::string_view key, std::string_view value)>;
  Status Scan(rocksdb::ColumnFamilyHandle* family, std::string_view prefix, ScanVisitor visit,
              std::string_view from = {}, const rocksdb::Snapshot* snapshot = nullptr);
  // Stages, in `batch`, the removal of everything in `family` (a build that
  // starts over).
  Status StageClear(const std::string& family, rocksdb::WriteBatch& batch);

  // Bytes the store holds, for metrics: live table files and memtables.
  struct Sizes {
    uint64_t live_sst_bytes = 0;
    uint64_t memtable_bytes = 0;
  };
  Sizes sizes() const;

  // The state as of now, for reads that must agree with each other while
  // writes go on; released with the last copy.
  std::shared_ptr<const rocksdb::Snapshot> Snapshot();

  // SHA-256, hex, over every key and value of `family` in key order: equal
  // digests mean equal state.
  Result<std::string> Digest(const std::string& family);

 private:
  ProjectionStore() = default;
  std::unique_ptr<rocksdb::DB> db_;
  mutable std::shared_mutex mutex_;  // guards the three maps below
  std::map<std::string, std::shared_ptr<rocksdb::ColumnFamilyHandle>> families_;
  std::map<std::string, std::string> live_;  // projection name -> its live family
  std::set<std::string> created_;
  bool read_only_ = false;
};

// What a view answers when its projection has no live state (Unavailable).
Status NoLiveState(std::string_view projection);

// "churn@v3" -> "churn": the projection a family belongs to.
std::string ProjectionOfFamily(const std::string& family);

// A RocksDB status as ours: corruption and I/O errors are kInternal (stop),
// busy/try-again kUnavailable, not-found kNotFound.
Status StoreStatus(const rocksdb::Status& status, std::string_view context);

// One page of a scan over the entries of one `kind` in every partition
// ([partition][kind]...), in key order, for paged API routes. `cursor` is a
// previous page's (empty: the first page); a cursor not made here is
// InvalidArgument "cursor: ...". `visit(value, keep)` says whether the entry
// matches and, when `keep`, the caller adds it to its page. Returns the next
// page's cursor, empty after the last match. Cost grows with the entries
// scanned from the cursor, not with the page. `in`: only the partitions it
// accepts (null: all). `cursors`: each kept entry's own cursor, in order
// (several instances merge their pages by them: key order is page order).
using PageVisitor = std::function<Result<bool>(const rocksdb::Slice& value, bool keep)>;
Result<std::string> ScanPage(ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, int32_t partition_count,
                             char kind, const std::string& cursor, size_t limit, const PageVisitor& visit,
                             const std::function<bool(int32_t)>& in = nullptr,
                             std::vector<std::string>* cursors = nullptr);

}  // namespace rapport::projections
