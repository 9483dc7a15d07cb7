#pragma once

// The outbox relay: how what the projections produce (alerts) and the dead
// letters leave the store for Kafka exactly once, whichever instance of the
// group raised them.
//
// An entry is written to the outbox (runner family, "x" seq) in the same
// atomic write as the state that caused it, and names its origin: the
// events topic's partition and the offset of the record that caused it. The
// relay sends entries in Kafka transactions, and each transaction also
// commits, to the runner's consumer group, a watermark per source partition:
// the offset below which every record's entries are on their topics. The
// transaction makes the two one: either both the records and the watermark
// are committed, or neither (readers with isolation.level=read_committed,
// librdkafka's default, never see an aborted record).
//
// Any store, on any instance, that applies a partition produces the same
// entries for the same records (the projections are deterministic), so the
// watermark is what tells every instance what was already sent: an entry
// below its partition's watermark is dropped, not sent. A partition that
// moves here (a takeover, a rebuild from the log's start, a standby's
// promotion) sends only what no owner before it sent. The watermark is
// committed with the group's own metadata (KIP-447): an instance the group
// has moved on from (a zombie past its session timeout) can no longer commit
// one, so its transaction aborts, records and all.
//
// Only partitions this instance owns send (Own/Disown follow the group's
// assignment); the entries of others wait in the store until they are owned
// again or found below the watermark. An entry Kafka refuses for good (too
// large, a timestamp it refuses) is moved to the parked keys ("p" seq), so
// it stops neither the pipeline nor its restart.
//
// One thread uses a relay: delivery reports run inside its calls.

#include <chrono>
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

// The header each relayed record carries: "<events topic>/<partition>/<offset>"
// of the record that caused it.
inline constexpr char kOriginHeader[] = "rapport-origin";

class OutboxRelay {
 public:
  struct Options {
    kafka::KafkaSettings kafka;
    std::string source_topic;         // the events topic, whose partitions the watermarks are of
    std::string transactional_id;     // stable for the store, unique in the cluster (OutboxTransactionalId)
    Counter* parked = nullptr;        // rapport_outbox_parked_total, when metrics are kept
    Counter* transactions = nullptr;  // rapport_outbox_transactions_total{result}, when metrics are kept
    Counter* aborted = nullptr;
    // Entries wait at most this long for company: one transaction carries
    // every entry of that time (a commit costs a few round trips).
    std::chrono::milliseconds linger{100};
    // Watermarks with no entry to carry are committed this often (for lag
    // tools, and so that a takeover skips more).
    std::chrono::milliseconds watermark_interval{1000};
  };

  // Loads the outbox from the store. Contacts no broker. `store` and
  // `family` (the runner family) outlive the relay.
  static Result<std::unique_ptr<OutboxRelay>> Create(Options options, projections::ProjectionStore& store,
                                                     rocksdb::ColumnFamilyHandle* family);
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // The group assigned `partition` here: its entries are sent once its
  // watermark has been read (in the next Flush).
  void Own(int32_t partition);
  // The group took it away: its entries stay in the store, unsent.
  void Disown(int32_t partition);
  const std::set<int32_t>& owned() const { return owned_; }

  // Numbers `entries` in order and stages them into `batch`; Flush sends
  // them once the batch is written.
  void Stage(std::vector<state::v1::OutboxEntry> entries, rocksdb::WriteBatch& batch);
  // A standby's partitions (applied here as their owner applies them,
  // sending nothing): their entries below the partition's watermark were
  // sent by the owner, and are forgotten (removed in the next write); the
  // rest wait for a promotion. Asks Kafka for the watermarks (at most 1 s).
  void ForgetSentByOwners(rd_kafka_t* consumer, const std::set<int32_t>& partitions);
  // Whether entries were delivered or refused for good since the last
  // StageSettled: the next write must then take their removal.
  bool HasSettled() const { return !delivered_.empty() || !to_park_.empty(); }
  // Stages the removal of delivered entries and the move of refused ones to
  // the parked keys.
  Status StageSettled(rocksdb::WriteBatch& batch);

  // Sends the owned partitions' entries in one transaction with their
  // watermarks (`next_offset`: what the store has applied of each, all of
  // whose entries are staged), committed to `consumer`'s group. At most once
  // per `linger` with entries, once per `watermark_interval` without;
  // `now`: at once. A transaction Kafka aborts (a rebalance, a record it
  // refuses) leaves its entries pending for the next Flush. Errors only
  // when the producer cannot go on (fenced, or a fatal error).
  Status Flush(rd_kafka_t* consumer, const std::map<int32_t, int64_t>& next_offset, bool now = false);
  // At the end of a run, after the last Flush: writes what was delivered or
  // refused.
  Status Drain();

  uint64_t next_seq() const { return next_seq_; }
  size_t pending() const { return pending_.size(); }
  // Whether entries wait that this instance is to send: those with no
  // origin, and those of owned partitions (before the group has assigned
  // any, `joined` false: any entry at all).
  bool HasToSend(bool joined) const;
  // An owned partition's watermark as last read or committed; -1: not read yet.
  int64_t watermark(int32_t partition) const {
    auto it = watermark_.find(partition);
    return it == watermark_.end() ? -1 : it->second;
  }

 private:
  OutboxRelay(Options options, projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family);
  Status Load();
  void OnDelivery(const rd_kafka_message_t* m);
  Result<int32_t> TargetPartitions(const std::string& topic);
  Status EnsureTransactional();
  // Reads the watermarks of owned partitions not read yet (false: Kafka did
  // not answer; tried again in the next Flush).
  bool ReadWatermarks(rd_kafka_t* consumer);
  // One transaction: `seqs`' entries and the `watermarks`. False when Kafka
  // aborted it (the entries stay pending).
  Result<bool> Transact(rd_kafka_t* consumer, const std::vector<uint64_t>& seqs,
                        const std::map<int32_t, int64_t>& watermarks);
  Status Produce(uint64_t seq, const state::v1::OutboxEntry& entry);
  void Park(uint64_t seq, std::string topic, rd_kafka_resp_err_t err);  // `topic` copied: the entry goes

  Options options_;
  projections::ProjectionStore& store_;
  rocksdb::ColumnFamilyHandle* family_;
  std::shared_ptr<spdlog::logger> log_;
  kafka::KafkaHandle producer_;
  bool transactional_ = false;  // init_transactions done
  std::map<std::string, int32_t> target_partitions_;
  uint64_t next_seq_ = 0;
  std::map<uint64_t, state::v1::OutboxEntry> pending_;  // in the outbox, not yet delivered
  std::set<int32_t> owned_;
  std::map<int32_t, int64_t> watermark_;  // of owned partitions, as last read or committed
  std::vector<uint64_t> delivered_;       // committed; removed in the next write
  std::vector<uint64_t> to_park_;         // refused for good; moved to the parked keys in the next write
  // Refused as too large in a transaction, possibly only for the company it
  // had (Kafka checks a whole record batch's size): each is sent again alone,
  // in a transaction of its own; one still refused alone is parked.
  std::set<uint64_t> suspects_;
  std::set<uint64_t> refused_in_transaction_;  // delivery reports of the transaction under way
  std::chrono::steady_clock::time_point next_entries_, next_watermarks_;
  std::chrono::steady_clock::time_point next_abort_warning_;
};

// "<group>.relay.<store id in hex>": stable across the store's restarts (a
// restart fences the instance it replaces and aborts its open transaction),
// different for every store.
std::string OutboxTransactionalId(const std::string& group_id, const std::string& store_id);

}  // namespace rapport::consumers
