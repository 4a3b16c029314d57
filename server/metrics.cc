#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace adaptcache::server {
namespace {

bool ValidName(std::string_view n, bool allow_colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out += ',';
    first = false;
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    absl::StrAppend(&out, std::string(extra_name), "=\"", std::string(extra_value), "\"");
  }
  out += '}';
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = acc;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  // count is the +Inf bucket so the exposition stays consistent under concurrent
  // Observe() calls.
  s.count = acc;
  return s;
}

std::vector<double> DefaultLatencyBuckets() {
  return {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
          25e-3, 50e-3,  100e-3, 250e-3, 500e-3, 1.0,  2.5,   10.0};
}

template <typename M>
absl::StatusOr<M*> Family<M>::WithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metric needs ", label_names_.size(),
                                                   " label values, got ", values.size()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = children_[values];
  if (!slot) {
    if constexpr (std::is_same_v<M, Histogram>) {
      slot = std::make_unique<Histogram>(bounds_);
    } else {
      slot = std::make_unique<M>();
    }
  }
  return slot.get();
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

absl::Status MetricsRegistry::CheckNew(const std::string& name,
                                       const std::vector<std::string>& labels,
                                       bool histogram) const {
  if (!ValidName(name, true)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid metric name '", name, "'"));
  }
  for (const auto& e : entries_) {
    if (e->name == name) {
      return absl::AlreadyExistsError(absl::StrCat("metric '", name, "' already registered"));
    }
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const auto& l = labels[i];
    if (!ValidName(l, false) || l.rfind("__", 0) == 0 || (histogram && l == "le")) {
      return absl::InvalidArgumentError(absl::StrCat("invalid label name '", l, "' on ", name));
    }
    if (std::find(labels.begin(), labels.begin() + i, l) != labels.begin() + i) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate label '", l, "' on ", name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Family<Counter>*> MetricsRegistry::AddCounter(std::string name, std::string help,
                                                             std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto st = CheckNew(name, labels, false); !st.ok()) return st;
  auto e = std::make_unique<Entry>();
  e->name = std::move(name);
  e->help = std::move(help);
  e->type = MetricType::kCounter;
  e->counter.reset(new Family<Counter>(std::move(labels), {}));
  auto* f = e->counter.get();
  entries_.push_back(std::move(e));
  return f;
}

absl::StatusOr<Family<Gauge>*> MetricsRegistry::AddGauge(std::string name, std::string help,
                                                         std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto st = CheckNew(name, labels, false); !st.ok()) return st;
  auto e = std::make_unique<Entry>();
  e->name = std::move(name);
  e->help = std::move(help);
  e->type = MetricType::kGauge;
  e->gauge.reset(new Family<Gauge>(std::move(labels), {}));
  auto* f = e->gauge.get();
  entries_.push_back(std::move(e));
  return f;
}

absl::StatusOr<Family<Histogram>*> MetricsRegistry::AddHistogram(std::string name,
                                                                 std::string help,
                                                                 std::vector<std::string> labels,
                                                                 std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto st = CheckNew(name, labels, true); !st.ok()) return st;
  if (bounds.empty()) return absl::InvalidArgumentError("histogram needs at least one bucket");
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram ", name, ": bounds must be finite and strictly increasing"));
    }
  }
  auto e = std::make_unique<Entry>();
  e->name = std::move(name);
  e->help = std::move(help);
  e->type = MetricType::kHistogram;
  e->histogram.reset(new Family<Histogram>(std::move(labels), std::move(bounds)));
  auto* f = e->histogram.get();
  entries_.push_back(std::move(e));
  return f;
}

void MetricsRegistry::AddCollector(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string MetricsRegistry::Render() {
  std::lock_guard<std::mutex> render_lock(render_mu_);
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors) c();

  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& e : entries_) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", EscapeHelp(e->help), "\n# TYPE ", e->name, " ",
                    TypeName(e->type), "\n");
    switch (e->type) {
      case MetricType::kCounter: {
        std::lock_guard<std::mutex> fl(e->counter->mu_);
        for (const auto& [values, c] : e->counter->children_) {
          out += e->name;
          AppendLabels(out, e->counter->label_names_, values);
          absl::StrAppend(&out, " ", c->Value(), "\n");
        }
        break;
      }
      case MetricType::kGauge: {
        std::lock_guard<std::mutex> fl(e->gauge->mu_);
        for (const auto& [values, g] : e->gauge->children_) {
          out += e->name;
          AppendLabels(out, e->gauge->label_names_, values);
          absl::StrAppend(&out, " ", FormatValue(g->Value()), "\n");
        }
        break;
      }
      case MetricType::kHistogram: {
        std::lock_guard<std::mutex> fl(e->histogram->mu_);
        const auto& names = e->histogram->label_names_;
        for (const auto& [values, h] : e->histogram->children_) {
          auto snap = h->Take();
          for (size_t i = 0; i <= snap.bounds.size(); ++i) {
            absl::StrAppend(&out, e->name, "_bucket");
            AppendLabels(out, names, values, "le",
                         i < snap.bounds.size() ? FormatValue(snap.bounds[i]) : "+Inf");
            absl::StrAppend(&out, " ", snap.cumulative[i], "\n");
          }
          absl::StrAppend(&out, e->name, "_sum");
          AppendLabels(out, names, values);
          absl::StrAppend(&out, " ", FormatValue(snap.sum), "\n", e->name, "_count");
          AppendLabels(out, names, values);
          absl::StrAppend(&out, " ", snap.count, "\n");
        }
        break;
      }
    }
  }
  return out;
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, p);
}

}  // namespace adaptcache::server
