// Projection versions (ARCHITECTURE 6): a raised version is built from the
// start of the log beside the live one, which keeps answering queries, and is
// swapped in once it has reached the live position.
//
// The build is a second lane in the same thread as the live one, so the swap
// needs no locking: between two batches, when the rebuild lane stands exactly
// where the live lane does, one write marks the new version live and removes
// the rebuild's positions; the replaced version is then dropped.
//
// Until the swap the live lane goes on folding new events into the old
// version's state with the current code (state is protobuf and evolves
// additively, and queries read it with the current code anyway), so answers
// stay fresh, alerts go out on time, and going back to the old version
// mid-build loses nothing. The rebuild sends nothing: every event it applies
// was already applied, and its alerts sent, by the live lane.

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rapport/kafka/client.h"
#include "runner_impl.h"

namespace rapport::consumers {
namespace {

using projections::ReadU64;
using runner_keys::kRebuildEnd;
using runner_keys::kRebuildFamiliesKey;
using runner_keys::kRebuildPrefix;

// The version number of "name@vN", or -1.
int VersionOf(const std::string& family) {
  auto at = family.rfind("@v");
  if (at == std::string::npos) return -1;
  int version = 0;
  for (char c : family.substr(at + 2)) {
    if (c < '0' || c > '9') return -1;
    version = version * 10 + (c - '0');
  }
  return version;
}

std::string Families(const std::vector<projections::Projection*>& projections) {
  std::vector<std::string> names;
  for (const auto* projection : projections) names.push_back(projection->Family());
  return absl::StrJoin(names, ",");
}

}  // namespace

// Decides which projections the live lane applies and which must be built:
// - a store that has consumed nothing makes every version live at once;
// - a store from before versions were tracked (none marked live) takes what
//   it has as live: its families, or the newest older version of one;
// - a version that is not live on a store that has consumed is built; the
//   live lane keeps its live version (if it has one) up to date meanwhile.
// Families of our projections that are neither live nor current (replaced
// versions whose drop a crash interrupted, builds abandoned by going back to
// an older version) are dropped.
Status ProjectionRunner::Impl::InitVersions() {
  const bool consumed = !lane.next_offset.empty();
  bool any_live = false;
  for (const auto& family : store.family_names()) any_live |= store.IsLive(family);

  std::vector<std::string> make_live;
  std::vector<projections::Projection*> to_build;
  for (auto* projection : all_projections) {
    const std::string family = projection->Family();
    if (store.IsLive(family) || !consumed || (!any_live && !store.created(family))) {
      if (!store.IsLive(family)) make_live.push_back(family);
      continue;
    }
    if (!any_live) {
      std::string newest;
      for (const auto& other : store.family_names()) {
        if (projections::ProjectionOfFamily(other) == projection->Name() && VersionOf(other) > VersionOf(newest))
          newest = other;
      }
      if (!newest.empty()) make_live.push_back(newest);
    }
    to_build.push_back(projection);
  }
  if (!make_live.empty()) {
    rocksdb::WriteBatch batch;
    RETURN_IF_ERROR(store.WriteAndMakeLive(batch, make_live));
  }

  for (const auto& family : store.family_names()) {
    if (store.IsLive(family)) continue;
    bool ours = false, current = false;
    for (const auto* projection : all_projections) {
      ours |= projections::ProjectionOfFamily(family) == projection->Name();
      current |= family == projection->Family();
    }
    if (!ours || current) continue;
    log->info("dropping {}: a replaced version, or an unfinished build of a version no longer wanted", family);
    RETURN_IF_ERROR(store.DropFamily(family));
  }

  std::vector<projections::Projection*> live;
  for (auto* projection : all_projections) {
    // A live version, which the live lane keeps up to date (a projection new
    // to the store has none: only the rebuild applies it, never both).
    if (store.ServingFamily(projection->Family()) != nullptr) live.push_back(projection);
  }
  SetProjections(lane, live);
  if (to_build.empty()) {
    if (store.Get(runner_family, kRebuildFamiliesKey).ok()) {  // an abandoned build's positions
      rocksdb::WriteBatch batch;
      batch.DeleteRange(runner_family, kRebuildPrefix, kRebuildEnd).PermitUncheckedError();
      RETURN_IF_ERROR(store.Write(batch));
    }
    return absl::OkStatus();
  }
  if (options.replay) {
    return absl::FailedPreconditionError(absl::StrCat("this directory holds state of another version than ",
                                                      Families(to_build), "; replay into a new directory"));
  }
  return StartRebuild(to_build);
}

Status ProjectionRunner::Impl::StartRebuild(const std::vector<projections::Projection*>& to_build) {
  const std::string families = Families(to_build);
  auto stored = store.Get(runner_family, kRebuildFamiliesKey);
  if (!stored.ok() && stored.status().code() != absl::StatusCode::kNotFound) return stored.status();
  if (stored.ok() && *stored == families) {
    log->info("resuming the build of {}", families);
  } else {
    // From the start, into empty families (a build of another set of versions
    // may have left state in them).
    rocksdb::WriteBatch batch;
    batch.DeleteRange(runner_family, kRebuildPrefix, kRebuildEnd).PermitUncheckedError();
    for (const auto* projection : to_build) RETURN_IF_ERROR(store.StageClear(projection->Family(), batch));
    batch.Put(runner_family, kRebuildFamiliesKey, families).PermitUncheckedError();
    RETURN_IF_ERROR(store.Write(batch));
    std::vector<std::string> serving;
    for (const auto* projection : to_build) {
      auto family = store.ServingFamily(projection->Family());
      serving.push_back(family && family->GetName() != projection->Family() ? family->GetName() : "nothing yet");
    }
    log->info("building {} from the start of {}; until it has caught up, queries read {} (kept up to date)", families,
              options.topic, absl::StrJoin(serving, ", "));
  }

  Lane& building = rebuild.emplace();
  building.live = false;
  building.prefix = kRebuildPrefix;
  SetProjections(building, to_build);
  auto built_up_to = own_state->Offsets(kRebuildPrefix);
  if (!built_up_to.ok()) return built_up_to.status();
  for (int32_t p = 0; p < partition_count; ++p) {
    building.next_offset[p] = built_up_to->count(p) ? built_up_to->at(p) : log_start[p];
    RETURN_IF_ERROR(CheckLogHolds(building, p, log_start[p], log_end[p]));
    building.stop[p] = building.next_offset[p];  // StepRebuild moves it to the live position
  }
  RETURN_IF_ERROR(LoadWindows(building));

  // Its own consumer: read by assignment, never in the group.
  ASSIGN_OR_RETURN(rebuild_consumer, ManualConsumer(".rebuild"));
  building.consumer = rebuild_consumer.get();
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partition_count);
  for (const auto& [p, offset] : building.next_offset)
    rd_kafka_topic_partition_list_add(assignment, options.topic.c_str(), p)->offset = offset;
  rd_kafka_resp_err_t err = rd_kafka_assign(building.consumer, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return kafka::KafkaStatus(err, absl::StrCat("reading ", options.topic, " to build ", families));
  PauseAtStop(building);  // every partition, until StepRebuild gives it somewhere to go
  return absl::OkStatus();
}

int64_t ProjectionRunner::Impl::RebuildBehind() {
  int64_t behind = 0;
  for (const auto& [p, at] : rebuild->next_offset) {
    auto live = lane.next_offset.find(p);
    if (live != lane.next_offset.end()) behind += std::max<int64_t>(live->second - at, 0);
  }
  return behind;
}

// One batch of the rebuild, up to where the live lane is now; the swap when
// it stands there.
Status ProjectionRunner::Impl::StepRebuild(std::vector<rd_kafka_message_t*>& messages) {
  Lane& building = *rebuild;
  // Follow the live lane: partitions paused at their old stop resume where
  // they stopped (records fetched past it were skipped, so seek back).
  rd_kafka_topic_partition_list_t* resume = rd_kafka_topic_partition_list_new(1);
  for (auto& [p, stop] : building.stop) {
    auto live = lane.next_offset.find(p);
    if (live != lane.next_offset.end()) stop = live->second;
    const int64_t at = building.next_offset[p];
    if (building.paused.contains(p) && at < stop) {
      rd_kafka_topic_partition_list_add(resume, options.topic.c_str(), p)->offset = at;
      building.paused.erase(p);
    }
  }
  if (resume->cnt > 0) {
    rd_kafka_error_t* error = rd_kafka_seek_partitions(building.consumer, resume, 10000);
    if (error == nullptr) rd_kafka_resume_partitions(building.consumer, resume);
    rd_kafka_topic_partition_list_destroy(resume);
    if (error) {
      Status status = absl::UnavailableError(absl::StrCat("seeking the build: ", rd_kafka_error_string(error)));
      rd_kafka_error_destroy(error);
      return status;
    }
  } else {
    rd_kafka_topic_partition_list_destroy(resume);
  }

  if (RebuildBehind() > 0) {
    size_t count = PollBatch(building.consumer, messages, options.batch_wait);
    Status processed = ProcessBatch(building, messages.data(), count);
    for (size_t i = 0; i < count; ++i) rd_kafka_message_destroy(messages[i]);
    RETURN_IF_ERROR(processed);
  }
  const int64_t behind = RebuildBehind();
  progress.SetRebuild({.families = Families(building.projections), .behind = behind});
  if (meters) meters->rebuild_behind->Set(static_cast<double>(behind));
  return behind == 0 ? SwapRebuilt() : absl::OkStatus();
}

// The rebuild stands where the live lane does: one write makes the new
// versions live and forgets the rebuild's positions; the live lane applies
// them from the next batch on; the replaced versions are dropped.
Status ProjectionRunner::Impl::SwapRebuilt() {
  std::vector<std::string> families, replaced;
  for (const auto* projection : rebuild->projections) {
    families.push_back(projection->Family());
    auto serving = store.ServingFamily(projection->Family());
    if (serving && serving->GetName() != projection->Family()) replaced.push_back(serving->GetName());
  }
  rocksdb::WriteBatch batch;
  batch.DeleteRange(runner_family, kRebuildPrefix, kRebuildEnd).PermitUncheckedError();
  RETURN_IF_ERROR(store.WriteAndMakeLive(batch, families));

  rd_kafka_consumer_close(rebuild_consumer.get());
  rebuild.reset();
  rebuild_consumer.reset();
  SetProjections(lane, all_projections);
  progress.SetRebuild({});
  if (meters) meters->rebuild_behind->Set(0);
  log->info("{} reached the live position and answers queries from now on{}", absl::StrJoin(families, ", "),
            replaced.empty() ? "" : absl::StrCat("; dropped ", absl::StrJoin(replaced, ", ")));
  return absl::OkStatus();
}

}  // namespace rapport::consumers
