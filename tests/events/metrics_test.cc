#include "rapport/base/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace rapport {
namespace {

TEST(Metrics, RendersThePrometheusTextFormat) {
  Metrics metrics;
  metrics.counter("app_events_total", "Events seen.", {{"kind", "a"}}).Add(3);
  metrics.counter("app_events_total", "Events seen.", {{"kind", "b"}}).Add();
  metrics.gauge("app_lag", "Lag.").Set(12.5);
  auto& latency = metrics.histogram("app_seconds", "Latency.", {{"route", "/x"}}, {0.1, 1});
  latency.Observe(0.05);
  latency.Observe(0.1);  // on a bound: counted in it (le = less or equal)
  latency.Observe(5);
  EXPECT_EQ(metrics.Render(),
            "# HELP app_events_total Events seen.\n"
            "# TYPE app_events_total counter\n"
            "app_events_total{kind=\"a\"} 3\n"
            "app_events_total{kind=\"b\"} 1\n"
            "# HELP app_lag Lag.\n"
            "# TYPE app_lag gauge\n"
            "app_lag 12.5\n"
            "# HELP app_seconds Latency.\n"
            "# TYPE app_seconds histogram\n"
            "app_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
            "app_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
            "app_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"
            "app_seconds_sum{route=\"/x\"} 5.15\n"
            "app_seconds_count{route=\"/x\"} 3\n");
}

TEST(Metrics, TheSameSeriesIsOneObjectAndLabelValuesAreEscaped) {
  Metrics metrics;
  Counter& a = metrics.counter("c_total", "C.", {{"path", "a\"b\\c\nd"}});
  Counter& b = metrics.counter("c_total", "C.", {{"path", "a\"b\\c\nd"}});
  EXPECT_EQ(&a, &b);
  a.Add();
  EXPECT_NE(metrics.Render().find("c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << metrics.Render();
  EXPECT_THROW(metrics.gauge("c_total", "C."), std::logic_error);
}

TEST(Metrics, CollectorsRunBeforeEachScrape) {
  Metrics metrics;
  int scrapes = 0;
  metrics.AddCollector([&] { metrics.gauge("scrapes", "Scrapes so far.").Set(++scrapes); });
  metrics.Render();
  EXPECT_NE(metrics.Render().find("scrapes 2\n"), std::string::npos);
}

TEST(Metrics, CountsFromManyThreadsAddUp) {
  Metrics metrics;
  Counter& counter = metrics.counter("n_total", "N.");
  Histogram& histogram = metrics.histogram("h", "H.", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter.Add();
        histogram.Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.value(), 40000u);
  EXPECT_EQ(histogram.CumulativeCounts().back(), 40000u);
  EXPECT_DOUBLE_EQ(histogram.sum(), 20000);
}

}  // namespace
}  // namespace rapport
