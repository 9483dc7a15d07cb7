#include "rapport/cli/publish.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fmt/format.h"
#include "rapport/events/admission.h"
#include "rapport/producers/event_producer.h"

namespace rapport::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Reads lines of at most `max_bytes` without ever holding a longer one in
// memory: an over-long line is skipped to its end and reported as such.
class LineReader {
 public:
  LineReader(std::istream& in, size_t max_bytes) : in_(in), max_bytes_(max_bytes) {}

  // False at the end of input. `too_long` is set for a line over the limit
  // (then `line` holds nothing useful and `length` its full length).
  bool Next(std::string& line, bool& too_long, size_t& length) {
    line.clear();
    too_long = false;
    length = 0;
    bool any = false;
    for (;;) {
      if (pos_ == end_) {
        in_.read(buffer_, sizeof(buffer_));
        pos_ = 0;
        end_ = static_cast<size_t>(in_.gcount());
        if (end_ == 0) return any;
      }
      any = true;
      const char* start = buffer_ + pos_;
      const char* newline = static_cast<const char*>(memchr(start, '\n', end_ - pos_));
      size_t chunk = newline ? static_cast<size_t>(newline - start) : end_ - pos_;
      length += chunk;
      if (length > max_bytes_) {
        too_long = true;
        line.clear();
      } else {
        line.append(start, chunk);
      }
      pos_ += chunk;
      if (newline) {
        ++pos_;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
    }
  }

 private:
  std::istream& in_;
  size_t max_bytes_;
  char buffer_[64 * 1024];
  size_t pos_ = 0;
  size_t end_ = 0;
};

struct Tally {
  uint64_t lines = 0;
  uint64_t accepted = 0;  // valid and queued
  uint64_t sent = 0;      // acknowledged by the cluster
  uint64_t rejected = 0;
};

void PrintProgress(std::ostream& err, const Tally& t, double seconds) {
  err << fmt::format("\r{} lines read, {} sent, {} rejected, {:.0f} events/s   ", t.lines, t.sent, t.rejected,
                     seconds > 0 ? static_cast<double>(t.sent) / seconds : 0.0)
      << std::flush;
}

}  // namespace

int RunPublish(const Config& config, const PublishArgs& args, std::istream& in, std::ostream& out, std::ostream& err,
               const std::atomic<bool>& stop) {
  Tally tally;
  std::unique_ptr<producers::EventProducer> producer;
  if (!args.dry_run) {
    producers::ProducerOptions options{
        .kafka = config.kafka, .topic = config.topics.events, .delivery_timeout = config.publish.delivery_timeout};
    auto connected = producers::EventProducer::Connect(options, [&](const producers::Delivery& d) {
      if (d.status.ok()) {
        ++tally.sent;
        if (args.verbose) {
          out << fmt::format("line {}: sent to {} partition {} offset {}\n", d.ticket, config.topics.events,
                             d.partition, d.offset);
        }
      } else {
        err << fmt::format("line {}: not delivered: {}\n", d.ticket, std::string(d.status.message()));
      }
    });
    if (!connected.ok()) {
      err << "publish: " << connected.status().message() << "\n";
      return kPublishCannotStart;
    }
    producer = std::move(connected).value();
  }

  events::EventAdmission admission(config.publish.limits);
  LineReader reader(in, config.publish.limits.max_json_bytes);
  std::string line;
  bool too_long = false;
  size_t length = 0;
  auto started = Clock::now();
  auto next_progress = started + std::chrono::milliseconds(500);
  while (!stop.load() && reader.Next(line, too_long, length)) {
    uint64_t number = ++tally.lines;
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 byte-order mark
    if (!too_long && line.find_first_not_of(" \t") == std::string::npos) continue;
    events::Admission admitted =
        too_long
            ? events::Admission{.event = {},
                                .violations = {{"", absl::StrCat("event is ", length, " bytes of JSON; the limit is ",
                                                                 config.publish.limits.max_json_bytes)}}}
            : admission.AdmitJson(line, absl::Now());
    if (!admitted.accepted()) {
      ++tally.rejected;
      for (const auto& v : admitted.violations) err << "line " << number << ": " << v.ToString() << "\n";
      continue;
    }
    ++tally.accepted;
    if (producer) {
      const auto& e = admitted.event;
      if (Status queued = producer->Send(e.envelope, e.encoded, number); !queued.ok()) {
        err << "line " << number << ": not sent: " << queued.message() << "\n";
      }
      producer->Poll(std::chrono::milliseconds(0));
    }
    if (args.progress && Clock::now() >= next_progress) {
      PrintProgress(err, tally, std::chrono::duration<double>(Clock::now() - started).count());
      next_progress = Clock::now() + std::chrono::milliseconds(500);
    }
  }
  if (producer) {
    // Every queued event gets its delivery report within the delivery timeout.
    Status flushed = producer->Flush(config.publish.delivery_timeout + std::chrono::seconds(5));
    if (!flushed.ok()) err << "publish: " << flushed.message() << "\n";
  }
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (args.progress) err << "\r" << std::string(72, ' ') << "\r";
  if (stop.load()) err << "publish: interrupted after line " << tally.lines << "\n";

  if (args.dry_run) {
    out << fmt::format("publish (dry run): {} valid, {} rejected\n", tally.accepted, tally.rejected);
  } else {
    // Accepted but not acknowledged: failed, timed out, or not queued.
    uint64_t undelivered = tally.accepted - tally.sent;
    out << fmt::format("publish: {} sent, {} rejected, {} undelivered to {} in {:.2f} s ({:.0f} events/s)\n",
                       tally.sent, tally.rejected, undelivered, config.topics.events, seconds,
                       seconds > 0 ? static_cast<double>(tally.sent) / seconds : 0.0);
  }
  bool all_good = tally.rejected == 0 && (args.dry_run || tally.sent == tally.accepted);
  return all_good ? kPublishOk : kPublishSomeFailed;
}

}  // namespace rapport::cli
