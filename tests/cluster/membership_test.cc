// The members topic against librdkafka's mock cluster: what the Directory
// makes of records written by the Publisher, by other groups, and by
// whatever else may write to the topic (garbage, out-of-range partitions,
// intervals and timestamps at the ends of int64, a dead member's history).
// The same across real processes and a real broker: tests/integration/cluster_test.cc.
#include "rapport/cluster/membership.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <set>
#include <thread>

#include "absl/time/clock.h"
#include "rapport/testing/kafka.h"
#include "rapport/testing/mock_cluster.h"
#include "rapport/testing/status.h"

namespace rapport::cluster {
namespace {

constexpr char kTopic[] = "cx.members";
constexpr char kGroup[] = "platform";

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override { cluster_.CreateTopic(kTopic, 1); }

  static v1::Member Member(const std::string& id, std::vector<std::pair<int32_t, int64_t>> owned,
                           const std::string& group = kGroup) {
    v1::Member member;
    member.set_instance_id(id);
    member.set_group_id(group);
    member.set_advertised_url("http://" + id + ":8080");
    member.set_interval_ms(1000);
    member.set_published_at_ms(absl::ToUnixMillis(absl::Now()));
    for (const auto& [partition, assigned_at] : owned) {
      auto* p = member.add_owned();
      p->set_partition(partition);
      p->set_applied(10);
      p->set_end(12);
      p->set_assigned_at_ms(assigned_at);
    }
    return member;
  }
  void Write(const v1::Member& member) { Write(Directory::KeyOf(member), member.SerializeAsString()); }
  void Write(const std::string& key, const std::string& value) {
    ASSERT_OK(testing::ProduceRaw(cluster_.settings(), kTopic, key, value));
  }
  std::unique_ptr<Directory> Read() {
    auto directory = Directory::Start(cluster_.settings(), kTopic, kGroup);
    EXPECT_OK(directory);
    if (!directory.ok()) return nullptr;
    EXPECT_TRUE((*directory)->WaitCaughtUp(std::chrono::seconds(10)));
    return std::move(*directory);
  }

  // Until the directory has read `id`'s record (at most 10 s).
  static bool WaitCaughtUpTo(const Directory& directory, const std::string& id) {
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         std::chrono::steady_clock::now() < until;) {
      if (directory.Members().contains(id)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  testing::MockCluster cluster_;
};

TEST_F(MembershipTest, OfTwoClaimsTheLaterAssignmentOwnsThePartition) {
  Write(Member("a", {{0, 100}, {1, 100}}));
  Write(Member("b", {{1, 200}, {2, 200}}));  // took partition 1 over; a has not published its loss yet
  auto directory = Read();
  ASSERT_TRUE(directory);
  auto owners = directory->Owners(4);
  ASSERT_EQ(owners.size(), 3u);
  EXPECT_EQ(owners.at(0).instance_id, "a");
  EXPECT_EQ(owners.at(1).instance_id, "b");
  EXPECT_EQ(owners.at(2).url, "http://b:8080");
  EXPECT_EQ(owners.at(2).end - owners.at(2).applied, 2);
  EXPECT_FALSE(owners.contains(3));
  // An instance that knows its claim is stale leaves itself out.
  EXPECT_FALSE(directory->OwnerOf(2, "b"));
  EXPECT_EQ(directory->OwnerOf(1, "b")->instance_id, "a");
}

TEST_F(MembershipTest, RecordsOfOtherGroupsAndOtherProgramsAreLeftOut) {
  Write(Member("a", {{0, 100}}));
  Write(Member("other", {{0, 999}, {1, 999}}, "another-platform"));  // another group on the same topic
  Write("platform/x", "\xff\xff not a member record");
  Write("platform/y", "");
  Write(Member("", {{1, 999}}));                                  // no instance id
  Write(Member("wild", {{-5, 999}, {99, 999}, {1 << 30, 999}}));  // partitions the topic does not have
  auto directory = Read();
  ASSERT_TRUE(directory);
  auto owners = directory->Owners(4);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners.at(0).instance_id, "a");
  EXPECT_FALSE(directory->Members().contains("other"));
}

TEST_F(MembershipTest, ADeadOrLeavingMemberIsNotLiveWhateverItsRecordSays) {
  v1::Member dead = Member("dead", {{0, 100}});
  dead.set_published_at_ms(absl::ToUnixMillis(absl::Now()) - 600'000);  // ten minutes ago
  Write(dead);
  v1::Member forever = Member("forever", {{1, 100}});
  forever.set_interval_ms(std::numeric_limits<int64_t>::max());  // "I publish once an eon"
  forever.set_published_at_ms(std::numeric_limits<int64_t>::min());
  Write(forever);
  v1::Member future = Member("future", {{2, 100}});
  future.set_published_at_ms(std::numeric_limits<int64_t>::max());
  Write(future);
  v1::Member left = Member("left", {{3, 100}});
  left.set_leaving(true);
  Write(left);
  auto directory = Read();
  ASSERT_TRUE(directory);
  auto members = directory->Members();
  EXPECT_FALSE(members.at("dead").live) << "dated by when it was published";
  EXPECT_FALSE(members.at("forever").live) << "its interval counts as at most a minute";
  EXPECT_FALSE(members.at("left").live);
  EXPECT_TRUE(members.at("future").live) << "a clock ahead counts as now";
  auto owners = directory->Owners(4);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners.at(2).instance_id, "future");
}

TEST_F(MembershipTest, APublishedMemberIsLiveUntilItLeaves) {
  auto directory = Read();
  ASSERT_TRUE(directory);
  std::atomic<int> described = 0;
  v1::Member self;
  self.set_instance_id("me");
  self.set_group_id(kGroup);
  self.set_advertised_url("http://me:8080");
  auto publisher = Publisher::Start(cluster_.settings(), kTopic, self, [&](v1::Member& member) {
    ++described;
    auto* p = member.add_owned();
    p->set_partition(3);
    p->set_assigned_at_ms(1);
  });
  ASSERT_OK(publisher);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!directory->OwnerOf(3) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(directory->OwnerOf(3));
  EXPECT_EQ(directory->OwnerOf(3)->url, "http://me:8080");
  const int before = described.load();
  (*publisher)->Nudge();  // an assignment changed: published at once, not a second later
  until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (described.load() == before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(described.load(), before);
  publisher->reset();  // its last record says it left
  until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (directory->OwnerOf(3) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(directory->OwnerOf(3)) << "a member that left owns nothing";
  EXPECT_FALSE(directory->Members().at("me").live);
}

// Members as the directory hears them, each owning `owned` (none live
// unless said).
std::map<std::string, Directory::Heard> Heard(const std::map<std::string, std::vector<int32_t>>& owned,
                                              const std::set<std::string>& dead = {}) {
  std::map<std::string, Directory::Heard> members;
  for (const auto& [id, partitions] : owned) {
    Directory::Heard& heard = members[id];
    heard.member.set_instance_id(id);
    heard.live = !dead.contains(id);
    for (int32_t p : partitions) heard.member.add_owned()->set_partition(p);
  }
  return members;
}

TEST(StandbyPlacement, EachOwnersPartitionsGoToTheNextInstancesInIdOrder) {
  const auto members = Heard({{"a", {0, 1}}, {"b", {2, 3}}, {"c", {4, 5}}});
  EXPECT_EQ(StandbyPartitions(members, "a", 6, 1, {}), (std::set<int32_t>{4, 5})) << "after c comes a (wrapping)";
  EXPECT_EQ(StandbyPartitions(members, "b", 6, 1, {}), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(StandbyPartitions(members, "c", 6, 1, {}), (std::set<int32_t>{2, 3}));
  EXPECT_EQ(StandbyPartitions(members, "a", 6, 2, {}), (std::set<int32_t>{2, 3, 4, 5}));
  EXPECT_EQ(StandbyPartitions(members, "a", 6, 9, {}), (std::set<int32_t>{2, 3, 4, 5}))
      << "more copies than other instances: one on each";
  EXPECT_TRUE(StandbyPartitions(members, "a", 6, 0, {}).empty());
  EXPECT_EQ(StandbyPartitions(members, "d", 6, 1, {}), (std::set<int32_t>{4, 5}))
      << "an instance whose own record is not read yet counts in the ring";
  EXPECT_EQ(StandbyPartitions(members, "a", 4, 2, {}), (std::set<int32_t>{2, 3}))
      << "a claim beyond the topic's partitions is left out";
}

TEST(StandbyPlacement, AStandbyOfAPartitionWithNoLiveOwnerKeepsItUntilTheGroupGivesItToSomeone) {
  // b died: its partitions have no live owner; a stood by them.
  const auto members = Heard({{"a", {0, 1}}, {"b", {2, 3}}, {"c", {4, 5}}}, {"b"});
  EXPECT_EQ(StandbyPartitions(members, "a", 6, 1, {2, 3}), (std::set<int32_t>{2, 3, 4, 5}))
      << "2 and 3 kept; with b gone, a comes after c";
  EXPECT_EQ(StandbyPartitions(members, "c", 6, 1, {}), (std::set<int32_t>{0, 1}))
      << "c did not stand by 2 and 3: it does not start to";
  // The group gave 2 to c and 3 to a: a stands by 2 now, and owns 3.
  const auto moved = Heard({{"a", {0, 1, 3}}, {"b", {}}, {"c", {2, 4, 5}}}, {"b"});
  EXPECT_EQ(StandbyPartitions(moved, "a", 6, 1, {2, 3}), (std::set<int32_t>{2, 4, 5}));
}

TEST_F(MembershipTest, WithNoLiveOwnerTheMostAppliedLiveStandbyAnswersForThePartition) {
  v1::Member dead = Member("b", {{2, 100}});
  dead.set_published_at_ms(absl::ToUnixMillis(absl::Now()) - 600'000);
  Write(dead);
  v1::Member a = Member("a", {{0, 100}});
  auto* standby = a.add_standby();
  standby->set_partition(2);
  standby->set_applied(11);
  standby->set_end(11);
  Write(a);
  v1::Member c = Member("c", {{1, 100}});
  standby = c.add_standby();
  standby->set_partition(2);
  standby->set_applied(9);
  standby->set_end(11);
  Write(c);
  auto directory = Read();
  ASSERT_TRUE(directory);
  auto owners = directory->Owners(4);
  ASSERT_TRUE(owners.contains(2));
  EXPECT_EQ(owners.at(2).instance_id, "a");
  EXPECT_TRUE(owners.at(2).standby);
  EXPECT_FALSE(owners.at(0).standby);
  EXPECT_EQ(directory->Owners(4, "a").at(2).instance_id, "c") << "leaving a out";
  EXPECT_EQ(directory->StandbyOf(2, "a")->instance_id, "c");
  EXPECT_FALSE(directory->StandbyOf(3, "").has_value());

  // A record claiming to stand by partitions the topic lacks (or the most
  // applied copy of every one) is ignored for those.
  v1::Member forged = Member("x", {});
  for (int32_t p : {-1, 4, std::numeric_limits<int32_t>::max()}) {
    auto* claim = forged.add_standby();
    claim->set_partition(p);
    claim->set_applied(std::numeric_limits<int64_t>::max());
  }
  Write(forged);
  ASSERT_TRUE(WaitCaughtUpTo(*directory, "x"));
  EXPECT_EQ(directory->Owners(4).size(), 3u) << "partitions 0, 1 and 2; nothing for 3 or beyond";
  EXPECT_EQ(directory->Owners(4).at(2).instance_id, "a");

  Write(Member("b", {{2, 200}}));  // b is back, and owns it again
  ASSERT_TRUE(directory->WaitCaughtUp(std::chrono::seconds(10)));
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       directory->Owners(4).at(2).standby && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(directory->Owners(4).at(2).instance_id, "b");
  EXPECT_FALSE(directory->Owners(4).at(2).standby);
}

}  // namespace
}  // namespace rapport::cluster
