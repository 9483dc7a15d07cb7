#include "rapport/cli/simulate_command.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "fmt/format.h"
#include "rapport/events/codec.h"
#include "rapport/events/time_text.h"
#include "rapport/producers/event_producer.h"

namespace rapport::cli {
namespace {

using Clock = std::chrono::steady_clock;

Status WriteTruth(const std::string& path, const std::vector<simulator::CustomerTruth>& truth) {
  std::ofstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot write the truth file ", path));
  file << "customer_id,acquired_at,purchase_rate_per_day,dropout_probability,alive_at_end,dropped_out_at,purchases,"
          "revenue_eur\n";
  auto time = [](absl::Time t) {
    return t == absl::InfinitePast() ? std::string() : absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
  };
  for (const auto& c : truth) {
    file << fmt::format("{},{},{:.9g},{:.9g},{},{},{},{}.{:02d}\n", c.customer_id, time(c.acquired_at),
                        c.purchase_rate_per_day, c.dropout_probability, c.alive_at_end ? "true" : "false",
                        time(c.dropped_out_at), c.purchases, c.revenue_eur_cents / 100, c.revenue_eur_cents % 100);
  }
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("writing the truth file ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace

Result<absl::Time> ParseStartTime(const std::string& text) {
  if (auto time = events::ParseDateOrTime(text)) return *time;
  return absl::InvalidArgumentError(
      absl::StrCat("--start: \"", text, "\" is not a date such as 2025-01-01 or a time such as 2025-01-01T00:00:00Z"));
}

int RunSimulate(const Config& config, const SimulateArgs& args, std::ostream& out, std::ostream& err,
                const std::atomic<bool>& stop) {
  uint64_t records = 0, invalid = 0, delivered = 0, failed = 0;
  std::unique_ptr<producers::EventProducer> producer;
  std::ofstream file;
  std::ostream* sink = &out;
  if (args.publish) {
    producers::ProducerOptions options{
        .kafka = config.kafka, .topic = config.topics.events, .delivery_timeout = config.publish.delivery_timeout};
    auto connected = producers::EventProducer::Connect(options, [&](const producers::Delivery& d) {
      if (d.status.ok()) {
        ++delivered;
      } else if (++failed <= 10) {
        err << "simulate: record " << d.ticket << " not delivered: " << d.status.message() << "\n";
      }
    });
    if (!connected.ok()) {
      err << "simulate: " << connected.status().message() << "\n";
      return 2;
    }
    producer = std::move(connected).value();
  } else if (args.out != "-") {
    file.open(args.out, std::ios::binary | std::ios::trunc);
    if (!file) {
      err << "simulate: cannot write " << args.out << "\n";
      return 2;
    }
    sink = &file;
  }

  simulator::Simulator simulation(args.options);
  simulator::SimulatedRecord record;
  std::string encoded;
  const auto started = Clock::now();
  auto next_progress = started + std::chrono::milliseconds(500);
  while (!stop.load() && simulation.Next(record)) {
    ++records;
    if (!record.valid) ++invalid;
    if (producer) {
      Status queued;
      if (record.valid) {
        encoded = events::EncodeEvent(record.event);
        queued = producer->Send(record.event, encoded, records);
      } else {
        queued =
            producer->SendRecord(record.invalid_key, record.invalid_value, absl::ToUnixMillis(record.time), records);
      }
      if (!queued.ok()) {
        err << "simulate: " << queued.message() << "\n";
        break;
      }
      producer->Poll(std::chrono::milliseconds(0));
      if (args.rate > 0) {
        // Pace to the requested rate: sleep until this record is due.
        auto due = started + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(records) / args.rate));
        if (due > Clock::now()) std::this_thread::sleep_until(due);
      }
    } else {
      *sink << (record.valid ? events::EventToJson(record.event) : record.invalid_json) << '\n';
    }
    if (args.progress && Clock::now() >= next_progress) {
      double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      err << fmt::format("\r{} records, simulated to {}, {:.0f} records/s   ", records,
                         absl::FormatTime("%Y-%m-%d", record.time, absl::UTCTimeZone()),
                         static_cast<double>(records) / seconds)
          << std::flush;
      next_progress = Clock::now() + std::chrono::milliseconds(500);
    }
  }
  if (producer) {
    Status flushed = producer->Flush(config.publish.delivery_timeout + std::chrono::seconds(5));
    if (!flushed.ok()) err << "simulate: " << flushed.message() << "\n";
  }
  sink->flush();
  if (file.is_open()) file.close();
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (args.progress) err << "\r" << std::string(72, ' ') << "\r";
  if (stop.load()) err << "simulate: interrupted; the stream is cut short\n";

  int code = 0;
  if (!args.truth.empty()) {
    if (Status written = WriteTruth(args.truth, simulation.Truth()); !written.ok()) {
      err << "simulate: " << written.message() << "\n";
      code = 2;
    }
  }
  std::string where = producer ? config.topics.events : args.out == "-" ? "standard output" : args.out;
  err << fmt::format(
      "simulate: {} records ({} invalid) from {} customers over {} days to {} in {:.2f} s ({:.0f} records/s)", records,
      invalid, args.options.customers, args.options.days, where, seconds,
      seconds > 0 ? static_cast<double>(records) / seconds : 0.0);
  if (producer) {
    err << fmt::format("; {} delivered, {} undelivered", delivered, records - delivered);
    if (delivered != records) code = std::max(code, 1);
  }
  err << "\n";
  return code;
}

}  // namespace rapport::cli
