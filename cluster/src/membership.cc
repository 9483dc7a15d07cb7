#include "rapport/cluster/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rapport/base/logging.h"

namespace rapport::cluster {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds IntervalOf(const v1::Member& member) {
  return std::chrono::milliseconds(member.interval_ms() > 0 ? member.interval_ms() : kPublishInterval.count());
}

}  // namespace

std::string Directory::KeyOf(const v1::Member& member) {
  return absl::StrCat(member.group_id(), "/", member.instance_id());
}

Result<std::unique_ptr<Directory>> Directory::Start(kafka::KafkaSettings kafka, std::string topic,
                                                    std::string group_id) {
  std::unique_ptr<Directory> directory(new Directory());
  directory->topic_ = std::move(topic);
  directory->group_id_ = std::move(group_id);
  ASSIGN_OR_RETURN(kafka::KafkaConf conf,
                   kafka::BuildKafkaConf(kafka, {{"group.id", "rapport-members-reader", "joins no group"},
                                                 {"enable.auto.commit", "false", "commits nothing"},
                                                 {"enable.partition.eof", "true", "knows when it has read it all"}}));
  ASSIGN_OR_RETURN(directory->consumer_, kafka::NewKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_t* consumer = directory->consumer_.get();
  ASSIGN_OR_RETURN(int32_t partitions, kafka::TopicPartitionCount(consumer, kafka, directory->topic_));
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    ASSIGN_OR_RETURN(kafka::LogBounds bounds, kafka::QueryLogBounds(consumer, kafka, directory->topic_, p));
    directory->end_at_start_ += bounds.high > bounds.low ? 1 : 0;  // partitions with something to read
    rd_kafka_topic_partition_list_add(assignment, directory->topic_.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return kafka::KafkaStatus(err, absl::StrCat("reading ", directory->topic_));
  Directory* self = directory.get();
  directory->thread_ = std::thread([self] { self->Follow(); });
  return directory;
}

Directory::~Directory() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (consumer_) rd_kafka_consumer_close(consumer_.get());
}

void Directory::Follow() {
  auto log = ModuleLogger("cluster");
  while (!stop_) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_.get(), 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      std::lock_guard lock(mutex_);
      ++read_up_to_;  // one partition read to its end (again: harmless, only "at least" counts)
      caught_up_changed_.notify_all();
    } else if (m->err) {
      log->warn("reading {}: {}", topic_, rd_kafka_message_errstr(m));
    } else if (m->payload == nullptr) {  // a tombstone: the member is gone
      const std::string key(static_cast<const char*>(m->key), m->key_len);
      std::lock_guard lock(mutex_);
      if (key.starts_with(group_id_ + "/")) members_.erase(key.substr(group_id_.size() + 1));
    } else {
      v1::Member member;
      if (member.ParseFromArray(m->payload, static_cast<int>(m->len)) && !member.instance_id().empty()) {
        if (member.group_id() == group_id_) Take(member);
      } else {
        log->warn("{}/{}/{}: not a member record; ignored", topic_, m->partition, m->offset);
      }
    }
    rd_kafka_message_destroy(m);
  }
}

void Directory::Take(const v1::Member& member) {
  std::lock_guard lock(mutex_);
  auto received = Clock::now();
  // A record read while catching up with the topic's history arrived now
  // but may be old: date it by when it was published (the publisher's clock,
  // the only time it carries), so that a member long dead is not live.
  if (read_up_to_ < end_at_start_) {
    const int64_t age_ms = absl::ToUnixMillis(absl::Now()) - member.published_at_ms();
    received -= std::chrono::milliseconds(std::clamp<int64_t>(age_ms, 0, 24 * 3600 * 1000));
  }
  members_[member.instance_id()] = {member, received};
}

bool Directory::WaitCaughtUp(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return caught_up_changed_.wait_for(lock, timeout, [&] { return read_up_to_ >= end_at_start_; });
}

std::map<std::string, Directory::Heard> Directory::Members() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, Heard> heard;
  const auto now = Clock::now();
  for (const auto& [id, entry] : members_) {
    Heard& h = heard[id];
    h.member = entry.member;
    h.since = std::chrono::duration_cast<std::chrono::milliseconds>(now - entry.received);
    h.live = !entry.member.leaving() && h.since < kStaleAfterIntervals * IntervalOf(entry.member);
  }
  return heard;
}

std::optional<Owner> Directory::OwnerOf(int32_t partition, const std::string& except) const {
  std::optional<Owner> owner;
  int64_t latest = -1;
  for (const auto& [id, heard] : Members()) {
    if (!heard.live || id == except) continue;
    for (const auto& p : heard.member.owned()) {
      if (p.partition() != partition || p.assigned_at_ms() <= latest) continue;
      latest = p.assigned_at_ms();
      owner = Owner{id, heard.member.advertised_url(), p.applied(), p.end()};
    }
  }
  return owner;
}

Result<std::unique_ptr<Publisher>> Publisher::Start(kafka::KafkaSettings kafka, std::string topic, v1::Member self,
                                                    std::function<void(v1::Member&)> describe) {
  std::unique_ptr<Publisher> publisher(new Publisher());
  publisher->topic_ = std::move(topic);
  publisher->self_ = std::move(self);
  publisher->self_.set_interval_ms(kPublishInterval.count());
  publisher->describe_ = std::move(describe);
  ASSIGN_OR_RETURN(kafka::KafkaConf conf,
                   kafka::BuildKafkaConf(kafka, {{"linger.ms", "0", "a member's record goes at once"}}));
  ASSIGN_OR_RETURN(publisher->producer_, kafka::NewKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  ASSIGN_OR_RETURN(int32_t partitions,
                   kafka::TopicPartitionCount(publisher->producer_.get(), kafka, publisher->topic_));
  (void)partitions;  // it exists: records go where the default partitioner puts the instance id
  Publisher* running = publisher.get();
  publisher->thread_ = std::thread([running] { running->Loop(); });
  return publisher;
}

Publisher::~Publisher() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  Publish(/*leaving=*/true);
  rd_kafka_flush(producer_.get(), 3000);
}

void Publisher::Nudge() {
  {
    std::lock_guard lock(mutex_);
    nudged_ = true;
  }
  wake_.notify_all();
}

void Publisher::Loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    nudged_ = false;
    lock.unlock();
    Publish(/*leaving=*/false);
    lock.lock();
    wake_.wait_for(lock, kPublishInterval, [&] { return stop_ || nudged_; });
  }
}

void Publisher::Publish(bool leaving) {
  v1::Member record = self_;
  if (!leaving) describe_(record);
  record.set_leaving(leaving);
  record.set_published_at_ms(absl::ToUnixMillis(absl::Now()));
  const std::string value = record.SerializeAsString();
  const std::string key = Directory::KeyOf(record);
  rd_kafka_resp_err_t err = kafka::ProduceWaitingForRoom(producer_.get(), {.topic = topic_,
                                                                           .partition = RD_KAFKA_PARTITION_UA,
                                                                           .key = key,
                                                                           .value = value,
                                                                           .timestamp_ms = 0,
                                                                           .headers = nullptr,
                                                                           .opaque = nullptr});
  if (err) ModuleLogger("cluster")->warn("publishing to {}: {}", topic_, rd_kafka_err2str(err));
  rd_kafka_poll(producer_.get(), 0);
}

}  // namespace rapport::cluster
