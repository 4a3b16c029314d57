// Optimizer benchmark: full and incremental re-plan time for 10k..1M entries with ~20
// configs each (one thread), memory per entry, and the objective of every policy on
// the same synthetic instance. Prints a markdown table; --csv also writes CSV.
//
// The instance: one model (Llama-3.1-8B-like, 128 KiB of bf16 KV per token), chunks of
// 256 tokens plus shorter last chunks (8 size classes), 20 configs with size ratios of
// the codec families, per-entry quality losses drawn around a per-config mean,
// Zipf(0.9) access frequencies, every entry stored raw (half DRAM, half SSD) with a
// master copy, DRAM = 10% and SSD = 60% of the raw total.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "policy/access_stats.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"

namespace adaptcache::policy {
namespace {

struct ConfigDef {
  const char* name;
  CodecId family;
  double ratio;  // stored / raw
  double loss;   // mean expected quality drop
};
constexpr ConfigDef kConfigs[] = {
    {"raw", CodecId::kRaw, 1.0, 0},
    {"fp8", CodecId::kFp8, 0.51, 0.002},
    {"quant-k8v8-g64", CodecId::kQuant, 0.52, 0.001},
    {"quant-k4v4-g128", CodecId::kQuant, 0.27, 0.008},
    {"quant-k4v4-g64", CodecId::kQuant, 0.28, 0.006},
    {"quant-k4v4-g32", CodecId::kQuant, 0.30, 0.005},
    {"quant-k4v2-g64", CodecId::kQuant, 0.21, 0.015},
    {"quant-k3v3-g64", CodecId::kQuant, 0.21, 0.018},
    {"quant-k2v2-g64-h", CodecId::kQuant, 0.15, 0.035},
    {"quant-k2v2-g32-h", CodecId::kQuant, 0.16, 0.030},
    {"drop-75", CodecId::kDrop, 0.76, 0.010},
    {"drop-50", CodecId::kDrop, 0.51, 0.025},
    {"drop-33", CodecId::kDrop, 0.34, 0.045},
    {"drop-25", CodecId::kDrop, 0.26, 0.06},
    {"drop-50+quant-k4v4-g64", CodecId::kDrop, 0.145, 0.032},
    {"drop-75+quant-k4v4-g64", CodecId::kDrop, 0.21, 0.017},
    {"drop-25+quant-k4v4-g64", CodecId::kDrop, 0.075, 0.07},
    {"lowrank-8", CodecId::kLowrank, 0.125, 0.02},
    {"lowrank-12", CodecId::kLowrank, 0.083, 0.035},
    {"lowrank-20", CodecId::kLowrank, 0.05, 0.06},
};

PolicyInput MakeInstance(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::lognormal_distribution<double> jitter(0, 0.5);
  PolicyInput in;
  for (const ConfigDef& c : kConfigs) in.configs.push_back({c.name, c.family});
  const uint32_t tokens[] = {256, 224, 192, 160, 128, 96, 64, 32};
  for (uint32_t t : tokens) {
    SizeClass sc;
    sc.tokens = t;
    sc.raw_bytes = uint64_t{t} * 131072;
    for (const ConfigDef& c : kConfigs) sc.bytes.push_back(static_cast<uint64_t>(sc.raw_bytes * c.ratio) + 256);
    in.classes.push_back(sc);
  }
  in.namespaces.push_back(QualityBudget{0.2});  // 1% quality drop ~ 2 ms of delay
  in.entries.resize(n);
  in.qloss.resize(n * in.configs.size());
  std::vector<uint32_t> rank(n);
  for (size_t i = 0; i < n; ++i) rank[i] = static_cast<uint32_t>(i + 1);
  std::shuffle(rank.begin(), rank.end(), rng);
  uint64_t raw_total = 0;
  for (size_t i = 0; i < n; ++i) {
    EntryInput& e = in.entries[i];
    e.freq = static_cast<float>(1000.0 / std::pow(rank[i], 0.9));
    e.size_class = u(rng) < 0.85 ? 0 : 1 + static_cast<uint32_t>(rng() % 7);
    e.last_access_ns = static_cast<int64_t>(u(rng) * 1e12 * e.freq / 1000);
    e.config = 0;
    e.tier = i % 2 ? Tier::kDram : Tier::kSsd;
    e.flags = kHasMaster;
    raw_total += in.classes[e.size_class].raw_bytes;
    for (size_t c = 0; c < in.configs.size(); ++c) {
      in.qloss[i * in.configs.size() + c] = static_cast<float>(kConfigs[c].loss * jitter(rng));
    }
  }
  in.dram_capacity = raw_total / 10;
  in.ssd_capacity = raw_total * 6 / 10;
  return in;
}

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

// CPU time of this thread: the machine is shared, so wall time overstates the cost.
double ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// A plan's reported totals, moves and mean losses must be those of its targets:
// FinalizePlan recomputes them. The objective depends on alpha, which an average-budget
// search changes, so it is compared only when `objective`.
absl::Status CheckTotals(const PolicyInput& in, const PlacementPlan& p, bool objective) {
  PlacementPlan q = p;
  FinalizePlan(in, &q);
  auto close = [](double a, double b) {
    return std::fabs(a - b) <= 1e-6 * std::max({1e-12, std::fabs(a), std::fabs(b)});
  };
  const PlanTotals &a = p.totals, &b = q.totals;
  bool ok = a.dram_bytes == b.dram_bytes && a.ssd_bytes == b.ssd_bytes && a.entries_dram == b.entries_dram &&
            a.entries_ssd == b.entries_ssd && a.entries_none == b.entries_none && p.moves.size() == q.moves.size() &&
            close(a.delay_term, b.delay_term) && (!objective || close(a.objective, b.objective)) &&
            p.ns_avg_loss.size() == q.ns_avg_loss.size();
  for (size_t i = 0; ok && i < p.ns_avg_loss.size(); ++i) ok = close(p.ns_avg_loss[i], q.ns_avg_loss[i]);
  if (ok) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("reported totals differ from the targets': objective ", a.objective, " vs ",
                                          b.objective, ", delay ", a.delay_term, " vs ", b.delay_term, ", moves ",
                                          p.moves.size(), " vs ", q.moves.size()));
}

[[noreturn]] void Fail(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "policy_bench: FAILED: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

// Moves the current state to the plan's targets (what the mover would do).
void Apply(PolicyInput* in, const PlacementPlan& plan) {
  for (size_t i = 0; i < in->entries.size(); ++i) {
    in->entries[i].config = plan.target[i].config;
    in->entries[i].tier = plan.target[i].tier;
  }
}

struct Summary {
  double mean_delay_ms;  // Σ f·delay / Σ f
  double mean_loss;      // Σ f·q / Σ f
  double dram_share;     // Σ_{DRAM} f / Σ f
  double miss_share;
};

Summary Summarize(const PolicyInput& in, const PlacementPlan& p) {
  double fs = 0, fd = 0, fm = 0;
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const double f = in.entries[i].freq;
    fs += f;
    if (p.target[i].tier == Tier::kDram) fd += f;
    if (p.target[i].tier == Tier::kNone) fm += f;
  }
  return {1e3 * p.totals.delay_term / fs, p.ns_avg_loss[0], fd / fs, fm / fs};
}

int Main(int argc, char** argv) {
  std::vector<size_t> sizes = {10000, 100000, 1000000};
  int reps = 5;
  size_t compare_n = 100000;
  std::string csv;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto next = [&]() -> std::string { return a + 1 < argc ? argv[++a] : ""; };
    if (arg == "--entries") {
      sizes.clear();
      for (absl::string_view s : absl::StrSplit(next(), ',')) {
        size_t v;
        if (!absl::SimpleAtoi(s, &v) || v == 0) return std::fprintf(stderr, "bad --entries\n"), 2;
        sizes.push_back(v);
      }
    } else if (arg == "--reps") {
      reps = std::atoi(next().c_str());
      if (reps <= 0) return std::fprintf(stderr, "bad --reps\n"), 2;
    } else if (arg == "--compare") {
      compare_n = std::strtoull(next().c_str(), nullptr, 10);
    } else if (arg == "--csv") {
      csv = next();
    } else {
      std::fprintf(stderr, "usage: policy_bench [--entries N,N] [--reps R] [--compare N] [--csv F]\n");
      return 2;
    }
  }
  std::string csv_rows = "section,entries,metric,value\n";
  auto row = [&](const char* section, size_t n, const std::string& metric, double v) {
    csv_rows += std::string(section) + "," + std::to_string(n) + "," + metric + "," + std::to_string(v) + "\n";
  };

  std::printf("## Re-plan time (one thread, %zu configs; medians of %d; CPU ms, wall ms in parentheses)\n\n",
              std::size(kConfigs), reps);
  std::printf("| entries | full plan (cold) | after mover applied | incremental (1%% freq changed) | "
              "hulls rebuilt | price rounds | moves (cold) | solver B/entry |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t n : sizes) {
    PolicyInput base = MakeInstance(n, 1);
    std::vector<double> cold, applied, inc, cold_w, applied_w, inc_w;
    uint64_t rebuilt = 0;
    uint32_t rounds = 0;
    size_t moves = 0;
    double state_bytes = 0;
    auto timed = [&](AdaptiveOptimizer& opt, const PolicyInput& in, std::vector<double>* cpu,
                     std::vector<double>* wall) {
      const double c0 = ThreadCpu();
      const auto t0 = std::chrono::steady_clock::now();
      auto p = opt.Plan(in);
      wall->push_back(1e3 * Seconds(t0));
      cpu->push_back(1e3 * (ThreadCpu() - c0));
      return p;
    };
    for (int r = 0; r < reps; ++r) {
      PolicyInput in = base;
      AdaptiveOptimizer opt;
      auto p1 = timed(opt, in, &cold, &cold_w);
      if (!p1.ok()) return std::fprintf(stderr, "%s\n", p1.status().ToString().c_str()), 1;
      // Each plan is checked against the input it was made for (outside the timing).
      if (auto st = CheckPlan(in, *p1); !st.ok()) Fail("cold plan", st);
      if (auto st = CheckTotals(in, *p1, true); !st.ok()) Fail("cold plan", st);
      moves = p1->moves.size();
      Apply(&in, *p1);
      auto p2 = timed(opt, in, &applied, &applied_w);
      if (!p2.ok()) Fail("plan after apply", p2.status());
      if (auto st = CheckPlan(in, *p2); !st.ok()) Fail("plan after apply", st);
      if (auto st = CheckTotals(in, *p2, true); !st.ok()) Fail("plan after apply", st);
      std::mt19937_64 rng(100 + r);
      for (size_t k = 0; k < n / 100; ++k) {
        in.entries[rng() % n].freq *= static_cast<float>(0.25 + 3.0 * (rng() % 1000) / 1000.0);
      }
      auto p3 = timed(opt, in, &inc, &inc_w);
      if (!p3.ok()) Fail("incremental plan", p3.status());
      if (auto st = CheckPlan(in, *p3); !st.ok()) Fail("incremental plan", st);
      if (auto st = CheckTotals(in, *p3, true); !st.ok()) Fail("incremental plan", st);
      rebuilt = opt.last_hulls_rebuilt();
      rounds = p3->totals.rounds;
      state_bytes = opt.StateBytesPerEntry();
    }
    std::printf("| %zu | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %lu | %u | %zu | %.0f |\n", n,
                Median(cold), Median(cold_w), Median(applied), Median(applied_w), Median(inc),
                Median(inc_w), static_cast<unsigned long>(rebuilt), rounds, moves, state_bytes);
    row("replan", n, "full_cpu_ms", Median(cold));
    row("replan", n, "full_wall_ms", Median(cold_w));
    row("replan", n, "after_apply_cpu_ms", Median(applied));
    row("replan", n, "incremental_cpu_ms", Median(inc));
    row("replan", n, "incremental_wall_ms", Median(inc_w));
    row("replan", n, "solver_bytes_per_entry", state_bytes);
  }

  // Memory per entry.
  {
    const size_t n = 1000000;
    auto stats = AccessStats::Create({});
    if (!stats.ok()) return 1;
    for (uint64_t i = 0; i < n; ++i) {
      (*stats)->Record(EntryKey{1, Key128{i * 0x9E3779B97F4A7C15ull, i * 0xC2B2AE3D27D4EB4Full + 1}}, 0);
    }
    if ((*stats)->size() != n) {
      Fail("AccessStats", absl::InternalError(absl::StrCat((*stats)->size(), " of ", n, " keys tracked")));
    }
    const double stats_b = (*stats)->BytesPerEntry();
    std::printf("\n## Memory per entry (1M entries)\n\n| item | bytes/entry |\n|---|---:|\n");
    std::printf("| AccessStats (sharded flat hash map, load factor included) | %.1f |\n", stats_b);
    std::printf("| EntryInput (optimizer input) | %zu |\n", sizeof(EntryInput));
    std::printf("| qloss input (20 configs x float) | %zu |\n", std::size(kConfigs) * sizeof(float));
    std::printf("| plan target (Placement) | %zu |\n", sizeof(Placement));
    row("memory", n, "access_stats", stats_b);
    row("memory", n, "entry_input", sizeof(EntryInput));
  }

  // Policies compared on one instance.
  if (compare_n > 0) {
    PolicyInput in = MakeInstance(compare_n, 2);
    std::printf("\n## Policies on one instance (%zu entries, DRAM 10%%, SSD 60%% of raw)\n\n", compare_n);
    std::printf("| policy | objective | vs adaptcache | mean delay ms/access | mean quality drop | "
                "DRAM hit share | miss share | plan CPU ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    std::vector<std::unique_ptr<Policy>> policies;
    policies.push_back(std::make_unique<AdaptiveOptimizer>());
    OptimizerOptions plain;
    plain.exact_window = 0;
    plain.local_search_window = 0;
    policies.push_back(std::make_unique<AdaptiveOptimizer>(plain));
    policies.push_back(std::make_unique<LruPolicy>());
    for (const char* c : {"raw", "fp8", "quant-k4v4-g64", "quant-k2v2-g32-h", "drop-50", "lowrank-8"}) {
      policies.push_back(std::make_unique<StaticPolicy>(c));
    }
    policies.push_back(std::make_unique<GreedyDowngrader>());
    double ref = 0;
    for (size_t p = 0; p < policies.size(); ++p) {
      const double c0 = ThreadCpu();
      auto plan = policies[p]->Plan(in);
      const double ms = 1e3 * (ThreadCpu() - c0);
      if (!plan.ok()) return std::fprintf(stderr, "%s\n", plan.status().ToString().c_str()), 1;
      if (auto s = CheckPlan(in, *plan); !s.ok()) {
        return std::fprintf(stderr, "%s: %s\n", policies[p]->Name().c_str(), s.ToString().c_str()), 1;
      }
      if (auto s = CheckTotals(in, *plan, true); !s.ok()) Fail(policies[p]->Name(), s);
      if (p == 0) ref = plan->totals.objective;
      const Summary s = Summarize(in, *plan);
      const std::string name = p == 1 ? "adaptcache (no clean-up)" : policies[p]->Name();
      std::printf("| %s | %.4f | %.4fx | %.3f | %.4f | %.3f | %.3f | %.0f |\n", name.c_str(),
                  plan->totals.objective, plan->totals.objective / ref, s.mean_delay_ms, s.mean_loss,
                  s.dram_share, s.miss_share, ms);
      row("compare", compare_n, name + "_objective", plan->totals.objective);
      row("compare", compare_n, name + "_delay_ms", s.mean_delay_ms);
      row("compare", compare_n, name + "_loss", s.mean_loss);
    }
    // Average-budget mode: α searched so the mean loss meets the budget.
    in.namespaces[0].avg_loss = 0.005;
    AdaptiveOptimizer budgeted;
    const double c0 = ThreadCpu();
    auto plan = budgeted.Plan(in);
    const double ms = 1e3 * (ThreadCpu() - c0);
    if (!plan.ok()) Fail("avg-budget plan", plan.status());
    if (auto st = CheckPlan(in, *plan); !st.ok()) Fail("avg-budget plan", st);
    if (auto st = CheckTotals(in, *plan, false); !st.ok()) Fail("avg-budget plan", st);
    if (!plan->budgets_met || !(plan->ns_avg_loss[0] <= in.namespaces[0].avg_loss)) {
      Fail("avg-budget plan", absl::InternalError(absl::StrCat("mean loss ", plan->ns_avg_loss[0], " over the budget ",
                                                               in.namespaces[0].avg_loss)));
    }
    const Summary s = Summarize(in, *plan);
    std::printf("| adaptcache, avg budget 0.005 (alpha=%.3g) | %.4f | %.4fx | %.3f | %.4f | %.3f | %.3f | %.0f |\n",
                budgeted.last_alpha()[0], plan->totals.objective, plan->totals.objective / ref,
                s.mean_delay_ms, s.mean_loss, s.dram_share, s.miss_share, ms);
  }
  if (!csv.empty()) std::ofstream(csv) << csv_rows;
  return 0;
}

}  // namespace
}  // namespace adaptcache::policy

int main(int argc, char** argv) { return adaptcache::policy::Main(argc, argv); }
