// Cost of the daemon's metrics: per-request recording (the hot path) and a /metrics
// render (which walks the DRAM index for the by-codec gauges) as the entry count grows.
// Prints a markdown table of medians over repeated runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
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
  Counter c;
  std::printf("| Counter::Inc, 1 thread | %.1f ns |\n",
              MedianNs(5, kIters, [&](uint64_t n) { for (uint64_t i = 0; i < n; ++i) c.Inc(); }));
  Histogram h(DefaultLatencyBuckets());
  std::printf("| Histogram::Observe, 1 thread | %.1f ns |\n",
              MedianNs(5, kIters, [&](uint64_t n) {
                for (uint64_t i = 0; i < n; ++i) h.Observe(1e-4 * (i & 63));
              }));
  std::printf("| ServerMetrics::Record (counter+histogram), 1 thread | %.1f ns |\n",
              MedianNs(5, kIters, [&](uint64_t n) {
                for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
              }));
  std::printf("| ServerMetrics::Record, 2 threads same op (per call) | %.1f ns |\n",
              MedianNs(5, kIters, [&](uint64_t n) {
                std::thread t([&] {
                  for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
                });
                for (uint64_t i = 0; i < n; ++i) m->Record(Op::kGet, grpc::StatusCode::OK, 1e-4);
                t.join();
              }));

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
    size_t bytes = 0;
    double ns = MedianNs(5, 1, [&](uint64_t) { bytes = reg.Render().size(); });
    std::printf("| /metrics render, %llu entries (%zu bytes of text) | %.3f ms |\n",
                static_cast<unsigned long long>(stored), bytes, ns / 1e6);
  }
  return 0;
}
