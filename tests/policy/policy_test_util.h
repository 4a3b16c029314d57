// Shared helpers for the policy tests: random small instances and a brute-force
// optimum to check solvers against.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "policy/types.h"

namespace adaptcache::policy::testing {

// A config space shaped like the real one: raw, fp8 (~2x), and quant/drop/lowrank
// points with growing compression and loss.
inline PolicyInput RandomInstance(std::mt19937_64& rng, int entries, int configs,
                                  double dram_fill, double ssd_fill, int classes = 2) {
  std::uniform_real_distribution<double> u(0, 1);
  PolicyInput in;
  const CodecId fams[] = {CodecId::kRaw, CodecId::kFp8, CodecId::kQuant, CodecId::kDrop,
                          CodecId::kLowrank, CodecId::kQuant};
  const double ratio[] = {1.0, 0.5, 0.27, 0.2, 0.08, 0.15};
  for (int c = 0; c < configs; ++c) {
    in.configs.push_back({"c" + std::to_string(c), fams[c % 6]});
  }
  for (int s = 0; s < classes; ++s) {
    SizeClass sc;
    sc.tokens = 256 >> s;
    sc.raw_bytes = (32ull << 20) >> s;
    for (int c = 0; c < configs; ++c) {
      const double jitter = c == 0 ? 1.0 : 0.8 + 0.4 * u(rng);
      sc.bytes.push_back(static_cast<uint64_t>(sc.raw_bytes * ratio[c % 6] * jitter) + 4096);
    }
    in.classes.push_back(sc);
  }
  in.namespaces.push_back(QualityBudget{0.1, std::numeric_limits<double>::infinity(), -1});
  uint64_t raw_total = 0;
  for (int i = 0; i < entries; ++i) {
    EntryInput e;
    e.freq = static_cast<float>(std::exp(3 * u(rng)) - 0.9);
    e.size_class = static_cast<uint32_t>(rng() % classes);
    e.last_access_ns = static_cast<int64_t>(rng() % 1000000);
    e.config = 0;
    e.tier = u(rng) < 0.5 ? Tier::kDram : Tier::kSsd;
    e.flags = kHasMaster;
    in.entries.push_back(e);
    raw_total += in.classes[e.size_class].bytes[0];
    for (int c = 0; c < configs; ++c) {
      in.qloss.push_back(c == 0 ? 0.f : static_cast<float>(0.12 * ratio[5 - c % 6] * u(rng) + 0.005 * c));
    }
  }
  in.dram_capacity = static_cast<uint64_t>(raw_total * dram_fill);
  in.ssd_capacity = static_cast<uint64_t>(raw_total * ssd_fill);
  return in;
}

inline std::vector<Placement> Options(const PolicyInput& in, size_t i) {
  const EntryInput& e = in.entries[i];
  if (e.flags & kPinned) {
    return {e.tier == Tier::kNone ? Placement{} : Placement{e.config, e.tier}};
  }
  std::vector<Placement> opts{Placement{}};
  for (size_t c = 0; c < in.configs.size(); ++c) {
    const auto ci = static_cast<ConfigIndex>(c);
    if (!Reachable(in, i, ci) || in.QLoss(i, c) > in.namespaces[e.ns].max_loss) continue;
    opts.push_back({ci, Tier::kDram});
    opts.push_back({ci, Tier::kSsd});
  }
  return opts;
}

// Exhaustive optimum of Σ f·cost under the capacities (DFS with capacity pruning).
inline double BruteForceOptimum(const PolicyInput& in) {
  const size_t n = in.entries.size();
  std::vector<std::vector<Placement>> opts(n);
  for (size_t i = 0; i < n; ++i) opts[i] = Options(in, i);
  double best = std::numeric_limits<double>::infinity();
  std::function<void(size_t, uint64_t, uint64_t, double)> dfs = [&](size_t i, uint64_t d, uint64_t s,
                                                                     double cost) {
    if (cost >= best) return;
    if (i == n) {
      best = cost;
      return;
    }
    for (const Placement& p : opts[i]) {
      uint64_t b = p.tier == Tier::kNone ? 0 : in.classes[in.entries[i].size_class].bytes[p.config];
      uint64_t nd = d + (p.tier == Tier::kDram ? b : 0), ns = s + (p.tier == Tier::kSsd ? b : 0);
      if (nd > in.dram_capacity || ns > in.ssd_capacity) continue;
      dfs(i + 1, nd, ns, cost + in.entries[i].freq * PlacementCost(in, i, p));
    }
  };
  dfs(0, 0, 0, 0);
  return best;
}

}  // namespace adaptcache::policy::testing
