#pragma once

// A projection store for the fuzz targets: every projection and the
// runner's family, in a fresh temporary directory, holding the examples
// (examples/events.jsonl) as `rapport run` would have folded them into
// kPartitions partitions, so that reads and cursors have something to find.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "rapport/consumers/projection_runner.h"
#include "rapport/events/admission.h"
#include "rapport/kafka/partitioner.h"
#include "rapport/projections/registry.h"
#include "rapport/projections/store.h"
#include "runner_keys.h"

namespace rapport::fuzz {

inline constexpr int32_t kPartitions = 8;
inline constexpr char kTopic[] = "cx.events";

struct FuzzStore {
  projections::ProjectionRegistry registry;
  std::unique_ptr<projections::ProjectionStore> store;
  int64_t next_offset = 0;

  FuzzStore() {
    projections::RegisterProjections(registry);
    const auto path = std::filesystem::temp_directory_path() / ("rapport-fuzz-" + std::to_string(getpid()));
    std::filesystem::remove_all(path);
    auto families = registry.families();
    families.push_back(consumers::ProjectionRunner::kFamily);
    store = std::move(projections::ProjectionStore::Open({.path = path}, families)).value();
    std::string count;
    projections::AppendU32(count, kPartitions);
    rocksdb::WriteBatch batch;
    batch
        .Put(store->family(consumers::ProjectionRunner::kFamily), consumers::runner_keys::PartitionCountKey(kTopic),
             count)
        .PermitUncheckedError();
    (void)store->Write(batch);
    std::ifstream examples(RAPPORT_SOURCE_DIR "/examples/events.jsonl");
    events::EventAdmission admission;
    for (std::string line; std::getline(examples, line);) {
      auto admitted = admission.AdmitJson(line, absl::FromUnixSeconds(1795348800));
      if (admitted.accepted()) Apply(admitted.event.envelope);
    }
  }

  // Folds `event` into every projection as the runner would, in one write.
  void Apply(const v1::Envelope& event) {
    const int32_t partition = kafka::PartitionForKey(event.customer_id(), kPartitions);
    rocksdb::WriteBatch batch;
    std::vector<projections::OutboxRecord> produced;
    for (auto* projection : registry.all()) {
      projections::StateBatch state(*store, store->family(projection->Family()));
      produced.clear();
      if (!projection->Apply(event, {partition, next_offset}, state, produced).ok()) continue;
      state.CommitTo(batch);
    }
    ++next_offset;
    (void)store->Write(batch);
  }
};

}  // namespace rapport::fuzz
