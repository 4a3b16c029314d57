// Baseline placement policies behind the same Policy interface as the optimizer, for
// evaluation (DESIGN.md §7). All honour pinned entries, per-entry quality floors and
// reachability (a lossy entry without a master copy cannot be upgraded); none of them
// searches α for average budgets (PlacementPlan::budgets_met reports the outcome).
//
//  - LruPolicy ("lru-raw"): LMCache's behaviour. Every entry uncompressed (raw when it
//    can be re-derived, else its current config), most recently used first into DRAM
//    while it fits, then SSD, the rest evicted.
//  - StaticPolicy ("static-<config>"): one config for every entry (an entry that cannot
//    take it keeps its current config if allowed), tiering by frequency: DRAM, SSD, evict.
//  - GreedyDowngrader ("greedy-downgrade"): the AdaptCache paper's greedy. Start from the
//    highest-fidelity allowed config in DRAM; while DRAM overflows apply the single
//    downgrade with the least objective lost per byte freed, over all entries: a smaller
//    config in DRAM (quality and decode cost), or the move to SSD ("rate 0": no quality
//    lost, only the extra load delay). Then the same for SSD, where the last step is
//    eviction. It never upgrades and never uses capacity that the downgrades left free.
//
// Thread safety: stateless; Plan() may be called concurrently on one instance.
#pragma once

#include <string>

#include "policy/types.h"

namespace adaptcache::policy {

class LruPolicy final : public Policy {
 public:
  std::string Name() const override { return "lru-raw"; }
  absl::StatusOr<PlacementPlan> Plan(const PolicyInput& in) override;
};

class StaticPolicy final : public Policy {
 public:
  // config_name must name one of PolicyInput::configs at Plan() time.
  explicit StaticPolicy(std::string config_name) : config_name_(std::move(config_name)) {}
  std::string Name() const override { return "static-" + config_name_; }
  absl::StatusOr<PlacementPlan> Plan(const PolicyInput& in) override;
  // Its config for every class it applies to (a static policy compresses at put time).
  PutConfigTable PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const override;

 private:
  std::string config_name_;
};

class GreedyDowngrader final : public Policy {
 public:
  std::string Name() const override { return "greedy-downgrade"; }
  absl::StatusOr<PlacementPlan> Plan(const PolicyInput& in) override;
  // ModalPutConfigs: new entries start where the greedy left most of their class in DRAM
  // (it has no price of its own; without a rule new raw entries push others out).
  PutConfigTable PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const override;
};

}  // namespace adaptcache::policy
