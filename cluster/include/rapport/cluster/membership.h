#pragma once

// Who applies which partition, and where its API answers: the members topic.
//
// Kafka's consumer group shares the events topic's partitions between the
// instances; it does not tell a reader of the API which instance holds a
// customer. So each instance publishes, once a second and whenever its
// assignment changes, a record about itself to a compacted topic (`[topics]
// members`, keyed by group and instance id): its API's advertised URL and the
// partitions it owns with how far each is applied. Every instance reads the
// whole topic (the Directory) and forwards a read to the partition's owner.
// A topic rather than the group's own metadata: it carries the URL and the
// progress, it needs no admin rights to read, and `rapport cluster status`
// reads it without joining anything.
//
// A member is live while its records keep coming: one not heard from for
// kStaleAfterIntervals of its own interval (a crash, a cut-off network) is
// left out, as is one whose last record says it left.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rapport/base/status.h"
#include "rapport/cluster/v1/member.pb.h"
#include "rapport/kafka/client.h"

namespace rapport::cluster {

inline constexpr int kStaleAfterIntervals = 4;
inline constexpr std::chrono::milliseconds kPublishInterval{1000};

// The live owner of a partition, as the directory last heard; with no live
// owner, the live standby that has applied the most of it.
struct Owner {
  std::string instance_id;
  std::string url;
  int64_t applied = 0;
  int64_t end = 0;
  bool standby = false;  // a standby, answering while the partition has no live owner
};

// Reads the members topic from its start and follows it, on a thread of its
// own. Thread-safe.
class Directory {
 public:
  // Contacts the broker: the topic must exist (`rapport topics ensure`).
  // Only members of `group_id` count (other groups, other platforms, may
  // share the topic).
  static Result<std::unique_ptr<Directory>> Start(kafka::KafkaSettings kafka, std::string topic, std::string group_id);
  ~Directory();
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // Waits (up to `timeout`) until the topic has been read to the end it had
  // when this was called: what it says then is what the cluster said.
  bool WaitCaughtUp(std::chrono::milliseconds timeout) const;

  // The members heard from, live ones and the rest, by instance id.
  struct Heard {
    v1::Member member;
    bool live = false;
    std::chrono::milliseconds since{0};  // since its last record arrived
  };
  std::map<std::string, Heard> Members() const;
  // The partition's owner among the live members (of two claims, the later
  // assignment), leaving out `except` (an instance that knows its own claim
  // is stale: the group took the partition away since it last published);
  // none if no live member claims it.
  std::optional<Owner> OwnerOf(int32_t partition, const std::string& except = "") const;
  // OwnerOf of every partition below `partition_count` at once (one pass
  // over the members): the partitions nobody live applies are absent.
  std::map<int32_t, Owner> Owners(int32_t partition_count, const std::string& except = "") const;
  // The live standby of `partition` that has applied the most, leaving out
  // `except`: for a read whose owner did not answer (it died a moment ago,
  // and is not yet known to be gone).
  std::optional<Owner> StandbyOf(int32_t partition, const std::string& except) const;

  // For tests: a record as if it had arrived from the topic.
  void Take(const v1::Member& member);
  // A member record's key on the topic: "<group>/<instance id>".
  static std::string KeyOf(const v1::Member& member);

 private:
  Directory() = default;
  void Follow();

  kafka::KafkaHandle consumer_;
  std::string topic_;
  std::string group_id_;
  mutable std::mutex mutex_;
  mutable std::condition_variable caught_up_changed_;
  struct Entry {
    v1::Member member;
    std::chrono::steady_clock::time_point received;
  };
  std::map<std::string, Entry> members_;
  std::map<int32_t, int64_t> end_at_start_;  // per partition of the topic
  std::set<int32_t> read_to_start_end_;      // partitions read up to that end
  bool CaughtUp() const { return read_to_start_end_.size() == end_at_start_.size(); }
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Where [run] standby_replicas copies go: for each partition with a live
// owner, the `replicas` live instances after the owner in instance-id order
// (wrapping round). The partitions `self` is to stand by: those, and those
// of `current` whose owner is gone (no live owner: a standby is what
// answers for them until the group gives them to someone). `members`: from
// Directory::Members.
std::set<int32_t> StandbyPartitions(const std::map<std::string, Directory::Heard>& members, const std::string& self,
                                    int32_t partition_count, int replicas, const std::set<int32_t>& current);

// Publishes this instance's record once per kPublishInterval, and at once
// when Nudge is called (an assignment changed), on a thread of its own.
class Publisher {
 public:
  // `describe` fills in the owned partitions; it runs on the publisher's
  // thread and must be thread-safe.
  static Result<std::unique_ptr<Publisher>> Start(kafka::KafkaSettings kafka, std::string topic, v1::Member self,
                                                  std::function<void(v1::Member&)> describe);
  // Publishes the last record (leaving, nothing owned) and stops.
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  void Nudge();

 private:
  Publisher() = default;
  void Publish(bool leaving);
  void Loop();

  kafka::KafkaHandle producer_;
  std::string topic_;
  v1::Member self_;
  std::function<void(v1::Member&)> describe_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool nudged_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace rapport::cluster
