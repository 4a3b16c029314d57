// Cost of the daemon's metrics: per-request recording (the hot path) and a /metrics
// render (which walks the DRAM index for the by-codec gauges) as the entry count grows.
// Prints a markdown table of medians over repeated runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/codec.h"
#include "server/metrics.h"
#include "server/server_metrics.h"
#include "storage/tier_manager.h"

using namespace adaptcache;
using namespace adaptcache::server;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "server_bench: FAILED: %s\n", what.c_str());
  std::exit(1);
}

template <typename F>
double MedianNs(int reps, uint64_t iters, F&& body) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    body(iters);
    v.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / iters);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  TierManagerOptions opts;
  opts.dram.capacity_bytes = 512ull << 20;
  opts.dram.name = "ac-server-bench";
  opts.dram.mlock = false;
  auto tm = TierManager::Create(std::move(opts));
  if (!tm.ok()) {
    std::fprintf(stderr, "pool: %s\n", std::string(tm.status().message()).c_str());
    return 1;
  }
  MetricsRegistry reg;
  auto metrics = ServerMetrics::Create(&reg, tm->get());
  if (!metrics.ok()) return 1;
  ServerMetrics* m = metrics->get();
  constexpr uint64_t kIters = 2'000'000;

  std::printf("| measurement | median |\n| --- | --- |\n");
  // Each figure is printed only after the timed calls' effect is checked: 5 runs of kIters.
  constexpr uint64_t kCalls = 5 * kIters;
  Counter c;
  const double inc_ns = MedianNs(5, kIters, [&](uint64_t n) { for (uint64_t i = 0; i < n; ++i) c.Inc(); });
  if (c.Value() != kCalls) {
    Fail("Counter::Inc: value " + std::to_string(c.Value()) + ", expected " + std::to_string(kCalls));
  }
  std::printf("| Counter::Inc, 1 thread | %.1f ns |\n", inc_ns);
  Histogram h(DefaultLatencyBuckets());
  const double obs_ns = MedianNs(5, kIters, [&](uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) h.Observe(1e-4 * (i & 63));
  });
  {
    // Replay the observed values: buckets (le: v <= bound) from one period of i & 63,
    // and the sum in the same order.
    static_assert(kIters % 64 == 0);
    const auto snap = h.Take();
    std::vector<uint64_t> want(snap.bounds.size() + 1, 0);
    for (uint64_t k = 0; k < 64; ++k) {
      for (size_t b = 0; b < snap.bounds.size(); ++b) want[b] += (1e-4 * k <= snap.bounds[b]) * (kCalls / 64);
    }
    want.back() = kCalls;
    double sum = 0;
    for (int r = 0; r < 5; ++r) {
      for (uint64_t i = 0; i < kIters; ++i) sum += 1e-4 * (i & 63);
    }
    if (snap.count != kCalls || snap.cumulative != want || std::fabs(snap.sum - sum) > 1e-9 * sum) {
      Fail("Histogram::Observe: count " + std::to_string(snap.count) + ", sum " + std::to_string(snap.sum) +
           " or buckets differ from the observed values");
    }
  }
  std::printf("| Histogram::Observe, 1 thread | %.1f ns |\n", obs_ns);
  const double rec_ns = MedianNs(5, kIters, [&](uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
  });
  if (m->requests(Op::kGet) != kCalls) {
    Fail("ServerMetrics::Record: " + std::to_string(m->requests(Op::kGet)) + " Get requests counted");
  }
  std::printf("| ServerMetrics::Record (counter+histogram), 1 thread | %.1f ns |\n", rec_ns);
  const double rec2_ns = MedianNs(5, kIters, [&](uint64_t n) {
    std::thread t([&] {
      for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
    });
    for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
    t.join();
  });
  if (m->requests(Op::kGet) != 3 * kCalls) {
    Fail("ServerMetrics::Record, 2 threads: " + std::to_string(m->requests(Op::kGet)) + " Get requests counted");
  }
  std::printf("| ServerMetrics::Record, 2 threads same op (per call) | %.1f ns |\n", rec2_ns);

  // Fill the pool with tiny raw entries and time a full render.
  KvShape shape{1, 1, 1, 8, DType::kBF16};
  std::vector<std::byte> raw(shape.Bytes(), std::byte{1});
  auto container = EncodeToVector(CodecConfig{}, shape, raw);
  if (!container.ok()) return 1;
  uint64_t stored = 0;
  for (uint64_t target : {0ull, 1000ull, 10000ull, 100000ull}) {
    for (; stored < target; ++stored) {
      auto e = (*tm)->Allocate(container->size());
      if (!e.ok()) break;
      std::copy(container->begin(), container->end(), (*tm)->Bytes(*e).begin());
      EntryMeta meta;
      meta.shape = shape;
      meta.codec = "raw";
      meta.raw_bytes = shape.Bytes();
      meta.stored_bytes = container->size();
      EntryKey key{1, Key128{stored, ~stored}};
      if (!(*tm)->CommitPut(key, *e, meta).ok()) break;
    }
    if (stored != target) {
      Fail("fill: stored " + std::to_string(stored) + " of " + std::to_string(target) + " entries");
    }
    std::string text;
    double ns = MedianNs(5, 1, [&](uint64_t) { text = reg.Render(); });
    const size_t bytes = text.size();
    // The last render must report the entries stored and the requests recorded above.
    for (const std::string& line :
         {"\nadaptcache_pool_entries " + FormatValue(static_cast<double>(stored)) + "\n",
          "\nadaptcache_requests_total{op=\"" + std::string(OpName(Op::kGet)) + "\",code=\"OK\"} " +
              std::to_string(3 * kCalls) + "\n"}) {
      if (text.find(line) == std::string::npos) {
        Fail("/metrics render lacks the line '" + line.substr(1, line.size() - 2) + "'");
      }
    }
    std::printf("| /metrics render, %llu entries (%zu bytes of text) | %.3f ms |\n",
                static_cast<unsigned long long>(stored), bytes, ns / 1e6);
  }
  return 0;
}
