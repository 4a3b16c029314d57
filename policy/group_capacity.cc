#include "policy/group_capacity.h"

#include <algorithm>
#include <vector>

namespace adaptcache::policy {
namespace {

uint64_t Bytes(const PolicyInput& in, size_t i, Placement p) {
  if (p.tier == Tier::kNone) return 0;
  return in.classes[in.entries[i].size_class].bytes[p.config];
}

struct Use {
  uint64_t dram = 0, ssd = 0;
};

struct Candidate {
  double cost_per_byte;
  uint32_t entry;
  Placement to;
};

}  // namespace

size_t FitGroupCapacities(const PolicyInput& in, std::span<const int32_t> group_of_entry,
                          std::span<const GroupCapacity> caps, PlacementPlan* plan) {
  if (caps.empty() || group_of_entry.size() != in.entries.size()) return 0;
  std::vector<Use> use(caps.size());
  Use total;
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const Placement p = plan->target[i];
    if (p.tier == Tier::kNone) continue;
    const uint64_t b = Bytes(in, i, p);
    (p.tier == Tier::kDram ? total.dram : total.ssd) += b;
    const int32_t g = group_of_entry[i];
    if (g >= 0 && static_cast<size_t>(g) < caps.size()) (p.tier == Tier::kDram ? use[g].dram : use[g].ssd) += b;
  }
  auto over = [](uint64_t used, uint64_t cap) { return cap != 0 && used > cap; };
  size_t moved = 0;
  for (size_t g = 0; g < caps.size(); ++g) {
    // DRAM first: what leaves DRAM may land on SSD, which the SSD pass then bounds.
    for (const Tier tier : {Tier::kDram, Tier::kSsd}) {
      uint64_t& used = tier == Tier::kDram ? use[g].dram : use[g].ssd;
      const uint64_t cap = tier == Tier::kDram ? caps[g].dram_bytes : caps[g].ssd_bytes;
      if (!over(used, cap)) continue;
      std::vector<Candidate> cands;
      for (size_t i = 0; i < in.entries.size(); ++i) {
        const Placement p = plan->target[i];
        if (group_of_entry[i] != static_cast<int32_t>(g) || p.tier != tier) continue;
        if (in.entries[i].flags & kPinned) continue;
        const uint64_t b = Bytes(in, i, p);
        if (b == 0) continue;
        const double f = in.entries[i].freq;
        const double now = PlacementCost(in, i, p);
        Placement to{kNoConfig, Tier::kNone};
        double cost = PlacementCost(in, i, to);
        if (tier == Tier::kDram && in.ssd_capacity > 0) {
          const Placement ssd{p.config, Tier::kSsd};
          const double c = PlacementCost(in, i, ssd);
          if (c < cost) to = ssd, cost = c;
        }
        cands.push_back({f * (cost - now) / static_cast<double>(b), static_cast<uint32_t>(i), to});
      }
      std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
        return a.cost_per_byte != b.cost_per_byte ? a.cost_per_byte < b.cost_per_byte : a.entry < b.entry;
      });
      for (const Candidate& c : cands) {
        if (!over(used, cap)) break;
        const size_t i = c.entry;
        const uint64_t b = Bytes(in, i, plan->target[i]);
        Placement to = c.to;
        if (to.tier == Tier::kSsd &&
            (total.ssd + b > in.ssd_capacity || (caps[g].ssd_bytes != 0 && use[g].ssd + b > caps[g].ssd_bytes))) {
          to = {kNoConfig, Tier::kNone};  // no room below: drop it
        }
        used -= b;
        (tier == Tier::kDram ? total.dram : total.ssd) -= b;
        if (to.tier == Tier::kSsd) {
          use[g].ssd += b;
          total.ssd += b;
        }
        plan->target[i] = to;
        ++moved;
      }
    }
  }
  if (moved > 0) FinalizePlan(in, plan);
  return moved;
}

}  // namespace adaptcache::policy
