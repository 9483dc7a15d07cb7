#include "rapport/projections/store.h"

#include <openssl/evp.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rapport/projections/keys.h"

namespace rapport::projections {
namespace {
constexpr char kLivePrefix[] = "live/";
}  // namespace

Result<std::string> ScanPage(ProjectionStore& store, rocksdb::ColumnFamilyHandle* family, int32_t partition_count,
                             char kind, const std::string& cursor, size_t limit, const PageVisitor& visit,
                             const std::function<bool(int32_t)>& in, std::vector<std::string>* cursors) {
  // A cursor is the last key of the previous page, base64url: [partition u32][kind]...
  std::string after;
  if (!cursor.empty() && (!absl::WebSafeBase64Unescape(cursor, &after) || after.size() < 5 || after[4] != kind)) {
    return absl::InvalidArgumentError("cursor: not a cursor this API returned");
  }
  const int64_t first = after.empty() ? 0 : static_cast<int64_t>(ReadU32(after));
  // A cursor names the partition it resumes in; one this store does not have
  // (a crafted cursor naming partition 2^31) would scan for ever.
  if (first >= partition_count) {
    return absl::InvalidArgumentError(absl::StrCat("cursor: names partition ", first, ", but the store has ",
                                                   partition_count, "; not a cursor this API returned"));
  }
  std::unique_ptr<rocksdb::Iterator> it(store.db()->NewIterator(rocksdb::ReadOptions(), family));
  size_t kept = 0;
  std::string last;
  for (auto p = static_cast<int32_t>(first); p < partition_count; ++p) {
    if (in && !in(p)) continue;
    const std::string prefix = PartitionKey(p, kind);
    const bool resume = p == first && !after.empty();
    it->Seek(resume ? after : prefix);
    if (resume && it->Valid() && it->key() == rocksdb::Slice(after)) it->Next();
    for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
      ASSIGN_OR_RETURN(bool matches, visit(it->value(), kept < limit));
      if (!matches) continue;
      if (kept == limit) return absl::WebSafeBase64Escape(last);  // one more exists: not the last page
      ++kept;
      last = it->key().ToString();
      if (cursors != nullptr) cursors->push_back(absl::WebSafeBase64Escape(last));
    }
    RETURN_IF_ERROR(StoreStatus(it->status(), "scanning a page"));
  }
  return std::string();
}

Status StoreStatus(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(std::string(context), ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsBusy() || status.IsTryAgain() || status.IsTimedOut()) return absl::UnavailableError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

Result<std::unique_ptr<ProjectionStore>> ProjectionStore::Open(const StoreOptions& options,
                                                               const std::vector<std::string>& families) {
  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !options.read_only;
  db_options.create_missing_column_families = !options.read_only;
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes, cache);
  db_options.max_background_jobs = 2;
  db_options.max_open_files = options.max_open_files;
  // A family written once or seldom (the default family's marks of which
  // versions are live) would otherwise keep every write-ahead log file since
  // then alive until its own memtable fills: at 46,000 customers the logs
  // were half the store. Past this size, the families holding the oldest log
  // are flushed.
  db_options.max_total_wal_size = options.write_buffer_bytes;
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.keep_log_file_num = 3;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.cache_index_and_filter_blocks = true;
  // Most point reads ask for keys that do not exist (a new event id in the
  // de-duplication window, a customer's first event): bloom filters answer
  // those without reading data blocks.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions family_options;
  family_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  family_options.compression = rocksdb::kLZ4Compression;

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, options.path.string(), &existing).ok()) {
    for (const auto& name : existing) {
      if (name != rocksdb::kDefaultColumnFamilyName) names.push_back(name);
    }
  } else if (options.read_only) {
    return absl::NotFoundError(absl::StrCat("no rapport store at ", options.path.string()));
  }
  std::set<std::string> created;
  for (const auto& name : families) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    const std::string projection = ProjectionOfFamily(name);
    const bool other_version = std::any_of(names.begin(), names.end(), [&](const std::string& present) {
      return present.find('@') != std::string::npos && ProjectionOfFamily(present) == projection;
    });
    if (options.read_only && other_version) continue;  // queries read the version there is
    if (options.read_only) {
      return absl::NotFoundError(absl::StrCat("the store at ", options.path.string(), " has no ", name,
                                              " (has it run with that projection?)"));
    }
    names.push_back(name);
    created.insert(name);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) descriptors.emplace_back(name, family_options);

  std::unique_ptr<ProjectionStore> store(new ProjectionStore());
  store->read_only_ = options.read_only;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status =
      options.read_only ? rocksdb::DB::OpenForReadOnly(db_options, options.path.string(), descriptors, &handles, &db)
                        : rocksdb::DB::Open(db_options, options.path.string(), descriptors, &handles, &db);
  if (!status.ok()) {
    if (status.IsIOError() && status.ToString().find("lock") != std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store at ", options.path.string(),
                       " is in use by another rapport process; query it with --read-only tools, or stop that process"));
    }
    return StoreStatus(status, absl::StrCat("opening the store at ", options.path.string()));
  }
  store->db_.reset(db);
  store->created_ = std::move(created);
  for (size_t i = 0; i < handles.size(); ++i) {
    // A dropped family's files go when its last handle does: a query still
    // reading a swapped-out version finishes on it.
    store->families_[names[i]] = std::shared_ptr<rocksdb::ColumnFamilyHandle>(
        handles[i], [db](rocksdb::ColumnFamilyHandle* handle) { db->DestroyColumnFamilyHandle(handle); });
  }
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kLivePrefix); it->Valid() && it->key().starts_with(kLivePrefix); it->Next()) {
    std::string family = it->key().ToString().substr(sizeof(kLivePrefix) - 1);
    store->live_[ProjectionOfFamily(family)] = family;
  }
  RETURN_IF_ERROR(StoreStatus(it->status(), "reading which versions are live"));
  return store;
}

ProjectionStore::~ProjectionStore() {
  families_.clear();  // handles first: the database must outlive them
  if (db_ && !read_only_) db_->Close().PermitUncheckedError();
}

rocksdb::ColumnFamilyHandle* ProjectionStore::family(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = families_.find(name);
  return it == families_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ProjectionStore::family_names() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [name, handle] : families_) names.push_back(name);
  return names;
}

bool ProjectionStore::created(const std::string& name) const {
  std::shared_lock lock(mutex_);
  return created_.contains(name);
}

std::shared_ptr<rocksdb::ColumnFamilyHandle> ProjectionStore::ServingFamily(const std::string& family) const {
  std::shared_lock lock(mutex_);
  auto live = live_.find(ProjectionOfFamily(family));
  if (live == live_.end() && !live_.empty()) return nullptr;  // a new projection, not built yet
  auto it = families_.find(live != live_.end() ? live->second : family);
  return it == families_.end() ? nullptr : it->second;
}

Status NoLiveState(std::string_view projection) {
  return absl::UnavailableError(absl::StrCat("no ", std::string(projection),
                                             " state is live yet: the projection is being built from the log, or "
                                             "this store has never run it"));
}

bool ProjectionStore::IsLive(const std::string& family) const {
  std::shared_lock lock(mutex_);
  auto live = live_.find(ProjectionOfFamily(family));
  return live != live_.end() && live->second == family;
}

Status ProjectionStore::WriteAndMakeLive(rocksdb::WriteBatch& batch, const std::vector<std::string>& families) {
  std::vector<std::string> replaced;
  {
    std::unique_lock lock(mutex_);
    for (const auto& family : families) {
      if (!families_.contains(family)) return absl::InternalError(absl::StrCat("the store has no ", family));
      auto live = live_.find(ProjectionOfFamily(family));
      if (live != live_.end() && live->second != family) {
        batch.Delete(absl::StrCat(kLivePrefix, live->second)).PermitUncheckedError();
        replaced.push_back(live->second);
      }
      batch.Put(absl::StrCat(kLivePrefix, family), "").PermitUncheckedError();
    }
    RETURN_IF_ERROR(Write(batch));
    for (const auto& family : families) live_[ProjectionOfFamily(family)] = family;
  }
  for (const auto& family : replaced) RETURN_IF_ERROR(DropFamily(family));
  return absl::OkStatus();
}

Status ProjectionStore::DropFamily(const std::string& name) {
  std::unique_lock lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) return absl::OkStatus();
  auto live = live_.find(ProjectionOfFamily(name));
  if (live != live_.end() && live->second == name) {
    return absl::FailedPreconditionError(absl::StrCat(name, " is live; it cannot be dropped"));
  }
  RETURN_IF_ERROR(StoreStatus(db_->DropColumnFamily(it->second.get()), absl::StrCat("dropping ", name)));
  families_.erase(it);
  return absl::OkStatus();
}

std::string ProjectionOfFamily(const std::string& family) { return family.substr(0, family.rfind('@')); }

Status ProjectionStore::Write(rocksdb::WriteBatch& batch) {
  rocksdb::WriteOptions options;  // WAL on; a process crash loses nothing written
  return StoreStatus(db_->Write(options, &batch), "writing a batch");
}

Result<std::string> ProjectionStore::Get(rocksdb::ColumnFamilyHandle* family, std::string_view key) {
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), family, rocksdb::Slice(key.data(), key.size()), &value);
  if (status.IsNotFound()) return absl::NotFoundError("no such key");
  RETURN_IF_ERROR(StoreStatus(status, "reading"));
  return value;
}

Status ProjectionStore::Scan(rocksdb::ColumnFamilyHandle* family, std::string_view prefix, ScanVisitor visit,
                             std::string_view from, const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, family));
  const rocksdb::Slice start =
      from.empty() ? rocksdb::Slice(prefix.data(), prefix.size()) : rocksdb::Slice(from.data(), from.size());
  const rocksdb::Slice wanted(prefix.data(), prefix.size());
  for (it->Seek(start); it->Valid() && it->key().starts_with(wanted); it->Next()) {
    ASSIGN_OR_RETURN(bool more, visit(std::string_view(it->key().data(), it->key().size()),
                                      std::string_view(it->value().data(), it->value().size())));
    if (!more) return absl::OkStatus();
  }
  return StoreStatus(it->status(), "scanning the store");
}

Status ProjectionStore::StageClear(const std::string& name, rocksdb::WriteBatch& batch) {
  rocksdb::ColumnFamilyHandle* handle = family(name);
  if (handle == nullptr) return absl::NotFoundError(absl::StrCat("the store has no ", name));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle));
  it->SeekToLast();
  RETURN_IF_ERROR(StoreStatus(it->status(), absl::StrCat("reading ", name)));
  if (!it->Valid()) return absl::OkStatus();
  std::string end = it->key().ToString();
  end.push_back('\0');  // just past the last key
  batch.DeleteRange(handle, "", end).PermitUncheckedError();
  return absl::OkStatus();
}

ProjectionStore::Sizes ProjectionStore::sizes() const {
  Sizes sizes;
  db_->GetAggregatedIntProperty("rocksdb.live-sst-files-size", &sizes.live_sst_bytes);
  db_->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &sizes.memtable_bytes);
  return sizes;
}

std::shared_ptr<const rocksdb::Snapshot> ProjectionStore::Snapshot() {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<const rocksdb::Snapshot>(db->GetSnapshot(), [db](const rocksdb::Snapshot* s) {
    if (s != nullptr) db->ReleaseSnapshot(s);
  });
}

Result<std::string> ProjectionStore::Digest(const std::string& name) {
  rocksdb::ColumnFamilyHandle* handle = family(name);
  if (handle == nullptr) return absl::NotFoundError(absl::StrCat("the store has no ", name));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle));
  auto add = [&](const rocksdb::Slice& s) {
    std::string size;  // length-prefixed, so ("ab","c") and ("a","bc") differ
    AppendU64(size, s.size());
    EVP_DigestUpdate(sha.get(), size.data(), size.size());
    EVP_DigestUpdate(sha.get(), s.data(), s.size());
  };
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    add(it->key());
    add(it->value());
  }
  RETURN_IF_ERROR(StoreStatus(it->status(), absl::StrCat("reading ", name)));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &length);
  return absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), length));
}

}  // namespace rapport::projections
