#pragma once

// A projection in a store of its own, for unit tests: admit JSON events and
// apply them as the runner would, batch by batch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "rapport/events/admission.h"
#include "rapport/projections/projection.h"
#include "rapport/testing/status.h"

namespace rapport::projections {

class ProjectionHarness {
 public:
  explicit ProjectionHarness(Projection& projection) : projection_(projection) { Reset(); }
  ~ProjectionHarness() {
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  // Starts again with an empty store.
  void Reset() {
    store_.reset();
    if (!path_.empty()) std::filesystem::remove_all(path_);
    static int counter = 0;
    path_ = std::filesystem::path(::testing::TempDir()) /
            (std::string(projection_.Name()) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    auto store = ProjectionStore::Open({.path = path_}, {projection_.Family()});
    EXPECT_OK(store);
    if (store.ok()) store_ = std::move(store).value();
  }

  // Admits each event (as of 2026-11-22T12:00:00Z) and applies it as read
  // from `partition`, committing every `per_batch` events (0: once, at the
  // end). Returns the records the projection put in its outbox.
  std::vector<OutboxRecord> Apply(const std::vector<std::string>& lines, int32_t partition = 0, size_t per_batch = 0) {
    events::EventAdmission admission;
    StateBatch state(*store_, store_->family(projection_.Family()));
    std::vector<OutboxRecord> outbox;
    size_t in_batch = 0;
    for (const auto& line : lines) {
      auto admitted = admission.AdmitJson(line, absl::FromUnixSeconds(1795348800));
      EXPECT_TRUE(admitted.accepted()) << (admitted.accepted() ? "" : admitted.violations.front().ToString()) << "\n"
                                       << line;
      if (!admitted.accepted()) continue;
      EXPECT_OK(projection_.Apply(admitted.event.envelope, {partition, offset_++}, state, outbox));
      if (per_batch != 0 && ++in_batch == per_batch) {
        Commit(state);
        in_batch = 0;
      }
    }
    Commit(state);
    return outbox;
  }

  ProjectionStore& store() { return *store_; }
  std::string Digest() { return store_->Digest(projection_.Family()).value(); }

 private:
  void Commit(StateBatch& state) {
    rocksdb::WriteBatch batch;
    state.CommitTo(batch);
    EXPECT_OK(store_->Write(batch));
  }

  Projection& projection_;
  std::filesystem::path path_;
  std::unique_ptr<ProjectionStore> store_;
  int64_t offset_ = 0;
};

}  // namespace rapport::projections
