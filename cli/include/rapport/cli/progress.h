#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>

namespace rapport::cli {

// Progress of a long read of the log (export, replay). On a terminal: one
// line redrawn in place, at most 5 times a second:
//   export [########------------]  41%  412,345/1,003,211 events  85,102/s  ETA 7s
// Elsewhere (a log file, CI): a plain line every 10 s that also names the
// partition furthest behind. Not thread-safe: call from the reading thread.
class Progress {
 public:
  Progress(std::ostream& err, bool terminal, std::string what, uint64_t total,
           std::chrono::milliseconds log_every = std::chrono::seconds(10));

  // `offset` of `partition` was read; `stop` is where that partition ends.
  void Advance(int32_t partition, int64_t offset, int64_t stop);
  // Sets the count outright (for readers that know totals per batch) and
  // each partition's (next offset, stop).
  void Report(uint64_t done, const std::map<int32_t, std::pair<int64_t, int64_t>>& positions);
  // Clears the bar (a terminal) so that the summary prints on a clean line.
  void Finish();

  uint64_t done() const { return done_; }

 private:
  void Draw(bool force);

  using Clock = std::chrono::steady_clock;
  std::ostream& err_;
  bool terminal_;
  std::string what_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::map<int32_t, std::pair<int64_t, int64_t>> positions_;  // partition -> (next offset, stop)
  Clock::time_point started_ = Clock::now();
  Clock::time_point next_draw_;
  std::chrono::milliseconds log_every_;
};

// 1234567 -> "1,234,567".
std::string Grouped(uint64_t n);

}  // namespace rapport::cli
