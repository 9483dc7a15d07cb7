#include "apply_pool.h"

#include <algorithm>

namespace rapport::consumers {

ApplyPool::ApplyPool(size_t threads) {
  for (size_t i = 1; i < threads; ++i) helpers_.emplace_back([this, i] { Help(i); });
}

ApplyPool::~ApplyPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  for (auto& helper : helpers_) helper.join();
}

void ApplyPool::RunAll(const std::vector<std::function<void()>>& tasks) {
  if (tasks.empty()) return;
  if (tasks.size() == 1) return tasks[0]();
  {
    std::lock_guard lock(mutex_);
    tasks_ = &tasks;
    pending_ = std::min(tasks.size(), threads()) - 1;
    ++generation_;
  }
  work_.notify_all();
  tasks[0]();
  for (size_t i = threads(); i < tasks.size(); ++i) tasks[i]();  // more tasks than helpers: the caller's
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
  tasks_ = nullptr;
}

// Helper `index` runs task `index` of each generation that has one.
void ApplyPool::Help(size_t index) {
  uint64_t seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    work_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    if (tasks_ == nullptr || index >= tasks_->size()) continue;
    const auto& task = (*tasks_)[index];
    lock.unlock();
    task();
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

}  // namespace rapport::consumers
