// What the API learns from RunnerProgress about each partition: owned here,
// and whether a partition that moved here is still catching up (a customer
// not found in it may yet be).
#include <gtest/gtest.h>

#include "rapport/consumers/projection_runner.h"

namespace rapport::consumers {
namespace {

TEST(RunnerProgress, APartitionAssignedBehindTheLogCatchesUpUntilAppliedReachesTheEndSeenThen) {
  RunnerProgress progress;
  EXPECT_FALSE(progress.Owned(3));
  EXPECT_FALSE(progress.CatchingUp(3));

  progress.Update(3, 100, 250);
  progress.SetOwned(3, true, /*catch_up_to=*/250);
  EXPECT_TRUE(progress.Owned(3));
  EXPECT_TRUE(progress.CatchingUp(3));
  progress.Update(3, 249, 300);  // new records meanwhile: the target stays where the log ended at the assignment
  EXPECT_TRUE(progress.CatchingUp(3));
  progress.Update(3, 250, 300);
  EXPECT_FALSE(progress.CatchingUp(3)) << "at the assigned end: what is not found is not there";

  progress.SetOwned(3, false);
  EXPECT_FALSE(progress.CatchingUp(3));
  progress.SetOwned(3, true, 400);  // moved back, behind again
  EXPECT_TRUE(progress.CatchingUp(3));
  progress.SetOwned(3, false);
  progress.SetOwned(3, true);  // moved back, not behind
  EXPECT_FALSE(progress.CatchingUp(3));
  EXPECT_FALSE(progress.CatchingUp(4)) << "another partition";
}

TEST(RunnerProgress, AStandbyCatchesUpLikeAnOwnerAndStopsBeingOneWhenOwned) {
  RunnerProgress progress;
  progress.SetOwned(5, false);
  progress.Update(5, 0, 80);
  progress.SetStandby(5, true, /*catch_up_to=*/80);
  EXPECT_TRUE(progress.Standby(5));
  EXPECT_FALSE(progress.Owned(5));
  EXPECT_TRUE(progress.CatchingUp(5)) << "a standby that has not reached the log's end answers nothing";
  progress.Update(5, 80, 90);
  EXPECT_FALSE(progress.CatchingUp(5));

  progress.SetOwned(5, true);  // promoted: the group gave it here
  EXPECT_TRUE(progress.Owned(5));
  EXPECT_FALSE(progress.Standby(5));
  progress.SetStandby(5, true, 1000);  // a stale placement: the owner's figures stand
  EXPECT_FALSE(progress.Standby(5));
  EXPECT_FALSE(progress.CatchingUp(5));

  progress.SetOwned(5, false);
  progress.SetStandby(5, true);
  EXPECT_TRUE(progress.Standby(5));
  progress.SetStandby(5, false);
  EXPECT_FALSE(progress.Standby(5));
  EXPECT_FALSE(progress.CatchingUp(5));
}

}  // namespace
}  // namespace rapport::consumers
