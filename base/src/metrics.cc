#include "rapport/base/metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fmt/format.h"

namespace rapport {
namespace {

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}`, or "" without labels.
std::string RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += fmt::format("{}=\"{}\"", labels[i].first, EscapeLabelValue(labels[i].second));
  }
  return out + "}";
}

// Labels plus one more (le for histogram buckets), rendered.
std::string WithLabel(const std::string& rendered, const std::string& name, const std::string& value) {
  std::string extra = fmt::format("{}=\"{}\"", name, value);
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

Metrics::Family& Metrics::FamilyFor(const std::string& name, const std::string& help, Type type) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = type;
    it->second.help = help;
  } else if (it->second.type != type) {
    // A programming error (one name, two types), never input-driven.
    throw std::logic_error("metric " + name + " registered with two types");
  }
  return it->second;
}

Counter& Metrics::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyFor(name, help, Type::kCounter).counters[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Metrics::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyFor(name, help, Type::kGauge).gauges[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Metrics::histogram(const std::string& name, const std::string& help, const Labels& labels,
                              std::vector<double> bounds) {
  std::lock_guard lock(mutex_);
  auto& slot = FamilyFor(name, help, Type::kHistogram).histograms[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return *slot;
}

void Metrics::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string Metrics::Render() {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
  }
  for (auto& collect : collectors) collect();  // outside the lock: they register gauges

  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    static constexpr const char* kTypes[] = {"counter", "gauge", "histogram"};
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name, kTypes[static_cast<int>(family.type)]);
    for (const auto& [labels, counter] : family.counters)
      out += fmt::format("{}{} {}\n", name, labels, counter->value());
    for (const auto& [labels, gauge] : family.gauges)
      out += fmt::format("{}{} {}\n", name, labels, Number(gauge->value()));
    for (const auto& [labels, histogram] : family.histograms) {
      auto counts = histogram->CumulativeCounts();
      for (size_t i = 0; i < histogram->bounds().size(); ++i) {
        out +=
            fmt::format("{}_bucket{} {}\n", name, WithLabel(labels, "le", Number(histogram->bounds()[i])), counts[i]);
      }
      out += fmt::format("{}_bucket{} {}\n", name, WithLabel(labels, "le", "+Inf"), counts.back());
      out += fmt::format("{}_sum{} {}\n", name, labels, Number(histogram->sum()));
      out += fmt::format("{}_count{} {}\n", name, labels, counts.back());
    }
  }
  return out;
}

}  // namespace rapport
