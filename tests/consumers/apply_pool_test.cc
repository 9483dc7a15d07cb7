// ApplyPool, the threads that apply one batch's shards: every task runs
// exactly once per RunAll, on several threads, batch after batch.
#include "apply_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace rapport::consumers {
namespace {

TEST(ApplyPool, RunsEveryTaskOnceOnSeveralThreadsBatchAfterBatch) {
  ApplyPool pool(3);
  EXPECT_EQ(pool.threads(), 3u);
  for (size_t count : {1u, 2u, 3u, 5u, 0u, 3u}) {  // 5: more tasks than threads
    std::vector<std::atomic<int>> runs(count);
    std::mutex mutex;
    std::set<std::thread::id> threads;
    std::vector<std::function<void()>> tasks;
    for (size_t i = 0; i < count; ++i) {
      tasks.emplace_back([&, i] {
        ++runs[i];
        std::lock_guard lock(mutex);
        threads.insert(std::this_thread::get_id());
      });
    }
    for (int round = 0; round < 200; ++round) pool.RunAll(tasks);
    for (size_t i = 0; i < count; ++i) EXPECT_EQ(runs[i].load(), 200) << "task " << i << " of " << count;
    EXPECT_EQ(threads.size(), std::min<size_t>(count, 3)) << count << " tasks";
  }
}

}  // namespace
}  // namespace rapport::consumers
