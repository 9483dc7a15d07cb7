#include "outbox_relay.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "rapport/base/logging.h"
#include "rapport/events/codec.h"
#include "rapport/kafka/partitioner.h"
#include "runner_keys.h"

namespace rapport::consumers {
namespace {

using projections::ReadU64;
using runner_keys::kOutboxNextKey;
using runner_keys::OutboxKey;
using runner_keys::U64;

// Each relayed record carries the store's id and its outbox sequence number:
// on resume only records of this store count, so a new store (an emptied data
// directory) never takes an older store's records for its own.
constexpr char kOutboxSeqHeader[] = "rapport-outbox-seq";  // 16-byte store id, then the sequence number

// How far back from a target partition's end Resume looks: enough records to
// pass any written there by other clients since this store's last one.
constexpr int64_t kResumeTail = 1000;

// Errors that sending the same record again can never cure: the record, not
// the cluster, is at fault. (The relay never times out, so transient errors
// are retried by librdkafka and never reach the delivery report.)
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

}  // namespace

OutboxRelay::OutboxRelay(Options options, projections::ProjectionStore& store, rocksdb::ColumnFamilyHandle* family)
    : options_(std::move(options)), store_(store), family_(family), log_(ModuleLogger("consumers")) {}

OutboxRelay::~OutboxRelay() = default;

Result<std::unique_ptr<OutboxRelay>> OutboxRelay::Create(Options options, projections::ProjectionStore& store,
                                                         rocksdb::ColumnFamilyHandle* family) {
  if (options.store_id.size() != 16) return absl::InvalidArgumentError("the store id must have 16 bytes");
  std::unique_ptr<OutboxRelay> relay(new OutboxRelay(std::move(options), store, family));
  auto next = store.Get(family, kOutboxNextKey);
  if (next.ok()) {
    relay->next_seq_ = ReadU64(*next);
  } else if (next.status().code() != absl::StatusCode::kNotFound) {
    return next.status();
  }
  // Idempotent, and it never gives up on a record (a broker outage is waited
  // out; the outbox keeps the record meanwhile).
  ASSIGN_OR_RETURN(
      kafka::KafkaConf conf,
      kafka::BuildKafkaConf(relay->options_.kafka, {{"enable.idempotence", "true", "no duplicates from retries"},
                                                    {"acks", "all", "durable relay"},
                                                    {"message.timeout.ms", "0", "the relay never gives up"}}));
  rd_kafka_conf_set_opaque(conf.get(), relay.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<OutboxRelay*>(opaque)->OnDelivery(m);
  });
  ASSIGN_OR_RETURN(relay->producer_, kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  return relay;
}

void OutboxRelay::OnDelivery(const rd_kafka_message_t* m) {
  const auto seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(m->_private));
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    delivered_.push_back(seq);
    if (!sent_alone_.empty()) sent_alone_.erase(seq);
  } else if (TooLarge(m->err) && !sent_alone_.contains(seq)) {
    retry_alone_.push_back(seq);
  } else if (RefusedForGood(m->err)) {
    Park(seq, rd_kafka_topic_name(m->rkt), m->err);
  } else {
    ++failures_;  // stays in the outbox; sent again on the next start
    log_->error("outbox record {} to {} not delivered: {}", seq, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  }
}

Result<int32_t> OutboxRelay::TargetPartitions(const std::string& topic) {
  auto it = target_partitions_.find(topic);
  if (it != target_partitions_.end()) return it->second;
  ASSIGN_OR_RETURN(int32_t count, kafka::TopicPartitionCount(producer_.get(), options_.kafka, topic));
  target_partitions_[topic] = count;
  return count;
}

Result<std::map<std::pair<std::string, int32_t>, uint64_t>> OutboxRelay::DeliveredUpTo(
    const std::set<std::pair<std::string, int32_t>>& targets) {
  std::map<std::pair<std::string, int32_t>, uint64_t> up_to;
  ASSIGN_OR_RETURN(kafka::KafkaConf conf,
                   kafka::BuildKafkaConf(options_.kafka, {{"group.id", "rapport-outbox-resume", "joins no group"},
                                                          {"enable.auto.commit", "false", "commits nothing"},
                                                          {"enable.partition.eof", "true", "reads to the end"}}));
  ASSIGN_OR_RETURN(kafka::KafkaHandle reader, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  for (const auto& [topic, partition] : targets) {
    ASSIGN_OR_RETURN(kafka::LogBounds bounds, kafka::QueryLogBounds(reader.get(), options_.kafka, topic, partition));
    if (bounds.high == bounds.low) continue;
    rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), partition)->offset =
        std::max(bounds.low, bounds.high - kResumeTail);
    rd_kafka_assign(reader.get(), assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    const auto deadline = std::chrono::steady_clock::now() + options_.kafka.timeout;
    bool done = false;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(reader.get(), 200);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF || (m->err == 0 && m->offset + 1 >= bounds.high)) done = true;
      rd_kafka_headers_t* headers = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      if (m->err == 0 && rd_kafka_message_headers(m, &headers) == 0 &&
          rd_kafka_header_get_last(headers, kOutboxSeqHeader, &value, &size) == 0 && size == 24 &&
          std::string_view(static_cast<const char*>(value), 16) == options_.store_id) {
        const uint64_t seq = ReadU64(std::string_view(static_cast<const char*>(value) + 16, 8));
        uint64_t& next = up_to[{topic, partition}];
        next = std::max(next, seq + 1);
      }
      rd_kafka_message_destroy(m);
    }
    if (!done) {
      log_->warn(
          "outbox: reading the end of {}[{}] took longer than the Kafka timeout ({} ms); entries for it not seen "
          "there are sent again, and may arrive twice",
          topic, partition, options_.kafka.timeout.count());
    }
    rd_kafka_assign(reader.get(), nullptr);
  }
  rd_kafka_consumer_close(reader.get());
  return up_to;
}

Status OutboxRelay::Resume() {
  std::vector<std::pair<uint64_t, state::v1::OutboxEntry>> pending;
  RETURN_IF_ERROR(store_.Scan(family_, "x", [&](std::string_view key, std::string_view value) -> Result<bool> {
    state::v1::OutboxEntry entry;
    if (key.size() != 9 || !entry.ParseFromArray(value.data(), static_cast<int>(value.size()))) return Damaged();
    pending.emplace_back(ReadU64(key.substr(1, 8)), std::move(entry));
    return true;
  }));
  if (pending.empty()) return absl::OkStatus();

  std::set<std::pair<std::string, int32_t>> targets;
  for (const auto& [seq, entry] : pending) {
    ASSIGN_OR_RETURN(int32_t partitions, TargetPartitions(entry.topic()));
    targets.insert({entry.topic(), kafka::PartitionForKey(entry.key(), partitions)});
  }
  ASSIGN_OR_RETURN(auto delivered_up_to, DeliveredUpTo(targets));
  size_t resent = 0, already = 0;
  for (const auto& [seq, entry] : pending) {
    const int32_t partition = kafka::PartitionForKey(entry.key(), target_partitions_[entry.topic()]);
    if (seq < delivered_up_to[{entry.topic(), partition}]) {
      delivered_.push_back(seq);
      ++already;
    } else {
      RETURN_IF_ERROR(Send(seq, entry));
      ++resent;
    }
  }
  log_->info("outbox: {} records were already on their topics, {} sent again", already, resent);
  return absl::OkStatus();
}

void OutboxRelay::Stage(std::vector<state::v1::OutboxEntry> entries, rocksdb::WriteBatch& batch) {
  if (entries.empty()) return;
  for (auto& entry : entries) {
    const uint64_t seq = next_seq_++;
    batch.Put(family_, OutboxKey(seq), events::EncodeDeterministic(entry)).PermitUncheckedError();
    staged_.emplace_back(seq, std::move(entry));
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

Status OutboxRelay::SendStaged() {
  std::vector<std::pair<uint64_t, state::v1::OutboxEntry>> sending = std::exchange(staged_, {});
  for (const auto& [seq, entry] : sending) RETURN_IF_ERROR(Send(seq, entry));
  rd_kafka_poll(producer_.get(), 0);
  return RetryAlone();
}

Status OutboxRelay::Drain() {
  Status result = absl::OkStatus();
  if (rd_kafka_flush(producer_.get(), 30000) == RD_KAFKA_RESP_ERR_NO_ERROR) result = RetryAlone();
  if (rd_kafka_flush(producer_.get(), 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log_->warn("{} outbox records still in flight at exit; they are sent on the next start",
               rd_kafka_outq_len(producer_.get()));
  }
  if (HasSettled()) {
    rocksdb::WriteBatch batch;
    Status written = StageSettled(batch);
    if (written.ok()) written = store_.Write(batch);
    if (result.ok()) result = written;
  }
  return result;
}

Status OutboxRelay::Send(uint64_t seq, const state::v1::OutboxEntry& entry) {
  ASSIGN_OR_RETURN(int32_t partitions, TargetPartitions(entry.topic()));
  rd_kafka_headers_t* headers = rd_kafka_headers_new(static_cast<size_t>(entry.headers_size()) + 1);
  for (const auto& h : entry.headers()) {
    rd_kafka_header_add(headers, h.name().data(), static_cast<ssize_t>(h.name().size()), h.value().data(),
                        static_cast<ssize_t>(h.value().size()));
  }
  const std::string seq_bytes = options_.store_id + U64(seq);
  rd_kafka_header_add(headers, kOutboxSeqHeader, -1, seq_bytes.data(), static_cast<ssize_t>(seq_bytes.size()));
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

void OutboxRelay::Park(uint64_t seq, const std::string& topic, rd_kafka_resp_err_t err) {
  to_park_.push_back(seq);
  sent_alone_.erase(seq);
  if (options_.parked != nullptr) options_.parked->Add();
  log_->error(
      "outbox record {} to {} refused by Kafka for good ({}); set aside under the runner family's parked "
      "keys, the pipeline goes on",
      seq, topic, rd_kafka_err2str(err));
}

Status OutboxRelay::RetryAlone() {
  while (!retry_alone_.empty()) {
    rd_kafka_flush(producer_.get(), 30000);  // nothing else in flight (its reports may add to retry_alone_)
    std::vector<uint64_t> seqs = std::exchange(retry_alone_, {});
    for (uint64_t seq : seqs) {
      auto stored = store_.Get(family_, OutboxKey(seq));
      if (!stored.ok()) {
        if (stored.status().code() == absl::StatusCode::kNotFound) continue;
        return stored.status();
      }
      state::v1::OutboxEntry entry;
      if (!entry.ParseFromString(*stored)) return Damaged();
      sent_alone_.insert(seq);
      RETURN_IF_ERROR(Send(seq, entry));
      rd_kafka_flush(producer_.get(), 30000);
    }
  }
  return absl::OkStatus();
}

}  // namespace rapport::consumers
