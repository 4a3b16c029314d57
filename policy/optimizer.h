// AdaptCache's placement optimizer (DESIGN.md §7, docs/optimizer.md).
//
// Minimises Σ_i f_i · (delay_i(config, tier) + α_ns · qloss_i(config)) subject to the
// DRAM and SSD capacities and each namespace's quality budget, where an evicted entry
// costs its recompute time. It is a multiple-choice knapsack with two knapsacks:
//
//  1. Per entry, the lower convex hull of its allowed options (stored bytes, decode time
//     + α·qloss), built from the configs in ascending size order of its size class (the
//     order is computed once per class). Floors, reachability and applicability filter
//     the options first. Delay is affine in bytes per tier, so one hull serves both tiers.
//  2. Lagrangian prices λ_DRAM, λ_SSD per byte. For fixed λ_SSD, DRAM use is a step
//     function of λ_DRAM; one pass puts every entry's breakpoints in a log-spaced
//     histogram (1/256 octave) and reads off the smallest price that fits. The two
//     prices are solved alternately until they stop moving (warm-started from the last
//     plan).
//  3. A repair step (cheapest downgrades per byte) makes the plan feasible and a fill
//     step (best upgrades per byte) spends what capacity is left. Then a local search
//     over the few most marginal entries (all their options, single and pairwise
//     changes, then an exact branch and bound over the most marginal few) removes most
//     of the integrality gap, which only matters on small instances.
//
// Incremental re-plans: Plan() reuses the previous call's hulls for every entry whose
// size class, current config/tier, flags and namespace are unchanged, when
// PolicyInput::quality_epoch, the entry count, configs, classes, namespaces and the
// delay model are the same as last time (bump quality_epoch whenever qloss changes).
// Frequencies may change freely between calls.
//
// Average budgets (QualityBudget::avg_loss) are met by searching each such namespace's
// α (bisection in log space, several full solves), starting from the last value found.
//
// Thread safety: not thread safe (keeps warm-start state); one instance per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "policy/types.h"

namespace adaptcache::policy {

struct OptimizerOptions {
  uint32_t max_rounds = 40;           // alternations of the two price solves
  double price_tolerance = 1e-3;      // relative price change that counts as converged
  uint32_t max_alpha_solves = 16;     // full solves per Plan() when avg budgets are set
  uint32_t max_fill_passes = 4;       // passes of the fill step
  uint32_t local_search_window = 24;  // marginal entries the pairwise clean-up looks at
  uint32_t exact_window = 8;          // of those, how many are re-optimised exactly
  uint64_t exact_nodes = 1 << 18;     // branch-and-bound node budget for that
};

class AdaptiveOptimizer final : public Policy {
 public:
  explicit AdaptiveOptimizer(OptimizerOptions options = {});
  ~AdaptiveOptimizer() override;

  std::string Name() const override { return "adaptcache"; }
  absl::StatusOr<PlacementPlan> Plan(const PolicyInput& in) override;
  // PricedPutConfigs at the plan's DRAM price and the α each namespace was solved with.
  PutConfigTable PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const override;

  // Diagnostics of the last Plan(): hulls rebuilt (entries) and per-namespace α used.
  uint64_t last_hulls_rebuilt() const { return last_hulls_rebuilt_; }
  const std::vector<double>& last_alpha() const { return alpha_; }
  // Bytes of solver state per entry (hulls, snapshots, scratch), for the memory budget.
  double StateBytesPerEntry() const;

  struct State;  // solver internals, defined in optimizer_state.h

 private:
  OptimizerOptions options_;
  std::vector<double> alpha_;
  uint64_t last_hulls_rebuilt_ = 0;
  std::unique_ptr<State> state_;  // pimpl keeps the solver internals out of this header
};

}  // namespace adaptcache::policy
