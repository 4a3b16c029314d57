#include "policy/baselines.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <vector>

#include "absl/strings/str_cat.h"

namespace adaptcache::policy {
namespace {

uint64_t Bytes(const PolicyInput& in, size_t i, ConfigIndex c) {
  return in.classes[in.entries[i].size_class].bytes[c];
}

bool Allowed(const PolicyInput& in, size_t i, ConfigIndex c) {
  return Reachable(in, i, c) && in.QLoss(i, c) <= in.namespaces[in.entries[i].ns].max_loss;
}

// Starts a plan: pinned entries fixed, their bytes charged to the tiers.
struct Tiering {
  const PolicyInput& in;
  PlacementPlan plan;
  uint64_t use_d = 0, use_s = 0;

  explicit Tiering(const PolicyInput& input) : in(input) {
    plan.target.assign(in.entries.size(), Placement{});
    for (size_t i = 0; i < in.entries.size(); ++i) {
      const EntryInput& e = in.entries[i];
      if (!(e.flags & kPinned) || e.tier == Tier::kNone) continue;
      plan.target[i] = {e.config, e.tier};
      (e.tier == Tier::kDram ? use_d : use_s) += Bytes(in, i, e.config);
    }
  }
  // DRAM if it fits, else SSD if it fits, else not stored.
  void Place(size_t i, ConfigIndex c) {
    const uint64_t b = Bytes(in, i, c);
    if (use_d + b <= in.dram_capacity) {
      use_d += b;
      plan.target[i] = {c, Tier::kDram};
    } else if (use_s + b <= in.ssd_capacity) {
      use_s += b;
      plan.target[i] = {c, Tier::kSsd};
    }
  }
  PlacementPlan Finish() {
    FinalizePlan(in, &plan);
    return std::move(plan);
  }
};

std::vector<uint32_t> Unpinned(const PolicyInput& in) {
  std::vector<uint32_t> idx;
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const EntryInput& e = in.entries[i];
    if (!(e.flags & kPinned) && e.tier != Tier::kNone) idx.push_back(static_cast<uint32_t>(i));
  }
  return idx;
}

// The highest-fidelity allowed config (least loss, then smallest), or kNoConfig.
ConfigIndex BestFidelity(const PolicyInput& in, size_t i) {
  ConfigIndex best = kNoConfig;
  for (size_t c = 0; c < in.configs.size(); ++c) {
    const auto ci = static_cast<ConfigIndex>(c);
    if (!Allowed(in, i, ci)) continue;
    if (best == kNoConfig || in.QLoss(i, ci) < in.QLoss(i, best) ||
        (in.QLoss(i, ci) == in.QLoss(i, best) && Bytes(in, i, ci) < Bytes(in, i, best))) {
      best = ci;
    }
  }
  return best;
}

}  // namespace

absl::StatusOr<PlacementPlan> LruPolicy::Plan(const PolicyInput& in) {
  if (auto s = ValidateInput(in); !s.ok()) return s;
  Tiering t(in);
  std::vector<uint32_t> idx = Unpinned(in);
  std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) {
    return in.entries[a].last_access_ns > in.entries[b].last_access_ns;
  });
  for (uint32_t i : idx) {
    const ConfigIndex c = BestFidelity(in, i);
    if (c != kNoConfig) t.Place(i, c);
  }
  return t.Finish();
}

absl::StatusOr<PlacementPlan> StaticPolicy::Plan(const PolicyInput& in) {
  if (auto s = ValidateInput(in); !s.ok()) return s;
  ConfigIndex cfg = kNoConfig;
  for (size_t c = 0; c < in.configs.size(); ++c) {
    if (in.configs[c].name == config_name_) cfg = static_cast<ConfigIndex>(c);
  }
  if (cfg == kNoConfig) {
    return absl::InvalidArgumentError(absl::StrCat("static policy: no config named '", config_name_, "'"));
  }
  Tiering t(in);
  std::vector<uint32_t> idx = Unpinned(in);
  std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) {
    return in.entries[a].freq > in.entries[b].freq;
  });
  for (uint32_t i : idx) {
    const EntryInput& e = in.entries[i];
    ConfigIndex c = cfg;
    if (!Allowed(in, i, c)) c = Allowed(in, i, e.config) ? e.config : kNoConfig;
    if (c != kNoConfig) t.Place(i, c);
  }
  return t.Finish();
}

PutConfigTable StaticPolicy::PutConfigs(const PolicyInput& in, const PlacementPlan&) const {
  const size_t k = in.configs.size(), nc = in.classes.size();
  PutConfigTable out(in.namespaces.size() * nc, kNoConfig);
  ConfigIndex cfg = kNoConfig;
  for (size_t c = 0; c < k; ++c) {
    if (in.configs[c].name == config_name_) cfg = static_cast<ConfigIndex>(c);
  }
  if (cfg == kNoConfig) return out;
  // The floor as Plan() applies it, judged on the class's median loss.
  const std::vector<float> q = MedianClassLoss(in);
  for (size_t g = 0; g < out.size(); ++g) {
    const float qc = q[g * k + cfg];
    if (in.classes[g % nc].bytes[cfg] == 0) continue;
    // Unknown quality (no unpinned entry of the class): no put config, as Plan()
    // would not transcode an entry it knows nothing of either.
    if (!std::isfinite(qc) || qc > in.namespaces[g / nc].max_loss) continue;
    out[g] = cfg;
  }
  return out;
}

PutConfigTable GreedyDowngrader::PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const {
  return ModalPutConfigs(in, plan);
}

absl::StatusOr<PlacementPlan> GreedyDowngrader::Plan(const PolicyInput& in) {
  if (auto s = ValidateInput(in); !s.ok()) return s;
  Tiering t(in);
  const std::vector<uint32_t> idx = Unpinned(in);
  for (uint32_t i : idx) {
    const ConfigIndex c = BestFidelity(in, i);
    if (c == kNoConfig) continue;
    t.plan.target[i] = {c, Tier::kDram};
    t.use_d += Bytes(in, i, c);
  }
  struct Step {
    double score;  // objective lost per byte freed
    uint32_t entry;
    Placement to;
    bool operator<(const Step& o) const { return score > o.score; }  // min-heap
  };
  // The best downgrade of entry i from its current target within `tier`.
  auto best_step = [&](uint32_t i, Tier tier) -> Step {
    const Placement cur = t.plan.target[i];
    const double f = in.entries[i].freq;
    const double cost = PlacementCost(in, i, cur);
    const double b = static_cast<double>(Bytes(in, i, cur.config));
    Step best{0, i, {}};
    if (tier == Tier::kDram) {
      best.to = {cur.config, Tier::kSsd};  // rate 0
    }
    best.score = f * (PlacementCost(in, i, best.to) - cost) / b;
    for (size_t c = 0; c < in.configs.size(); ++c) {
      const auto ci = static_cast<ConfigIndex>(c);
      if (!Allowed(in, i, ci) || Bytes(in, i, ci) >= Bytes(in, i, cur.config)) continue;
      const Placement to{ci, tier};
      const double sc = f * (PlacementCost(in, i, to) - cost) / (b - Bytes(in, i, ci));
      if (sc < best.score) best = {sc, i, to};
    }
    return best;
  };
  for (const Tier tier : {Tier::kDram, Tier::kSsd}) {
    uint64_t& use = tier == Tier::kDram ? t.use_d : t.use_s;
    const uint64_t cap = tier == Tier::kDram ? in.dram_capacity : in.ssd_capacity;
    std::priority_queue<Step> heap;
    for (uint32_t i : idx) {
      if (t.plan.target[i].tier == tier) heap.push(best_step(i, tier));
    }
    while (use > cap && !heap.empty()) {
      const Step s = heap.top();
      heap.pop();
      const Placement cur = t.plan.target[s.entry];
      if (cur.tier != tier) continue;
      use -= Bytes(in, s.entry, cur.config);
      t.plan.target[s.entry] = s.to;
      if (s.to.tier == tier) {
        use += Bytes(in, s.entry, s.to.config);
        heap.push(best_step(s.entry, tier));
      } else if (s.to.tier == Tier::kSsd) {
        t.use_s += Bytes(in, s.entry, s.to.config);
      }
    }
  }
  return t.Finish();
}

}  // namespace adaptcache::policy
