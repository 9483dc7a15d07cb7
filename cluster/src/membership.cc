#include "rapport/cluster/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rapport/base/logging.h"

namespace rapport::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// A member's publishing interval, as it says, within [100 ms, 1 min]: a
// record from another program (or a damaged one) must not make a member
// live forever, nor overflow the arithmetic.
std::chrono::milliseconds IntervalOf(const v1::Member& member) {
  const int64_t said = member.interval_ms() > 0 ? member.interval_ms() : kPublishInterval.count();
  return std::chrono::milliseconds(std::clamp<int64_t>(said, 100, 60'000));
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
    directory->end_at_start_[p] = bounds.high;
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
      auto end = end_at_start_.find(m->partition);
      if (end != end_at_start_.end() && m->offset >= end->second) read_to_start_end_.insert(m->partition);
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
  if (!CaughtUp()) {
    constexpr int64_t kDay = 24 * 3600 * 1000;
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    // Clamped before subtracting: any int64 a record says must not overflow.
    const int64_t published = std::clamp<int64_t>(member.published_at_ms(), now_ms - kDay, now_ms);
    received -= std::chrono::milliseconds(now_ms - published);
  }
  members_[member.instance_id()] = {member, received};
}

bool Directory::WaitCaughtUp(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return caught_up_changed_.wait_for(lock, timeout, [&] { return CaughtUp(); });
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
  auto owners = Owners(partition + 1, except);
  auto it = owners.find(partition);
  if (it == owners.end()) return std::nullopt;
  return it->second;
}

namespace {

// The live members' claims to own partitions (of two, the later assignment).
std::map<int32_t, Owner> LiveOwners(const std::map<std::string, Directory::Heard>& members, int32_t partition_count,
                                    const std::string& except) {
  std::map<int32_t, Owner> owners;
  std::map<int32_t, int64_t> latest;  // the assignment each owner was chosen by
  for (const auto& [id, heard] : members) {
    if (!heard.live || id == except) continue;
    for (const auto& p : heard.member.owned()) {
      if (p.partition() < 0 || p.partition() >= partition_count) continue;  // not a partition of the topic
      auto [at, first] = latest.try_emplace(p.partition(), p.assigned_at_ms());
      if (!first && p.assigned_at_ms() <= at->second) continue;
      at->second = p.assigned_at_ms();
      owners[p.partition()] = Owner{id, heard.member.advertised_url(), p.applied(), p.end()};
    }
  }
  return owners;
}

}  // namespace

std::map<int32_t, Owner> Directory::Owners(int32_t partition_count, const std::string& except) const {
  const auto members = Members();
  auto owners = LiveOwners(members, partition_count, except);
  // No live owner (it died, and the group has not yet given its partitions
  // to others): the live standby that has applied the most answers.
  for (const auto& [id, heard] : members) {
    if (!heard.live || id == except) continue;
    for (const auto& p : heard.member.standby()) {
      if (p.partition() < 0 || p.partition() >= partition_count) continue;
      auto known = owners.find(p.partition());
      if (known != owners.end() && (!known->second.standby || known->second.applied >= p.applied())) continue;
      owners[p.partition()] = Owner{id, heard.member.advertised_url(), p.applied(), p.end(), /*standby=*/true};
    }
  }
  return owners;
}

std::optional<Owner> Directory::StandbyOf(int32_t partition, const std::string& except) const {
  std::optional<Owner> best;
  for (const auto& [id, heard] : Members()) {
    if (!heard.live || id == except) continue;
    for (const auto& p : heard.member.standby()) {
      if (p.partition() != partition || (best && best->applied >= p.applied())) continue;
      best = Owner{id, heard.member.advertised_url(), p.applied(), p.end(), /*standby=*/true};
    }
  }
  return best;
}

std::set<int32_t> StandbyPartitions(const std::map<std::string, Directory::Heard>& members, const std::string& self,
                                    int32_t partition_count, int replicas, const std::set<int32_t>& current) {
  std::set<int32_t> standby;
  if (replicas <= 0) return standby;
  std::vector<std::string> ring;  // the live instances in id order (this one even before its first record is read)
  for (const auto& [id, heard] : members) {
    if (heard.live || id == self) ring.push_back(id);
  }
  if (!members.contains(self)) ring.insert(std::lower_bound(ring.begin(), ring.end(), self), self);
  const auto owners = LiveOwners(members, partition_count, "");
  for (int32_t p = 0; p < partition_count; ++p) {
    auto owner = owners.find(p);
    if (owner == owners.end()) {
      if (current.contains(p)) standby.insert(p);  // kept while its owner is gone
      continue;
    }
    if (owner->second.instance_id == self) continue;
    const size_t at = std::lower_bound(ring.begin(), ring.end(), owner->second.instance_id) - ring.begin();
    for (size_t k = 1; k <= static_cast<size_t>(replicas) && k < ring.size(); ++k) {
      if (ring[(at + k) % ring.size()] == self) standby.insert(p);
    }
  }
  return standby;
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
