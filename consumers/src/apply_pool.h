#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rapport::consumers {

// Threads that apply one batch's shards at once. Kept for the runner's life:
// a batch lasts milliseconds, so starting threads for each would be a
// noticeable share of it. The calling thread takes the first task itself.
class ApplyPool {
 public:
  // `threads` in all, counting the caller: threads - 1 are started.
  explicit ApplyPool(size_t threads);
  ~ApplyPool();
  ApplyPool(const ApplyPool&) = delete;
  ApplyPool& operator=(const ApplyPool&) = delete;

  size_t threads() const { return helpers_.size() + 1; }
  // Runs every task and returns when all are done: task i > 0 on helper i,
  // the first (and any beyond the helpers) on the calling thread.
  void RunAll(const std::vector<std::function<void()>>& tasks);

 private:
  void Help(size_t index);

  std::vector<std::thread> helpers_;
  std::mutex mutex_;
  std::condition_variable work_, done_;
  const std::vector<std::function<void()>>* tasks_ = nullptr;
  uint64_t generation_ = 0;  // raised for each RunAll, so a helper takes each task once
  size_t pending_ = 0;       // helper tasks of this generation not yet finished
  bool stopping_ = false;
};

}  // namespace rapport::consumers
