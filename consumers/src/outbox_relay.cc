#include "outbox_relay.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/partitioner.h"
#include "runner_keys.h"

namespace rapport::consumers {
namespace {

using Clock = std::chrono::steady_clock;
using projections::ReadU64;
using runner_keys::kOutboxNextKey;
using runner_keys::OutboxKey;
using runner_keys::U64;

// Errors that sending the same record again can never cure: the record, not
// the cluster, is at fault.
bool RefusedForGood(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

bool TooLarge(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

Status Damaged() { return absl::InternalError("an outbox entry does not parse; the store is damaged"); }

// An error the producer cannot go on from (fenced by another producer with
// the same transactional id, or a fatal one): the run stops with it.
Status CannotGoOn(rd_kafka_error_t* error, const char* doing) {
  Status status = absl::FailedPreconditionError(
      absl::StrCat("outbox relay, ", doing, ": ", rd_kafka_error_string(error),
                   rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED
                       ? " (another process uses this store's transactional id: is this data directory copied?)"
                       : ""));
  rd_kafka_error_destroy(error);
  return status;
}

}  // namespace

std::string OutboxTransactionalId(const std::string& group_id, const std::string& store_id) {
  return absl::StrCat(group_id, ".relay.", absl::BytesToHexString(store_id));
}

OutboxRelay::OutboxRelay(Options options, projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family)
    : options_(std::move(options)), store_(store), family_(family), log_(ModuleLogger("consumers")) {}

OutboxRelay::~OutboxRelay() = default;

Result<std::unique_ptr<OutboxRelay>> OutboxRelay::Create(Options options, projections::ProjectionStore& store,
                                                         rocksdb::ColumnFamilyHandle* family) {
  if (options.transactional_id.empty()) return absl::InvalidArgumentError("the relay needs a transactional id");
  std::unique_ptr<OutboxRelay> relay(new OutboxRelay(std::move(options), store, family));
  RETURN_IF_ERROR(relay->Load());
  // A transaction lasts a few round trips: one open longer than this is an
  // instance that died in it, whose open transaction (and the watermarks in
  // it) would hold back the partitions' next owner until Kafka aborts it.
  kafka::KafkaSettings kafka = relay->options_.kafka;
  kafka.properties.try_emplace("transaction.timeout.ms", "10000");
  ASSIGN_OR_RETURN(kafka::KafkaConf conf,
                   kafka::BuildKafkaConf(kafka, {{"transactional.id", relay->options_.transactional_id,
                                                  "the relay's records and watermarks are one transaction"}}));
  rd_kafka_conf_set_opaque(conf.get(), relay.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<OutboxRelay*>(opaque)->OnDelivery(m);
  });
  ASSIGN_OR_RETURN(relay->producer_, kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  return relay;
}

Status OutboxRelay::Load() {
  auto next = store_.Get(family_, kOutboxNextKey);
  if (next.ok()) {
    next_seq_ = ReadU64(*next);
  } else if (next.status().code() != absl::StatusCode::kNotFound) {
    return next.status();
  }
  size_t unsourced = 0;
  RETURN_IF_ERROR(store_.Scan(family_, "x", [&](std::string_view key, std::string_view value) -> Result<bool> {
    state::v1::OutboxEntry entry;
    if (key.size() != 9 || !entry.ParseFromArray(value.data(), static_cast<int>(value.size()))) return Damaged();
    if (!entry.has_source_offset()) ++unsourced;
    pending_.emplace(ReadU64(key.substr(1, 8)), std::move(entry));
    return true;
  }));
  if (unsourced > 0) {
    log_->warn(
        "outbox: {} entries written by an older rapport carry no origin; they are sent as they are, and any the "
        "older version had sent just before it stopped arrive twice",
        unsourced);
  }
  if (!pending_.empty()) log_->info("outbox: {} entries waiting to be sent", pending_.size());
  return absl::OkStatus();
}

void OutboxRelay::Own(int32_t partition) {
  owned_.insert(partition);
  watermark_.erase(partition);  // read again: another owner may have moved it
}

void OutboxRelay::Disown(int32_t partition) {
  owned_.erase(partition);
  watermark_.erase(partition);
}

bool OutboxRelay::HasToSend(bool joined) const {
  if (!joined) return !pending_.empty();
  return std::any_of(pending_.begin(), pending_.end(), [&](const auto& entry) {
    return !entry.second.has_source_offset() || owned_.contains(entry.second.source_partition());
  });
}

void OutboxRelay::OnDelivery(const rd_kafka_message_t* m) {
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // delivered only once the transaction commits
  const auto seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(m->_private));
  if (TooLarge(m->err) && !suspects_.contains(seq)) {
    refused_in_transaction_.insert(seq);  // a suspect once the transaction is aborted
  } else if (RefusedForGood(m->err)) {
    Park(seq, rd_kafka_topic_name(m->rkt), m->err);
  } else if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
    log_->warn("outbox record {} to {} not delivered: {}; it is sent again", seq, rd_kafka_topic_name(m->rkt),
               rd_kafka_err2str(m->err));
  }
}

Result<int32_t> OutboxRelay::TargetPartitions(const std::string& topic) {
  auto it = target_partitions_.find(topic);
  if (it != target_partitions_.end()) return it->second;
  ASSIGN_OR_RETURN(int32_t count, kafka::TopicPartitionCount(producer_.get(), options_.kafka, topic));
  target_partitions_[topic] = count;
  return count;
}

void OutboxRelay::Stage(std::vector<state::v1::OutboxEntry> entries, rocksdb::WriteBatch& batch) {
  if (entries.empty()) return;
  for (auto& entry : entries) {
    const uint64_t seq = next_seq_++;
    batch.Put(family_, OutboxKey(seq), events::EncodeDeterministic(entry)).PermitUncheckedError();
    pending_.emplace(seq, std::move(entry));
  }
  batch.Put(family_, kOutboxNextKey, U64(next_seq_)).PermitUncheckedError();
}

Status OutboxRelay::StageSettled(rocksdb::WriteBatch& batch) {
  for (uint64_t seq : delivered_) batch.Delete(family_, OutboxKey(seq)).PermitUncheckedError();
  delivered_.clear();
  for (uint64_t seq : to_park_) {
    auto entry = store_.Get(family_, OutboxKey(seq));
    if (!entry.ok() && entry.status().code() != absl::StatusCode::kNotFound) return entry.status();
    if (entry.ok()) batch.Put(family_, runner_keys::ParkedKey(seq), *entry).PermitUncheckedError();
    batch.Delete(family_, OutboxKey(seq)).PermitUncheckedError();
  }
  to_park_.clear();
  return absl::OkStatus();
}

Status OutboxRelay::EnsureTransactional() {
  if (transactional_) return absl::OkStatus();
  rd_kafka_error_t* error =
      rd_kafka_init_transactions(producer_.get(), static_cast<int>(options_.kafka.timeout.count()));
  if (error == nullptr) {
    transactional_ = true;
    return absl::OkStatus();
  }
  if (rd_kafka_error_is_fatal(error) || !rd_kafka_error_is_retriable(error)) {
    return CannotGoOn(error, "starting its transactions");
  }
  Status status = absl::UnavailableError(rd_kafka_error_string(error));
  rd_kafka_error_destroy(error);
  return status;
}

bool OutboxRelay::ReadWatermarks(rd_kafka_t* consumer) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(owned_.size()));
  for (int32_t p : owned_) {
    if (!watermark_.contains(p)) rd_kafka_topic_partition_list_add(list, options_.source_topic.c_str(), p);
  }
  bool all = true;
  if (list->cnt > 0) {
    // With isolation.level=read_committed (librdkafka's default), an offset
    // in a transaction still open is waited for, not read half-way (KIP-447).
    rd_kafka_resp_err_t err = rd_kafka_committed(consumer, list, static_cast<int>(options_.kafka.timeout.count()));
    for (int i = 0; i < list->cnt; ++i) {
      const auto& tp = list->elems[i];
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR || tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        all = false;
        continue;
      }
      watermark_[tp.partition] = std::max<int64_t>(tp.offset, 0);  // none committed: nothing sent yet
    }
    if (!all) {
      log_->warn("outbox: reading the group's watermarks: {}; their entries wait",
                 rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : list->elems[0].err));
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  return all;
}

void OutboxRelay::ForgetSentByOwners(rd_kafka_t* consumer, const std::set<int32_t>& partitions) {
  std::set<int32_t> waiting;  // of those, the partitions with entries in the outbox
  for (const auto& [seq, entry] : pending_) {
    const int32_t p = entry.source_partition();
    if (entry.has_source_offset() && partitions.contains(p) && !owned_.contains(p)) waiting.insert(p);
  }
  if (waiting.empty()) return;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(waiting.size()));
  for (int32_t p : waiting) rd_kafka_topic_partition_list_add(list, options_.source_topic.c_str(), p);
  std::map<int32_t, int64_t> sent_below;
  if (rd_kafka_committed(consumer, list, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset > 0) {
        sent_below[list->elems[i].partition] = list->elems[i].offset;
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  size_t forgotten = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto mark = sent_below.find(it->second.source_partition());
    if (it->second.has_source_offset() && mark != sent_below.end() && it->second.source_offset() < mark->second &&
        !owned_.contains(mark->first)) {
      delivered_.push_back(it->first);
      it = pending_.erase(it);
      ++forgotten;
    } else {
      ++it;
    }
  }
  if (forgotten > 0) log_->debug("outbox: {} entries of standby partitions were sent by their owners", forgotten);
}

Status OutboxRelay::Flush(rd_kafka_t* consumer, const std::map<int32_t, int64_t>& next_offset, bool now) {
  const auto t = Clock::now();
  if (pending_.empty() && owned_.empty()) return absl::OkStatus();
  if (!now && t < next_entries_ && t < next_watermarks_) return absl::OkStatus();
  if (Status ready = EnsureTransactional(); !ready.ok()) {
    if (ready.code() != absl::StatusCode::kUnavailable) return ready;
    next_entries_ = next_watermarks_ = t + options_.linger;
    if (t >= next_abort_warning_) {
      log_->warn("outbox: Kafka does not answer ({}); entries wait in the store", std::string(ready.message()));
      next_abort_warning_ = t + std::chrono::seconds(10);
    }
    return absl::OkStatus();
  }
  ReadWatermarks(consumer);
  // Each suspect first, alone, in a transaction of its own (still refused as
  // too large alone, it is parked: OnDelivery), so that the watermarks it
  // held back can move in the transaction below.
  for (uint64_t seq : std::vector<uint64_t>(suspects_.begin(), suspects_.end())) {
    auto entry = pending_.find(seq);
    if (entry == pending_.end()) {
      suspects_.erase(seq);
      continue;
    }
    const bool sendable = !entry->second.has_source_offset() || (owned_.contains(entry->second.source_partition()) &&
                                                                 watermark_.contains(entry->second.source_partition()));
    if (!sendable) continue;
    ASSIGN_OR_RETURN(bool committed, Transact(consumer, {seq}, {}));
    if (committed) suspects_.erase(seq);
  }

  // What to send: the entries of owned partitions above their watermark
  // (those below it were sent by whoever owned the partition then: forgotten
  // unsent), and entries with no origin.
  std::vector<uint64_t> sending;
  std::map<int32_t, int64_t> held_back;  // per partition: the lowest origin of an entry not in this transaction
  size_t already = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    const auto& [seq, entry] = *it;
    if (entry.has_source_offset()) {
      const int32_t p = entry.source_partition();
      auto mark = watermark_.find(p);
      if (!owned_.contains(p) || mark == watermark_.end()) {
        ++it;
        continue;
      }
      if (entry.source_offset() < mark->second) {
        delivered_.push_back(seq);
        ++already;
        it = pending_.erase(it);
        continue;
      }
      if (suspects_.contains(seq)) {
        auto [held, added] = held_back.try_emplace(p, entry.source_offset());
        if (!added) held->second = std::min(held->second, entry.source_offset());
      }
    }
    if (!suspects_.contains(seq)) sending.push_back(seq);
    ++it;
  }
  if (already > 0) log_->info("outbox: {} entries were already sent by an earlier owner of their partitions", already);

  // Each owned partition's new watermark: what the store has applied of it,
  // unless an entry held back (a suspect, sent alone below) lies lower.
  std::map<int32_t, int64_t> watermarks;
  for (int32_t p : owned_) {
    auto mark = watermark_.find(p);
    auto applied = next_offset.find(p);
    if (mark == watermark_.end() || applied == next_offset.end()) continue;
    int64_t to = applied->second;
    if (auto held = held_back.find(p); held != held_back.end()) to = std::min(to, held->second);
    if (to > mark->second) watermarks[p] = to;
  }

  const bool entries_due = !sending.empty() && (now || t >= next_entries_);
  const bool watermarks_due = !watermarks.empty() && (now || t >= next_watermarks_);
  if (entries_due || watermarks_due) {
    ASSIGN_OR_RETURN(bool committed, Transact(consumer, sending, watermarks));
    next_entries_ = t + options_.linger;
    if (committed) next_watermarks_ = t + options_.watermark_interval;
  }
  return absl::OkStatus();
}

Result<bool> OutboxRelay::Transact(rd_kafka_t* consumer, const std::vector<uint64_t>& seqs,
                                   const std::map<int32_t, int64_t>& watermarks) {
  const int timeout = static_cast<int>(options_.kafka.timeout.count());
  refused_in_transaction_.clear();
  if (rd_kafka_error_t* error = rd_kafka_begin_transaction(producer_.get())) {
    return CannotGoOn(error, "beginning a transaction");
  }
  rd_kafka_error_t* error = nullptr;
  for (uint64_t seq : seqs) {
    auto entry = pending_.find(seq);
    if (entry == pending_.end()) continue;
    Status produced = Produce(seq, entry->second);
    if (!produced.ok()) {
      // The transaction failed under way (its error state refuses more):
      // the commit below reports why.
      log_->debug("outbox: {}", std::string(produced.message()));
      break;
    }
  }
  if (!watermarks.empty()) {
    rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(watermarks.size()));
    for (const auto& [p, offset] : watermarks) {
      rd_kafka_topic_partition_list_add(offsets, options_.source_topic.c_str(), p)->offset = offset;
    }
    rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer);
    error = rd_kafka_send_offsets_to_transaction(producer_.get(), offsets, group, timeout);
    rd_kafka_consumer_group_metadata_destroy(group);
    rd_kafka_topic_partition_list_destroy(offsets);
  }
  // A commit that times out (the cluster is slow or away) is tried again
  // until it is decided: an open transaction must end before another begins.
  for (auto until = Clock::now() + 6 * options_.kafka.timeout; error == nullptr;) {
    error = rd_kafka_commit_transaction(producer_.get(), timeout);
    if (error == nullptr) break;
    if (!rd_kafka_error_is_retriable(error) || Clock::now() >= until) break;
    log_->warn("outbox: committing a transaction: {}; trying again", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    error = nullptr;
  }
  if (error == nullptr) {
    for (uint64_t seq : seqs) {
      if (pending_.erase(seq) > 0) delivered_.push_back(seq);
    }
    for (const auto& [p, offset] : watermarks) {
      if (owned_.contains(p)) watermark_[p] = offset;
    }
    if (options_.transactions) options_.transactions->Add();
    log_->debug("outbox: committed {} records and {} watermarks", seqs.size(), watermarks.size());
    return true;
  }
  if (rd_kafka_error_is_fatal(error)) return CannotGoOn(error, "committing a transaction");

  // Aborted: a rebalance moved the group on (the watermarks' generation is
  // stale), a record was refused, or the cluster timed out. The entries stay
  // pending for the next Flush; those refused as too large become suspects.
  const auto t = Clock::now();
  if (t >= next_abort_warning_) {
    log_->warn("outbox: transaction of {} records aborted ({}); they are sent again", seqs.size(),
               rd_kafka_error_string(error));
    next_abort_warning_ = t + std::chrono::seconds(10);
  }
  rd_kafka_error_destroy(error);
  for (auto until = t + 6 * options_.kafka.timeout;;) {
    rd_kafka_error_t* aborting = rd_kafka_abort_transaction(producer_.get(), timeout);
    if (aborting == nullptr) break;
    if (rd_kafka_error_is_fatal(aborting) || !rd_kafka_error_is_retriable(aborting) || Clock::now() >= until) {
      return CannotGoOn(aborting, "aborting a transaction");
    }
    rd_kafka_error_destroy(aborting);
  }
  if (options_.aborted) options_.aborted->Add();
  for (uint64_t seq : refused_in_transaction_) {
    if (pending_.contains(seq)) suspects_.insert(seq);
  }
  refused_in_transaction_.clear();
  return false;
}

Status OutboxRelay::Drain() {
  if (!HasSettled()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(StageSettled(batch));
  return store_.Write(batch);
}

Status OutboxRelay::Produce(uint64_t seq, const state::v1::OutboxEntry& entry) {
  ASSIGN_OR_RETURN(int32_t partitions, TargetPartitions(entry.topic()));
  rd_kafka_headers_t* headers = rd_kafka_headers_new(static_cast<size_t>(entry.headers_size()) + 1);
  for (const auto& h : entry.headers()) {
    rd_kafka_header_add(headers, h.name().data(), static_cast<ssize_t>(h.name().size()), h.value().data(),
                        static_cast<ssize_t>(h.value().size()));
  }
  if (entry.has_source_offset()) {
    const std::string origin =
        absl::StrCat(options_.source_topic, "/", entry.source_partition(), "/", entry.source_offset());
    rd_kafka_header_add(headers, kOriginHeader, -1, origin.data(), static_cast<ssize_t>(origin.size()));
  }
  rd_kafka_resp_err_t err =
      kafka::ProduceWaitingForRoom(producer_.get(), {.topic = entry.topic(),
                                                     .partition = kafka::PartitionForKey(entry.key(), partitions),
                                                     .key = entry.key(),
                                                     .value = entry.value(),
                                                     .timestamp_ms = entry.timestamp_ms(),
                                                     .headers = headers,
                                                     .opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(seq))});
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  if (RefusedForGood(err)) {
    Park(seq, entry.topic(), err);
    return absl::OkStatus();
  }
  return kafka::KafkaStatus(err, absl::StrCat("relaying to ", entry.topic()));
}

void OutboxRelay::Park(uint64_t seq, std::string topic, rd_kafka_resp_err_t err) {
  if (pending_.erase(seq) == 0) return;
  to_park_.push_back(seq);
  suspects_.erase(seq);
  refused_in_transaction_.erase(seq);
  if (options_.parked != nullptr) options_.parked->Add();
  log_->error(
      "outbox record {} to {} refused by Kafka for good ({}); set aside under the runner family's parked "
      "keys, the pipeline goes on",
      seq, topic, rd_kafka_err2str(err));
}

}  // namespace rapport::consumers
