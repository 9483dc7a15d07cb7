// The runner's batches: which records of a poll to apply, each checked
// (decoded, keyed, on its partition, valid, stamped in time, not seen
// before) and folded into every projection by the apply threads, then written
// with the offsets, the de-duplication windows and the outbox in one atomic
// write (or one per shard when there is nothing to send).
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "rapport/events/codec.h"
#include "rapport/events/time_text.h"
#include "rapport/events/validation.h"
#include "rapport/kafka/partitioner.h"
#include "runner_impl.h"

namespace rapport::consumers {

using projections::StateBatch;
using runner_keys::DedupKey;
using runner_keys::U64;

// One thread's share of a batch: the records of some of its partitions, in
// log order per partition, applied into state staged apart from the other
// shards'. State keys start with the partition, so shards never touch the
// same key, and the batch's one write is the same whichever thread applied
// which partition.
struct ProjectionRunner::Impl::Shard {
  std::vector<std::pair<DedupWindow*, std::vector<const rd_kafka_message_t*>>> partitions;
  size_t records = 0;
  std::vector<StateBatch> states;  // one per projection of the lane
  std::optional<StateBatch> runner_state;
  std::vector<state::v1::OutboxEntry> outbox;  // numbered once every shard is done
  uint64_t applied = 0, duplicates = 0, dead_lettered = 0, outside_window = 0;
  Status status;
};

bool ProjectionRunner::Impl::InReplayWindow(const v1::Envelope& event, const rd_kafka_message_t* m) const {
  const RunnerOptions::Replay& window = *options.replay;
  const int64_t occurred = events::ToUnixMillis(event.occurred_at());
  if (window.from_ms && occurred < *window.from_ms) return false;
  if (window.until_ms && occurred >= *window.until_ms) return false;
  return !window.known_at_ms ||
         events::KnownAtMillis(event, rd_kafka_message_timestamp(m, nullptr)) < *window.known_at_ms;
}

void ProjectionRunner::Impl::ApplyShard(Lane& reading, Shard& shard) {
  // A replay sends nothing, and neither does a rebuild: the live lane
  // already sent what these events caused.
  const bool sends = reading.live && !options.replay;
  StateBatch& runner_state = *shard.runner_state;
  auto dead_letter = [&](const rd_kafka_message_t* m, const std::string& stage, std::string reason) {
    if (!reading.live) return;  // the rebuild skips what the live lane dead-lettered
    reason = BoundedReason(std::move(reason));
    ++shard.dead_lettered;
    if (meters) meters->dead_lettered->Add();
    log->warn("dead-lettered {}/{}/{}: {}", options.topic, m->partition, m->offset, reason);
    if (!sends) return;
    state::v1::OutboxEntry& letter = shard.outbox.emplace_back(
        BuildDeadLetter(RejectedRecordOf(m, options.topic), options.dead_letter_topic, stage, reason));
    letter.set_source_partition(m->partition);
    letter.set_source_offset(m->offset);
  };

  v1::Envelope event;
  std::vector<projections::OutboxRecord> produced;
  for (auto& [window_of_partition, records] : shard.partitions) {
    DedupWindow& window = *window_of_partition;
    for (const rd_kafka_message_t* m : records) {
      std::string_view value(static_cast<const char*>(m->payload), m->len);
      if (auto violation = events::DecodeEvent(value, event)) {
        dead_letter(m, "decode", violation->ToString());
        continue;
      }
      std::string_view key(static_cast<const char*>(m->key), m->key_len);
      if (key.empty()) {
        dead_letter(m, "key", "the record has no key; the key must be the customer_id");
        continue;
      }
      if (key != event.customer_id()) {
        dead_letter(m, "key",
                    absl::StrCat("the record key \"", std::string(key), "\" differs from customer_id \"",
                                 event.customer_id(), "\""));
        continue;
      }
      // A customer's events must share a partition: one elsewhere (a client
      // with another partitioner) would fold into a shadow copy of the
      // customer, and queries, which find the partition by murmur2, would
      // never see it.
      if (const int32_t home = kafka::PartitionForKey(key, partition_count); home != m->partition) {
        dead_letter(m, "key",
                    absl::StrCat("the record is on partition ", m->partition, ", but its key \"", std::string(key),
                                 "\" belongs on partition ", home,
                                 " (murmur2); produce with librdkafka's murmur2_random partitioner or Java's default"));
        continue;
      }
      // Judged against the record's own time, never the wall clock, so a
      // replay judges it alike: recorded_at, or the Kafka timestamp when a
      // client left recorded_at out (that is then the one violation reported).
      absl::Time recorded = event.has_recorded_at() ? absl::FromUnixMillis(events::ToUnixMillis(event.recorded_at()))
                                                    : absl::FromUnixMillis(rd_kafka_message_timestamp(m, nullptr));
      events::Violations violations = events::Validate(event, {.reference_time = recorded});
      if (!violations.empty()) {
        dead_letter(m, "validate", events::JoinViolations(violations, kDeadLetterMaxReasonBytes));
        continue;
      }

      // A record stamped well before it occurred is refused
      // (events::kMaxStampLead): that is what lets a replay --from-time
      // start at offsets-for-times exactly.
      const int64_t stamped = rd_kafka_message_timestamp(m, nullptr);
      if (stamped >= 0 && !events::StampedInTime(events::ToUnixMillis(event.occurred_at()), stamped)) {
        dead_letter(
            m, "validate",
            absl::StrCat(
                "occurred_at: ", events::FormatTime(absl::FromUnixMillis(events::ToUnixMillis(event.occurred_at()))),
                " is more than an hour after the record's Kafka timestamp ",
                events::FormatTime(absl::FromUnixMillis(stamped)), "; stamp a record with its occurred_at"));
        continue;
      }
      if (options.replay && !InReplayWindow(event, m)) {
        ++shard.outside_window;
        continue;
      }

      // De-duplication over the last `dedup_window` ids of this partition:
      // the window is in memory; its changes go into this batch's write.
      if (!window.Remember(IdBytes(event.event_id()))) {
        ++shard.duplicates;
        if (meters) meters->duplicates->Add();
        continue;
      }

      projections::LogPosition position{m->partition, m->offset};
      for (size_t p = 0; p < reading.projections.size(); ++p) {
        produced.clear();
        shard.status = reading.projections[p]->Apply(event, position, shard.states[p], produced);
        if (!shard.status.ok()) return;
        if (meters && reading.projections[p]->Reads(event.payload_case())) reading.applied[p]->Add();
        if (!sends) continue;
        for (auto& record : produced) {
          state::v1::OutboxEntry& entry = shard.outbox.emplace_back();
          entry.set_topic(record.topic == "alerts" ? options.alerts_topic : record.topic);
          if (meters && record.topic == "alerts") meters->alerts->Add();
          entry.set_key(record.key);
          entry.set_value(record.value);
          entry.set_timestamp_ms(events::ToUnixMillis(event.occurred_at()));
          entry.set_source_partition(m->partition);
          entry.set_source_offset(m->offset);
          for (const auto& h : record.headers) {
            auto* header = entry.add_headers();
            header->set_name(h.name);
            header->set_value(h.value);
          }
        }
      }
      ++shard.applied;
    }
    const std::string prefix = DedupKey(reading.prefix, records.front()->partition, 's');
    window.EndBatch([&](uint64_t first, std::string ids) { runner_state.Put(prefix + U64(first), std::move(ids)); },
                    [&](uint64_t first) { runner_state.Delete(prefix + U64(first)); });
  }
}

Status ProjectionRunner::Impl::ProcessBatch(Lane& reading, rd_kafka_message_t** messages, size_t count) {
  const auto started = Clock::now();
  std::map<int32_t, int64_t> advanced;

  // Which records to apply, grouped by partition: not those applied before
  // (a late seek) or past the stop (--until, or the live lane's position).
  std::map<int32_t, std::vector<const rd_kafka_message_t*>> by_partition;
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_message_t* m = messages[i];
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      RETURN_IF_ERROR(OnOffsetOutOfRange(reading, m->partition));
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL && reading.live) {
      fenced = true;  // the Run loop joins again with a new consumer
      continue;
    }
    if (m->err) {
      log->warn("consuming {}: {}", options.topic, rd_kafka_message_errstr(m));
      continue;
    }
    auto known = reading.next_offset.find(m->partition);
    if (known != reading.next_offset.end() && m->offset < known->second) continue;
    auto stop = reading.stop.find(m->partition);
    if (stop != reading.stop.end() && m->offset >= stop->second) continue;
    advanced[m->partition] = m->offset + 1;
    reading.next_offset[m->partition] = m->offset + 1;
    by_partition[m->partition].push_back(m);
  }

  // Partitions to shards, the largest first to the least loaded; a small
  // batch is not worth waking another thread for.
  constexpr size_t kRecordsPerExtraShard = 256;
  size_t applying = 0;
  for (const auto& [partition, records] : by_partition) applying += records.size();
  const size_t shard_count = std::max<size_t>(
      1, std::min({pool ? pool->threads() : 1, by_partition.size(), applying / kRecordsPerExtraShard}));
  std::vector<Shard> shards(shard_count);
  std::vector<std::pair<size_t, int32_t>> sizes;
  for (const auto& [partition, records] : by_partition) sizes.emplace_back(records.size(), partition);
  std::sort(sizes.begin(), sizes.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [size, partition] : sizes) {
    Shard& least = *std::min_element(shards.begin(), shards.end(),
                                     [](const Shard& a, const Shard& b) { return a.records < b.records; });
    least.partitions.emplace_back(&reading.windows.try_emplace(partition, options.dedup_window).first->second,
                                  std::move(by_partition[partition]));
    least.records += size;
  }
  for (Shard& shard : shards) {
    for (size_t p = 0; p < reading.families.size(); ++p) {
      shard.states.emplace_back(store, reading.families[p], reading.caches[p].get());
    }
    shard.runner_state.emplace(store, runner_family);
  }
  if (applying > 0) {
    log->debug("applying {} records of {} partitions on {} threads", applying, by_partition.size(), shard_count);
  }
  // Exceptions never cross a thread: one thrown while applying (a bug, or
  // memory running out) becomes the shard's status, and the run stops with
  // it, nothing of the batch written, instead of terminating the process.
  auto guarded = [](const std::function<void(Shard&)>& work, Shard& shard) {
    try {
      work(shard);
    } catch (const std::exception& e) {
      shard.status = absl::InternalError(absl::StrCat("applying a batch: ", e.what()));
    } catch (...) {
      shard.status = absl::InternalError("applying a batch: an unknown exception");
    }
  };
  auto on_every_shard = [&](const std::function<void(Shard&)>& work) {
    if (shard_count == 1) return guarded(work, shards[0]);
    std::vector<std::function<void()>> tasks;
    for (Shard& shard : shards) tasks.emplace_back([&work, &shard, &guarded] { guarded(work, shard); });
    pool->RunAll(tasks);
  };
  on_every_shard([&](Shard& shard) { ApplyShard(reading, shard); });
  for (const Shard& shard : shards) RETURN_IF_ERROR(shard.status);

  // A batch with nothing to send (no alert, no dead letter, no delivery to
  // forget: most of them, and every batch of a replay or a rebuild) is
  // written by its shards, each its own partitions' state, offsets and
  // window in a write of its own, at once: RocksDB inserts concurrent writes
  // into its memtables in parallel, and each partition's state still moves
  // with its offset in one atomic write. Otherwise one write takes it all,
  // with the outbox in sequence order.
  const bool write_per_shard =
      shard_count > 1 && !(relay && relay->HasSettled()) &&
      std::all_of(shards.begin(), shards.end(), [](const Shard& shard) { return shard.outbox.empty(); });
  if (write_per_shard) {
    on_every_shard([&](Shard& shard) {
      rocksdb::WriteBatch own;
      for (auto& state : shard.states) state.CommitTo(own);
      shard.runner_state->CommitTo(own);
      for (const auto& [window, records] : shard.partitions) {
        const int32_t partition = records.front()->partition;
        own_state->StageOffset(own, reading.prefix, partition, advanced.at(partition));
      }
      shard.status = store.Write(own);
    });
  }

  std::vector<state::v1::OutboxEntry> outbox;
  for (Shard& shard : shards) {
    if (!shard.status.ok()) {
      for (auto& cache : reading.caches) cache->Clear();  // they may hold what was not written
      return shard.status;
    }
    (reading.live ? stats.applied : stats.rebuilt) += shard.applied;
    stats.duplicates += shard.duplicates;
    stats.dead_lettered += shard.dead_lettered;
    stats.outside_window += shard.outside_window;
    for (auto& entry : shard.outbox) outbox.push_back(std::move(entry));
  }

  // One atomic write: projection state, offsets, the de-duplication window,
  // new outbox entries, and the removal of entries already delivered.
  rocksdb::WriteBatch batch;
  for (Shard& shard : shards) {
    for (auto& state : shard.states) state.CommitTo(batch);
    shard.runner_state->CommitTo(batch);
  }
  for (const auto& [partition, offset] : write_per_shard ? std::map<int32_t, int64_t>() : advanced) {
    own_state->StageOffset(batch, reading.prefix, partition, offset);
  }
  const bool sending = !outbox.empty();
  if (relay) {
    relay->Stage(std::move(outbox), batch);
    RETURN_IF_ERROR(relay->StageSettled(batch));
  }
  if (batch.Count() > 0) {
    if (Status written = store.Write(batch); !written.ok()) {
      for (auto& cache : reading.caches) cache->Clear();  // they hold what was not written
      return written;
    }
  }
  ++stats.batches;
  if (meters && count > 0) {
    meters->batches->Add();
    meters->batch_seconds->Observe(std::chrono::duration<double>(Clock::now() - started).count());
  }
  if (reading.live) UpdateProgress();
  if (exit_after_outbox_write && sending) _exit(86);
  if (relay && reading.live) RETURN_IF_ERROR(relay->Flush(consumer.get(), lane.next_offset));
  if (!reading.stop.empty()) PauseAtStop(reading);
  return absl::OkStatus();
}

}  // namespace rapport::consumers
