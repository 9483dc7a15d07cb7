#include "rapport/cli/progress.h"

#include <algorithm>

#include "fmt/format.h"

namespace rapport::cli {

std::string Grouped(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

Progress::Progress(std::ostream& err, bool terminal, std::string what, uint64_t total,
                   std::chrono::milliseconds log_every)
    : err_(err), terminal_(terminal), what_(std::move(what)), total_(total), log_every_(log_every) {
  next_draw_ = started_ + (terminal_ ? std::chrono::milliseconds(200) : log_every_);
}

void Progress::Advance(int32_t partition, int64_t offset, int64_t stop) {
  ++done_;
  positions_[partition] = {offset + 1, stop};
  if ((done_ & 255) == 0 || done_ == 1) Draw(false);
}

void Progress::Draw(bool force) {
  const auto now = Clock::now();
  if (!force && now < next_draw_) return;
  next_draw_ = now + (terminal_ ? std::chrono::milliseconds(200) : log_every_);
  const double seconds = std::max(1e-3, std::chrono::duration<double>(now - started_).count());
  const double rate = static_cast<double>(done_) / seconds;
  const double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)) : 0;
  const double eta = rate > 0 && total_ > done_ ? static_cast<double>(total_ - done_) / rate : 0;
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    err_ << fmt::format("\r{} [{}{}] {:3.0f}%  {}/{} events  {}/s  ETA {:.0f}s ", what_, std::string(filled, '#'),
                        std::string(kWidth - filled, '-'), fraction * 100, Grouped(done_), Grouped(total_),
                        Grouped(static_cast<uint64_t>(rate)), eta)
         << std::flush;
    return;
  }
  // The partition with the most left to read.
  int32_t behind = -1;
  int64_t most_left = -1;
  for (const auto& [partition, position] : positions_) {
    if (position.second - position.first > most_left) {
      most_left = position.second - position.first;
      behind = partition;
    }
  }
  err_ << fmt::format("{}: {}/{} events ({:.0f}%), {}/s, ETA {:.0f} s", what_, Grouped(done_), Grouped(total_),
                      fraction * 100, Grouped(static_cast<uint64_t>(rate)), eta);
  if (behind >= 0) {
    err_ << fmt::format("; furthest behind: partition {} at offset {} of {}", behind, positions_[behind].first,
                        positions_[behind].second);
  }
  err_ << "\n";
}

void Progress::Report(uint64_t done, const std::map<int32_t, std::pair<int64_t, int64_t>>& positions) {
  done_ = done;
  positions_ = positions;
  Draw(false);
}

void Progress::Finish() {
  if (terminal_ && done_ > 0) err_ << "\r" << std::string(100, ' ') << "\r" << std::flush;
}

}  // namespace rapport::cli
