// A small Prometheus metrics registry (text exposition format 0.0.4).
//
// Families (counter, gauge, histogram) are registered once at startup with a name, a
// help text and label names; WithLabels() returns the child for one set of label
// values, created on first use. Children live as long as the registry, so callers
// cache the pointer and the hot path is one relaxed atomic add (counters, gauges) or
// a bucket search plus three atomic adds (histograms): no lock, no allocation.
// Render() runs the registered collectors (which refresh gauges from other state),
// then writes every family in registration order and its children in label order.
//
// Thread safety: every method may be called concurrently. Registration and
// WithLabels() take a mutex; updates on a child are lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adaptcache::server {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  // For counters mirrored from another component's monotonic total.
  void Set(uint64_t v) { value_.store(v, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries, last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// Latency buckets in seconds, 50 us .. 10 s.
std::vector<double> DefaultLatencyBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

class MetricsRegistry;

template <typename M>
class Family {
 public:
  // The child for `values` (one per label name, in order); created on first use.
  // InvalidArgument when the count is wrong.
  absl::StatusOr<M*> WithLabels(const std::vector<std::string>& values);
  // For label-less families.
  M* Get() { return *WithLabels({}); }

 private:
  friend class MetricsRegistry;
  Family(std::vector<std::string> label_names, std::vector<double> bounds)
      : label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

class MetricsRegistry {
 public:
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not
  // starting with "__", and not "le" on histograms); a name is registered once.
  absl::StatusOr<Family<Counter>*> AddCounter(std::string name, std::string help,
                                              std::vector<std::string> labels = {});
  absl::StatusOr<Family<Gauge>*> AddGauge(std::string name, std::string help,
                                          std::vector<std::string> labels = {});
  absl::StatusOr<Family<Histogram>*> AddHistogram(std::string name, std::string help,
                                                  std::vector<std::string> labels,
                                                  std::vector<double> bounds);
  // Runs at the start of every Render(), serialized with other renders.
  void AddCollector(std::function<void()> fn);

  std::string Render();

 private:
  struct Entry {
    std::string name;
    std::string help;
    MetricType type;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  absl::Status CheckNew(const std::string& name, const std::vector<std::string>& labels,
                        bool histogram) const;

  mutable std::mutex mu_;
  std::mutex render_mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::function<void()>> collectors_;
};

// Exposition helpers (exposed for tests).
std::string EscapeLabelValue(std::string_view v);  // \\ \" \n
std::string EscapeHelp(std::string_view v);        // \\ \n
std::string FormatValue(double v);                 // shortest round trip, +Inf, -Inf, NaN

}  // namespace adaptcache::server
