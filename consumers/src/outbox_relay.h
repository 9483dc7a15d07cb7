#pragma once

// The outbox relay: how what the projections produce (alerts) and the dead
// letters leave the store for Kafka exactly once.
//
// An entry is written to the outbox (runner family, "x" seq) in the same
// atomic write as the state that caused it, then sent by an idempotent
// producer that never gives up; the broker's acknowledgement removes it in
// the next write. Each sent record carries the store's id and its sequence
// number (header rapport-outbox-seq), and the relay produces in sequence order
// per target partition, so each target partition holds a prefix of the
// outbox: on start, Resume reads the tail of every target partition and sends
// again only what is not there. An entry Kafka refuses for good (too large, a
// timestamp it refuses) is moved to the parked keys ("p" seq), so it stops
// neither the pipeline nor its restart.
//
// One thread uses a relay: delivery reports run inside its calls.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rapport/base/metrics.h"
#include "rapport/base/status.h"
#include "rapport/kafka/client.h"
#include "rapport/projections/store.h"
#include "rapport/state/v1/runner.pb.h"
#include "spdlog/spdlog.h"

namespace rapport::consumers {

class OutboxRelay {
 public:
  struct Options {
    kafka::KafkaSettings kafka;
    std::string store_id;       // 16 bytes, the store's own (RunnerState::StoreId)
    Counter* parked = nullptr;  // rapport_outbox_parked_total, when metrics are kept
  };

  // Reads the next sequence number from the store. `store` and `family` (the
  // runner family) outlive the relay.
  static Result<std::unique_ptr<OutboxRelay>> Create(Options options, projections::ProjectionStore& store,
                                                     rocksdb::ColumnFamilyHandle* family);
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // Sends what the outbox holds, except what the target topics already have.
  Status Resume();

  // Numbers `entries` in order and stages them into `batch`; SendStaged sends
  // them once the batch is written.
  void Stage(std::vector<state::v1::OutboxEntry> entries, rocksdb::WriteBatch& batch);
  // Whether entries were delivered or refused for good since the last
  // StageSettled: the next write must then take their removal.
  bool HasSettled() const { return !delivered_.empty() || !to_park_.empty(); }
  // Stages the removal of delivered entries and the move of refused ones to
  // the parked keys.
  Status StageSettled(rocksdb::WriteBatch& batch);
  // Sends what Stage staged, serves delivery reports, and sends again alone
  // what Kafka refused as too large.
  Status SendStaged();
  // At the end of a run: waits (up to 30 s) for what is in flight and writes
  // what was delivered or refused. What is still in flight is sent again on
  // the next start.
  Status Drain();

  uint64_t next_seq() const { return next_seq_; }
  uint64_t failures() const { return failures_; }  // delivery errors other than refusals (a broken cluster)

 private:
  OutboxRelay(Options options, projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family);
  void OnDelivery(const rd_kafka_message_t* m);
  Result<int32_t> TargetPartitions(const std::string& topic);
  // The first sequence number each target partition does not hold yet.
  Result<std::map<std::pair<std::string, int32_t>, uint64_t>> DeliveredUpTo(
      const std::set<std::pair<std::string, int32_t>>& targets);
  Status Send(uint64_t seq, const state::v1::OutboxEntry& entry);
  void Park(uint64_t seq, const std::string& topic, rd_kafka_resp_err_t err);
  Status RetryAlone();

  Options options_;
  projections::ProjectionStore& store_;
  rocksdb::ColumnFamilyHandle* family_;
  std::shared_ptr<spdlog::logger> log_;
  kafka::KafkaHandle producer_;
  std::map<std::string, int32_t> target_partitions_;
  uint64_t next_seq_ = 0;
  std::vector<std::pair<uint64_t, state::v1::OutboxEntry>> staged_;
  std::vector<uint64_t> delivered_;  // acknowledged; removed in the next write
  std::vector<uint64_t> to_park_;    // refused for good; moved to the parked keys in the next write
  // Refused as too large, possibly only for the company it had: Kafka checks
  // the size of a whole batch of records, so a small record batched with a
  // too-large one is refused with it. Each is sent again alone; one still
  // refused alone is parked.
  std::vector<uint64_t> retry_alone_;
  std::set<uint64_t> sent_alone_;
  uint64_t failures_ = 0;
};

}  // namespace rapport::consumers
