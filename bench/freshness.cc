// End-to-end freshness: how long from publishing an event until a query sees
// it. Publishes simulated events at a fixed rate to the events topic that a
// running `rapport run --http` consumes; for every Nth event, once the broker
// has acknowledged it (partition and offset known), asks the API for the
// customer with ?after=PARTITION:OFFSET, which answers as soon as the
// projections have applied that position. Freshness = answer time - the time
// the event was handed to the producer (so it includes the broker's
// acknowledgement, as a publisher sees it).
//
// Each probe's time is also split in two, to show where a slow one spent it:
// until the broker's acknowledgement, and from there until the answer.
//
// usage: rapport_bench_freshness BROKERS TOPIC API_URL RATE SECONDS [SAMPLE_EVERY]
// prints: "freshness: <probes> probes, p50 <ms> ms, p99 <ms> ms, max <ms> ms,
//          offered <rate> events/s, sent <rate> events/s, <failed> failed"
//         "parts: acknowledged p50 <ms> ms p99 <ms> ms; then visible p50 <ms> ms p99 <ms> ms"
//         "cpu: <seconds> s"  (this process's user + system time)
#define CPPHTTPLIB_OPENSSL_SUPPORT
#include <httplib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "rapport/events/codec.h"
#include "rapport/producers/event_producer.h"
#include "rapport/simulator/simulator.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Probe {
  std::string customer;
  std::string position;  // PARTITION:OFFSET
  Clock::time_point sent;
  Clock::time_point acknowledged;
};

// Probes waiting for an HTTP worker; closed once publishing is over.
class ProbeQueue {
 public:
  void Push(Probe probe) {
    std::lock_guard lock(mutex_);
    probes_.push_back(std::move(probe));
    ready_.notify_one();
  }
  bool Pop(Probe& probe) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !probes_.empty(); });
    if (probes_.empty()) return false;
    probe = std::move(probes_.front());
    probes_.pop_front();
    return true;
  }
  void Close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Probe> probes_;
  bool closed_ = false;
};

double Percentile(std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(index, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s BROKERS TOPIC API_URL RATE SECONDS [SAMPLE_EVERY]\n", argv[0]);
    return 2;
  }
  const std::string brokers = argv[1], topic = argv[2], api = argv[3];
  double rate = 0, seconds = 0, sample = 100;
  for (auto [name, text, value] : {std::tuple<const char*, const char*, double*>{"RATE", argv[4], &rate},
                                   {"SECONDS", argv[5], &seconds},
                                   {"SAMPLE_EVERY", argc > 6 ? argv[6] : "100", &sample}}) {
    char* end = nullptr;
    *value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(*value >= 1)) {
      std::fprintf(stderr, "freshness: %s: \"%s\" is not a number of at least 1\n", name, text);
      return 2;
    }
  }
  const uint64_t sample_every = static_cast<uint64_t>(sample);

  ProbeQueue queue;
  std::vector<Probe> sampled;  // by ticket / sample_every; filled before sending
  std::mutex results_mutex;
  std::vector<double> latencies_ms, acknowledged_ms, then_visible_ms;
  std::atomic<int64_t> failed{0};

  rapport::producers::ProducerOptions options;
  options.kafka.brokers = brokers;
  options.topic = topic;
  auto producer = rapport::producers::EventProducer::Connect(options, [&](const rapport::producers::Delivery& d) {
    if (d.ticket % sample_every != 0) return;
    Probe& probe = sampled[d.ticket / sample_every];
    if (!d.status.ok()) {
      ++failed;
      return;
    }
    probe.position = std::to_string(d.partition) + ":" + std::to_string(d.offset);
    probe.acknowledged = Clock::now();
    queue.Push(probe);
  });
  if (!producer.ok()) {
    std::fprintf(stderr, "freshness: %s\n", std::string(producer.status().message()).c_str());
    return 1;
  }

  // HTTP workers, each with one keep-alive connection: a probe waits on the
  // server while its position is not yet applied, so several run at once.
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&] {
      httplib::Client client(api);
      client.set_keep_alive(true);
      client.set_read_timeout(30, 0);
      Probe probe;
      while (queue.Pop(probe)) {
        auto answer = client.Get("/v1/customers/" + probe.customer + "?after=" + probe.position);
        const auto done = Clock::now();
        if (!answer || answer->status != 200) {
          ++failed;
          continue;
        }
        using Ms = std::chrono::duration<double, std::milli>;
        std::lock_guard lock(results_mutex);
        latencies_ms.push_back(Ms(done - probe.sent).count());
        acknowledged_ms.push_back(Ms(probe.acknowledged - probe.sent).count());
        then_visible_ms.push_back(Ms(done - probe.acknowledged).count());
      }
    });
  }

  // A fresh population each run (the seed is the clock), so that no event id
  // repeats one of an earlier run.
  rapport::simulator::SimulationOptions simulation;
  simulation.customers = 100000;
  simulation.days = 365;
  simulation.seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  rapport::simulator::Simulator simulator(simulation);
  const uint64_t total = static_cast<uint64_t>(rate * seconds);
  sampled.resize(total / sample_every + 1);

  const auto start = Clock::now();
  rapport::simulator::SimulatedRecord record;
  uint64_t sent = 0;
  while (sent < total && simulator.Next(record)) {
    if (!record.valid) continue;
    // Pace: event i leaves at start + i / rate. Sleep rather than spin while
    // early: a spinning publisher would take a core from the broker and
    // rapport on a small machine and lengthen the very latency measured.
    const auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(sent / rate));
    if (Clock::now() < due) {
      producer.value()->Poll(std::chrono::milliseconds(0));
      std::this_thread::sleep_until(due);
    }
    if (sent % sample_every == 0) sampled[sent / sample_every] = {record.event.customer_id(), "", Clock::now(), {}};
    if (auto status = producer.value()->Send(record.event, rapport::events::EncodeEvent(record.event), sent);
        !status.ok()) {
      std::fprintf(stderr, "freshness: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    ++sent;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  (void)producer.value()->Flush(std::chrono::seconds(30));
  queue.Close();
  for (auto& worker : workers) worker.join();

  for (auto* sorted : {&latencies_ms, &acknowledged_ms, &then_visible_ms}) std::sort(sorted->begin(), sorted->end());
  std::printf(
      "freshness: %zu probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms, offered %.0f events/s, sent %.0f events/s, "
      "%lld failed\n",
      latencies_ms.size(), Percentile(latencies_ms, 0.50), Percentile(latencies_ms, 0.99),
      latencies_ms.empty() ? 0.0 : latencies_ms.back(), rate, static_cast<double>(sent) / elapsed,
      static_cast<long long>(failed.load()));
  std::printf("parts: acknowledged p50 %.1f ms p99 %.1f ms; then visible p50 %.1f ms p99 %.1f ms\n",
              Percentile(acknowledged_ms, 0.50), Percentile(acknowledged_ms, 0.99), Percentile(then_visible_ms, 0.50),
              Percentile(then_visible_ms, 0.99));
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds_of = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  std::printf("cpu: %.2f s\n", seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime));
  return latencies_ms.empty() ? 1 : 0;
}
